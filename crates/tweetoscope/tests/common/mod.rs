//! Helpers shared by the integration tests.
#![allow(dead_code, missing_docs)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tweetoscope::cli::{Cli, Command};
use tweetoscope::config::{KafkaArgs, RunArgs};

/// Parses a `tweetoscope run ...` command line into its options, replayed as fast as possible
/// from the start (no warm-up: these tests are about what the stages do, not when models come).
pub(crate) fn run_options(args: &[&str]) -> (KafkaArgs, RunArgs) {
    let mut argv = vec!["tweetoscope", "run", "--warm-up-speed-up", "0"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("valid command line");
    match cli.command {
        Command::Run(run) => (run.kafka, run.args),
        _ => unreachable!(),
    }
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub key: Option<String>,
    pub partition: i32,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

impl Record {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("JSON payload")
    }
}

/// Every record of `topic`, read from the beginning to the current end of each partition.
pub(crate) fn read_topic(brokers: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .expect("watermarks");
        if high > low {
            ends.insert(p.id(), high);
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
        }
    }
    let mut records = Vec::new();
    if ends.is_empty() {
        return records;
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut done: HashMap<i32, bool> = ends.keys().map(|&p| (p, false)).collect();
    while done.values().any(|d| !d) {
        assert!(Instant::now() < deadline, "timed out reading {topic}");
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.expect("fetch");
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| {
                        (
                            x.key.to_owned(),
                            String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        records.push(Record {
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            partition: message.partition(),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
        if message.offset() + 1 >= ends[&message.partition()] {
            done.insert(message.partition(), true);
        }
    }
    records
}

// ---- BEGIN real-Kafka helpers (used by tests/real_kafka.rs) ------------------------------------

/// Helpers for the tests that run every stage as its own process against a real broker.
pub(crate) mod real_kafka {
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::message::Message;
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    fn client(brokers: &str) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .expect("a Kafka client")
    }

    /// The project's script that starts, stops and bounces the test broker and runs Kafka's tools.
    pub(crate) fn kafka_script() -> std::path::PathBuf {
        std::path::Path::new(&super::manifest_dir()).join("../../scripts/kafka.sh")
    }

    /// Sends `signal` (e.g. "STOP", "CONT") to the broker under test, found by the pid file in
    /// the state directory of scripts/kafka.sh (the pid changes when the broker is bounced).
    pub(crate) fn signal_broker(signal: &str) {
        let dir = std::env::var("KAFKA_STATE_DIR").expect(
            "KAFKA_STATE_DIR: the state directory of scripts/kafka.sh (scripts/tiers/kafka.sh sets it)",
        );
        let pid = std::fs::read_to_string(std::path::Path::new(&dir).join("pid"))
            .expect("the broker's pid file");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.trim())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {} failed", pid.trim());
    }

    /// The broker under test frozen (SIGSTOP) until this is dropped, even by a failing test.
    pub(crate) struct FrozenBroker(());

    impl FrozenBroker {
        /// Freezes the broker: its connections stay open but it answers nothing.
        pub(crate) fn freeze() -> Self {
            signal_broker("STOP");
            FrozenBroker(())
        }
    }

    impl Drop for FrozenBroker {
        fn drop(&mut self) {
            signal_broker("CONT");
        }
    }

    /// Every committed record of `topic`, from the beginning to the current end of each
    /// partition (`isolation.level=read_committed`). Unlike `read_topic`, this works on topics
    /// written in transactions, whose last offsets are commit markers that no consumer receives:
    /// a partition is done when the consumer reports its end (partition EOF).
    ///
    /// A reader created while the broker moves its partition leaders (right after a freeze) was
    /// seen never reaching the end of a partition that a fresh reader read at once (librdkafka's
    /// fetcher stuck after the leader epoch change): an attempt gives up after 30 s and the
    /// next one starts with a new consumer, 3 attempts in all.
    pub(crate) fn read_committed(brokers: &str, topic: &str) -> Vec<super::Record> {
        let mut failures = Vec::new();
        for attempt in 1..=3 {
            match read_committed_once(brokers, topic, Duration::from_secs(30)) {
                Ok(records) => return records,
                Err(e) => {
                    eprintln!("reading {topic}, attempt {attempt}: {e}; a new reader tries again");
                    failures.push(e);
                }
            }
        }
        panic!("cannot read {topic} to its end: {failures:?}");
    }

    /// One attempt of [`read_committed`] with its own consumer, giving up after `limit`.
    fn read_committed_once(
        brokers: &str,
        topic: &str,
        limit: Duration,
    ) -> Result<Vec<super::Record>, String> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set(
                "group.id",
                format!("committed-reader-{topic}-{}", std::process::id()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| format!("no consumer: {e}"))?;
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| format!("no metadata: {e}"))?;
        let mut tpl = TopicPartitionList::new();
        let mut pending = std::collections::HashSet::new();
        for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .map_err(|e| format!("partition {}: {e}", p.id()))?;
            pending.insert(p.id());
        }
        let mut records = Vec::new();
        if pending.is_empty() {
            return Ok(records);
        }
        consumer.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
        let deadline = Instant::now() + limit;
        while !pending.is_empty() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "partitions {pending:?} not at their end after {limit:?}"
                ));
            }
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    pending.remove(&p);
                }
                // Transient (leader moves, coordinator loading...): retried until the deadline.
                Some(Err(_)) => {}
                Some(Ok(message)) => records.push(super::Record {
                    key: message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    partition: message.partition(),
                    payload: message.payload().unwrap_or_default().to_vec(),
                    headers: HashMap::new(),
                }),
            }
        }
        Ok(records)
    }

    /// Partition count of each of `topics` (0 for a topic that does not exist).
    pub(crate) fn partition_counts(brokers: &str, topics: &[String]) -> Vec<(String, usize)> {
        let consumer = client(brokers);
        topics
            .iter()
            .map(|topic| {
                let metadata = consumer
                    .fetch_metadata(Some(topic), Duration::from_secs(10))
                    .expect("metadata");
                let n = metadata
                    .topics()
                    .iter()
                    .filter(|t| t.name() == topic && t.error().is_none())
                    .map(|t| t.partitions().len())
                    .sum();
                (topic.clone(), n)
            })
            .collect()
    }

    /// State of a consumer group (e.g. "Stable") and the number of members that hold at least one
    /// partition; `None` when the broker does not know the group (yet).
    pub(crate) fn group_state(brokers: &str, group: &str) -> Option<(String, usize)> {
        let consumer = client(brokers);
        let list = consumer
            .fetch_group_list(Some(group), Duration::from_secs(10))
            .ok()?;
        let info = list.groups().iter().find(|g| g.name() == group)?;
        // A member's assignment (consumer protocol): version i16, topic count i32, then per topic
        // a name and an i32 partition count. More than the 6-byte header means partitions.
        let holding = info
            .members()
            .iter()
            .filter(|m| m.assignment().is_some_and(|a| assigned_partitions(a) > 0))
            .count();
        Some((info.state().to_owned(), holding))
    }

    /// Number of partitions in a serialized consumer-protocol assignment.
    fn assigned_partitions(a: &[u8]) -> usize {
        let i16_at = |i: usize| a.get(i..i + 2).map(|b| i16::from_be_bytes([b[0], b[1]]));
        let i32_at = |i: usize| {
            a.get(i..i + 4)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let Some(topics) = i32_at(2) else { return 0 };
        let mut at = 6;
        let mut total = 0;
        for _ in 0..topics.max(0) {
            let Some(name_len) = i16_at(at) else { break };
            at += 2 + name_len.max(0) as usize;
            let Some(n) = i32_at(at) else { break };
            total += n.max(0) as usize;
            at += 4 + 4 * n.max(0) as usize;
        }
        total
    }

    /// Body of `GET path` on a loopback HTTP/1.1 server, `None` if it does not answer 200.
    pub(crate) fn http_get(port: u16, path: &str) -> Option<String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).ok()?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            return None;
        }
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            return Some(dechunk(body));
        }
        Some(body.to_owned())
    }

    fn dechunk(mut body: &str) -> String {
        let mut out = String::new();
        while let Some((size, rest)) = body.split_once("\r\n") {
            let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
                break;
            };
            if n == 0 || rest.len() < n {
                break;
            }
            out.push_str(&rest[..n]);
            body = rest[n..].trim_start_matches("\r\n");
        }
        out
    }

    /// Sum of the samples of metric `name` whose labels include every `label="value"` of `labels`.
    pub(crate) fn metric_sum(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
        exposition
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let rest = series.strip_prefix(name)?;
                if !(rest.is_empty() || rest.starts_with('{')) {
                    return None;
                }
                labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
                    .then(|| value.parse::<f64>().ok())?
            })
            .sum()
    }
}

// ---- END real-Kafka helpers ---------------------------------------------------------------------

/// This package's directory, as cargo gives it to the running test: a test binary built in a
/// target directory that several checkouts share reads the files of the checkout it runs for
/// (the path compiled in is the fallback).
pub(crate) fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}
