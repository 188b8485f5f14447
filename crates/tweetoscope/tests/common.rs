//! Helpers shared by the integration tests.
#![allow(dead_code, missing_docs)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tweetoscope::config::{Cli, Command, CommonArgs, RunArgs};

/// Parses a `tweetoscope run ...` command line into its options.
pub fn run_options(args: &[&str]) -> (CommonArgs, RunArgs) {
    let mut argv = vec!["tweetoscope", "run"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("valid command line");
    match cli.command {
        Command::Run(run) => (cli.common, *run),
        _ => unreachable!(),
    }
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<String>,
    pub partition: i32,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

impl Record {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("JSON payload")
    }
}

/// Every record of `topic`, read from the beginning to the current end of each partition.
pub fn read_topic(brokers: &str, topic: &str) -> Vec<Record> {
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
