//! How to reach Kafka: the settings, the producers and consumers built from them, and blocking
//! reads of a partition.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use rdkafka::config::{ClientConfig, FromClientConfig};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};

use super::delivery::{DeliveryTally, StageProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::context::StageContext;
use crate::metrics::Metrics;

/// A record read back as (key, payload); `None` payload: a tombstone.
pub type RawRecord = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The offsets `[start, high)` to read of a partition holding `[low, end)`, asked for `[from, to)`
/// (`None`: from its beginning, to its end); empty when `high <= start`.
fn clamp_range(low: i64, end: i64, from: Option<i64>, to: Option<i64>) -> (i64, i64) {
    let high = to.map_or(end, |t| t.min(end));
    let start = from.map_or(low, |f| f.max(low));
    (start, high)
}

/// Whether `error` is one a broker restart or a leader move causes and that passes on its own
/// (no leader or coordinator yet, a coordinator still loading, a connection or a request lost):
/// a read that meets one is worth retrying.
pub fn is_transient(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::NotLeaderForPartition
                | Code::LeaderNotAvailable
                | Code::FencedLeaderEpoch
                | Code::UnknownLeaderEpoch
                | Code::NotCoordinator
                | Code::CoordinatorNotAvailable
                | Code::CoordinatorLoadInProgress
                | Code::NotController
                | Code::NotEnoughReplicas
                | Code::KafkaStorageError
                | Code::BrokerTransportFailure
                | Code::AllBrokersDown
                | Code::NetworkException
                | Code::RequestTimedOut
                | Code::OperationTimedOut
        )
    )
}

/// Longest time a read retries [transient](is_transient) errors before it fails.
pub const TRANSIENT_RETRY_FOR: Duration = Duration::from_secs(60);

/// `call`, again every 500 ms while it fails with a [transient](is_transient) error, for at most
/// `limit` (then its last error); any other error at once. Blocking.
pub fn retry_transient<T>(
    what: &str,
    limit: Duration,
    mut call: impl FnMut() -> KafkaResult<T>,
) -> KafkaResult<T> {
    let deadline = Instant::now() + limit;
    loop {
        match call() {
            Err(e) if is_transient(&e) && Instant::now() < deadline => {
                tracing::info!(error = %e, "{what}: transient Kafka error, retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            result => return result,
        }
    }
}

/// Sets a list of librdkafka properties on a client configuration.
pub(super) trait SetAll {
    /// Sets every (key, value) of `options`, in order: the later wins.
    fn set_all(&mut self, options: &[(String, String)]) -> &mut Self;
}

impl SetAll for ClientConfig {
    fn set_all(&mut self, options: &[(String, String)]) -> &mut Self {
        for (key, value) in options {
            self.set(key, value);
        }
        self
    }
}

/// How long a consumer whose prefetch queue is full (librdkafka's `queued.min.messages`, 100,000
/// messages) waits before it fetches again. librdkafka's default, 1,000 ms, stalled a stage that
/// had a backlog: the collector emptied its queue in about 0.3 s, then read nothing for the rest
/// of the second (on a local Kafka, `bench --tweets 1000000` read its tweets in bursts of about
/// 100,000 with half-second gaps). 10 ms: from 104,000–110,000 to 163,000–183,000 tweets/s
/// (BENCHMARKS.md). `--kafka-option fetch.queue.backoff.ms=…` still wins.
pub const FETCH_QUEUE_BACKOFF_MS: u32 = 10;

/// Fails, naming what to fix, if librdkafka refuses `options` (an unknown property, a bad
/// value, a feature this build lacks): checked at start rather than by each stage's clients,
/// whose failures the supervisor would retry. No connection is made.
pub fn check_client_options(
    options: &[(String, String)],
) -> Result<(), crate::config::ConfigError> {
    if options.is_empty() {
        return Ok(());
    }
    ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:1")
        .set_all(options)
        .create::<rdkafka::producer::BaseProducer>()
        .map(drop)
        .map_err(|e| {
            crate::config::ConfigError(format!(
                "--kafka-option/--kafka-option-file: librdkafka refuses them: {e}"
            ))
        })
}

/// How long [`check_brokers_accept`] waits for a first answer of the brokers before it lets the
/// stage go on (a broker still starting is not an error; a refused login or TLS handshake is).
pub const SECURITY_CHECK_FOR: Duration = Duration::from_secs(15);

/// Whether `code` says the brokers refused this client's credentials or TLS settings: retrying
/// with the same settings cannot succeed.
fn is_security_failure(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SSL
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::UnsupportedSASLMechanism
            | RDKafkaErrorCode::IllegalSASLState
    )
}

/// Client context of [`check_brokers_accept`]: keeps the first security failure librdkafka
/// reports (it reports them asynchronously, as client errors, and keeps reconnecting).
#[derive(Debug, Default)]
struct SecurityProbe {
    refused: std::sync::Mutex<Option<(RDKafkaErrorCode, String)>>,
}

impl ClientContext for SecurityProbe {
    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(code) if is_security_failure(code) => {
                self.refused
                    .lock()
                    .expect("security probe")
                    .get_or_insert_with(|| (code, reason.to_owned()));
            }
            _ => tracing::debug!(%error, reason, "Kafka connection check"),
        }
    }
}

impl ProducerContext for SecurityProbe {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// What to tell about a security failure `code` (with librdkafka's `reason`) at `brokers`.
fn security_failure_message(brokers: &str, code: RDKafkaErrorCode, reason: &str) -> String {
    if code == RDKafkaErrorCode::SSL {
        format!(
            "the TLS handshake with Kafka at {brokers} failed: {reason}. Check ssl.ca.location \
             (the CA that signed the brokers' certificates), that the port is a TLS listener, and \
             for mutual TLS ssl.certificate.location and ssl.key.location \
             (--kafka-option / --kafka-option-file)"
        )
    } else {
        format!(
            "Kafka at {brokers} refuses the authentication: {reason}. Check sasl.mechanism, \
             sasl.username and sasl.password (--kafka-option / --kafka-option-file)"
        )
    }
}

/// Connects once to the brokers with every client's options and fails, naming the options to
/// check, if they refuse the login (SASL) or the TLS handshake: librdkafka only reports these
/// asynchronously and retries forever, so every stage would otherwise wait without a word.
/// Brokers that do not answer within `limit` ([`SECURITY_CHECK_FOR`] at start) are not an error
/// here: the stage goes on and waits for them as before. Blocks; run it off the async runtime.
pub fn check_brokers_accept(settings: &KafkaSettings, limit: Duration) -> anyhow::Result<()> {
    let producer: BaseProducer<SecurityProbe> = settings
        .base()
        .set_all(&settings.client_options)
        .create_with_context(SecurityProbe::default())
        .with_context(|| format!("cannot create a Kafka client for {}", settings.brokers))?;
    let deadline = Instant::now() + limit;
    loop {
        let answer = producer
            .client()
            .fetch_metadata(None, Duration::from_millis(500));
        // Serves the error events the connection attempts have queued.
        producer.poll(Duration::ZERO);
        let refused = producer
            .context()
            .refused
            .lock()
            .expect("security probe")
            .take();
        if let Some((code, reason)) = refused {
            return Err(crate::config::ConfigError(security_failure_message(
                &settings.brokers,
                code,
                &reason,
            ))
            .into());
        }
        match answer {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                tracing::warn!(
                    brokers = %settings.brokers,
                    error = %e,
                    "Kafka does not answer yet; going on without checking its security settings"
                );
                return Ok(());
            }
            Err(_) => {}
        }
    }
}

/// How to reach Kafka.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Bootstrap servers.
    pub brokers: String,
    /// Consumer group id prefix.
    pub group_prefix: String,
    /// Consumer session timeout.
    pub session_timeout_ms: u32,
    /// Commit outputs and offsets in Kafka transactions (exactly-once); false: at-least-once.
    pub transactions: bool,
    /// Time between two commits of a processing loop.
    pub commit_interval: Duration,
    /// Replication factor of the topics this process creates.
    pub replication: i32,
    /// librdkafka properties of `--kafka-option` and `--kafka-option-file`, set on every client
    /// after Tweetoscope's own.
    pub client_options: Vec<(String, String)>,
    /// The consumers' `fetch.wait.max.ms` (None: librdkafka's default, 500 ms).
    pub fetch_wait_max_ms: Option<u32>,
}

impl KafkaSettings {
    /// The settings the Kafka options give, for `brokers` (the options' own, or the embedded
    /// broker's); an error if a `--kafka-option-file` cannot be read.
    pub fn new(
        args: &crate::config::KafkaArgs,
        brokers: String,
    ) -> Result<Self, crate::config::ConfigError> {
        Ok(Self {
            brokers,
            group_prefix: args.group_prefix.clone(),
            session_timeout_ms: args.session_timeout_ms,
            transactions: !args.no_transactions,
            commit_interval: Duration::from_millis(args.commit_interval_ms),
            replication: args.replication,
            client_options: args.client_options()?,
            fetch_wait_max_ms: None,
        })
    }

    /// Tunes the clients for the embedded broker (librdkafka's mock cluster): its group joins are
    /// slow, so a short session keeps rebalances quick; and it answers a fetch that finds nothing
    /// only after the fetch's whole `fetch.wait.max.ms`, even when records arrive meanwhile (a real
    /// broker answers as soon as they do), so every consumer caught up with its input waited
    /// 500 ms for the next records. 50 ms: `bench --tweets 1000000` went from 75,376 to 89,020
    /// tweets/s and its window-close → prediction p50 from 400 to 69 ms (BENCHMARKS.md).
    pub fn tune_for_embedded_broker(&mut self) {
        self.session_timeout_ms = 6_000;
        self.fetch_wait_max_ms = Some(50);
    }

    /// Base configuration of every consumer: no auto-commit, the isolation level of
    /// [`Self::transactions`], the fetch wait, [`FETCH_QUEUE_BACKOFF_MS`].
    fn consumer_base(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("enable.auto.commit", "false")
            .set("isolation.level", self.isolation_level())
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS.to_string());
        if let Some(wait) = self.fetch_wait_max_ms {
            c.set("fetch.wait.max.ms", wait.to_string());
        }
        c
    }

    /// Base client configuration.
    pub(super) fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c
    }

    /// A producer of `stage` tuned for throughput with per-partition order kept: idempotent,
    /// batched, lz4; its deliveries count as committed when delivered.
    pub fn producer(
        &self,
        stage: &'static str,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<StageProducer> {
        self.base()
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", "300000")
            .set("queue.buffering.max.messages", "1000000")
            .set_all(&self.client_options)
            .create_with_context(DeliveryTally::new(stage, metrics.clone(), false))
            .with_context(|| format!("cannot create a Kafka producer for {}", self.brokers))
    }

    /// `read_committed` with transactions (outputs become visible at commit), else
    /// `read_uncommitted`.
    fn isolation_level(&self) -> &'static str {
        if self.transactions {
            "read_committed"
        } else {
            "read_uncommitted"
        }
    }

    /// A producer for a stage's processing loop: transactional (initialised) when transactions
    /// are on, with a transactional id unique to this process.
    pub async fn stage_producer(
        &self,
        stage: &'static str,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<StageProducer> {
        if !self.transactions {
            return self.producer(stage, metrics);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let id = format!(
            "{}-{stage}-{}-{nanos}",
            self.group_prefix,
            std::process::id()
        );
        let producer: StageProducer = self
            .base()
            .set("enable.idempotence", "true")
            .set("transactional.id", &id)
            // A crashed replica's open transaction holds back read_committed readers (and the
            // committed offsets of its partitions) until this timeout aborts it.
            .set("transaction.timeout.ms", "10000")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("queue.buffering.max.messages", "1000000")
            .set_all(&self.client_options)
            .create_with_context(DeliveryTally::new(stage, metrics.clone(), true))
            .with_context(|| {
                format!(
                    "cannot create a transactional producer for {}",
                    self.brokers
                )
            })?;
        let init = producer.clone();
        tokio::task::spawn_blocking(move || init.init_transactions(Duration::from_secs(60)))
            .await?
            .with_context(|| format!("cannot initialise Kafka transactions on {}", self.brokers))?;
        Ok(producer)
    }

    /// A consumer in the group `<prefix>-<stage>`, committing manually, reading from the
    /// beginning when the group has no offset yet, seeing only committed transactions.
    pub fn consumer(
        &self,
        stage: &'static str,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<StreamConsumer<StageContext>> {
        self.consumer_in_group(&format!("{}-{stage}", self.group_prefix), stage, metrics)
    }

    /// Like [`KafkaSettings::consumer`], in the group `group`.
    pub fn consumer_in_group(
        &self,
        group: &str,
        stage: &'static str,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<StreamConsumer<StageContext>> {
        self.group_consumer_config(group)
            .create_with_context(StageContext::new(stage, metrics))
            .with_context(|| format!("cannot create a Kafka consumer for {}", self.brokers))
    }

    /// The configuration of [`KafkaSettings::consumer_in_group`].
    fn group_consumer_config(&self, group: &str) -> ClientConfig {
        let mut c = self.consumer_base();
        c.set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            // Recovery reads (committed offsets held back by an aborted transaction, changelog
            // reloads) may block the loop for tens of seconds: leave room before eviction.
            .set("max.poll.interval.ms", "120000")
            .set("statistics.interval.ms", "1000")
            // Eager assignors: after a rebalance every assigned partition is fetched from its
            // committed offset, which the processing loop relies on.
            .set("partition.assignment.strategy", "range,roundrobin")
            .set_all(&self.client_options);
        c
    }

    /// A consumer that assigns itself partitions and never joins its group nor commits: librdkafka
    /// needs a group id (`{prefix}-{role}-{pid}`) to assign.
    fn assigning_consumer<C: FromClientConfig>(&self, role: &str) -> KafkaResult<C> {
        self.consumer_base()
            .set(
                "group.id",
                format!("{}-{role}-{}", self.group_prefix, std::process::id()),
            )
            .set_all(&self.client_options)
            .create()
    }

    /// A consumer outside any group that reads every partition of `topic` from the beginning
    /// (for broadcast topics such as `models`).
    pub fn broadcast_consumer(&self, topic: &str) -> anyhow::Result<StreamConsumer> {
        let consumer: StreamConsumer = self
            .assigning_consumer("broadcast")
            .context("cannot create a broadcast consumer")?;
        // The topic may not exist yet when this stage starts before the topic job: wait for it.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut tpl = TopicPartitionList::new();
        loop {
            let metadata = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .with_context(|| format!("cannot read the metadata of topic {topic}"))?;
            for t in metadata.topics() {
                for p in t.partitions() {
                    tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
                }
            }
            if tpl.count() > 0 {
                break;
            }
            if Instant::now() > deadline {
                return Err(anyhow!("topic {topic} still has no partition after 120 s: create it (see k8s/base topic job) or let a stage create it"));
            }
            tracing::info!(topic, "waiting for the topic to exist");
            std::thread::sleep(Duration::from_secs(1));
        }
        consumer.assign(&tpl)?;
        Ok(consumer)
    }

    /// Every committed record of one partition, from its beginning to its current end, as
    /// (key, payload) pairs in order. Blocking: call from a worker thread.
    pub fn read_partition(&self, topic: &str, partition: i32) -> anyhow::Result<Vec<RawRecord>> {
        self.read_partition_range(topic, partition, None, None)
    }

    /// The committed records of one partition with offsets in `[from, to)` (`None`: from the
    /// beginning, to the current end). Blocking: call from a worker thread.
    pub fn read_partition_range(
        &self,
        topic: &str,
        partition: i32,
        from: Option<i64>,
        to: Option<i64>,
    ) -> anyhow::Result<Vec<RawRecord>> {
        let mut records = Vec::new();
        self.scan_partition_range(topic, partition, from, to, |_, key, payload| {
            records.push((key.map(<[u8]>::to_vec), payload.map(<[u8]>::to_vec)));
        })?;
        Ok(records)
    }

    /// Hands each committed record of one partition with an offset in `[from, to)` (`None`: from
    /// the beginning, to the current end) to `each` as (offset, key, payload), in order, without
    /// keeping them; fails after 120 s without a record. Blocking: call from a worker thread.
    pub fn scan_partition_range(
        &self,
        topic: &str,
        partition: i32,
        from: Option<i64>,
        to: Option<i64>,
        mut each: impl FnMut(i64, Option<&[u8]>, Option<&[u8]>),
    ) -> anyhow::Result<()> {
        // The range is found by a client outside any group: a client with a group id takes about
        // 100 ms to close (rust-rdkafka polls its queue in 100 ms steps until the group is left),
        // a cost every empty range would pay (a predictor resuming its four partitions at start).
        let probe: BaseConsumer = self
            .consumer_base()
            .set_all(&self.client_options)
            .create()
            .context("cannot create a reader")?;
        let what = format!("reading the end of {topic}/{partition}");
        let (low, end) = retry_transient(&what, TRANSIENT_RETRY_FOR, || {
            probe.fetch_watermarks(topic, partition, Duration::from_secs(30))
        })
        .with_context(|| format!("cannot read the end of {topic}/{partition}"))?;
        drop(probe);
        let (start, high) = clamp_range(low, end, from, to);
        if high <= start {
            return Ok(());
        }
        let consumer: BaseConsumer = self
            .assigning_consumer("reader")
            .context("cannot create a reader")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
        consumer.assign(&tpl)?;
        const STALL: Duration = Duration::from_secs(120);
        let mut last_progress = Instant::now();
        loop {
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message?;
                if message.offset() >= high {
                    break;
                }
                each(message.offset(), message.key(), message.payload());
                last_progress = Instant::now();
                if message.offset() + 1 >= high {
                    break;
                }
            }
            // Transaction markers take offsets too: the position says when the end is reached.
            let position = consumer.position()?;
            if let Some(Offset::Offset(p)) = position
                .find_partition(topic, partition)
                .map(|e| e.offset())
            {
                if p >= high {
                    break;
                }
            }
            if last_progress.elapsed() > STALL {
                return Err(anyhow!(
                    "reading {topic}/{partition}: nothing read for {} s before offset {high}",
                    STALL.as_secs()
                ));
            }
        }
        Ok(())
    }

    /// Partition count of `topic`.
    pub fn partitions_of(&self, producer: &StageProducer, topic: &str) -> anyhow::Result<i32> {
        let what = format!("reading the metadata of topic {topic}");
        let metadata = retry_transient(&what, TRANSIENT_RETRY_FOR, || {
            producer
                .client()
                .fetch_metadata(Some(topic), Duration::from_secs(10))
        })
        .with_context(|| format!("cannot read the metadata of topic {topic}"))?;
        let n = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len() as i32);
        if n == 0 {
            return Err(anyhow!("topic {topic} has no partition (does it exist?)"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_logins_and_handshakes_are_security_failures_and_outages_are_not() {
        for code in [
            RDKafkaErrorCode::Authentication,
            RDKafkaErrorCode::SSL,
            RDKafkaErrorCode::SaslAuthenticationFailed,
        ] {
            assert!(is_security_failure(code), "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::OperationTimedOut,
        ] {
            assert!(!is_security_failure(code), "{code:?}");
        }
        let login = security_failure_message("b:9093", RDKafkaErrorCode::Authentication, "bad");
        assert!(
            login.contains("b:9093") && login.contains("sasl.password"),
            "{login}"
        );
        let tls = security_failure_message("b:9093", RDKafkaErrorCode::SSL, "verify failed");
        assert!(
            tls.contains("TLS handshake") && tls.contains("ssl.ca.location"),
            "{tls}"
        );
    }

    #[test]
    fn only_the_embedded_broker_shortens_the_fetch_wait_and_an_option_still_wins() {
        let mut settings = KafkaSettings {
            brokers: "127.0.0.1:1".into(),
            group_prefix: "t".into(),
            session_timeout_ms: 45_000,
            transactions: true,
            commit_interval: Duration::from_millis(100),
            replication: 1,
            client_options: Vec::new(),
            fetch_wait_max_ms: None,
        };
        let real = settings.consumer_base();
        assert_eq!(real.get("fetch.wait.max.ms"), None, "librdkafka's default");
        assert_eq!(real.get("fetch.queue.backoff.ms"), Some("10"));
        assert_eq!(real.get("isolation.level"), Some("read_committed"));
        settings.tune_for_embedded_broker();
        assert_eq!(settings.session_timeout_ms, 6_000);
        assert_eq!(
            settings.consumer_base().get("fetch.wait.max.ms"),
            Some("50")
        );
        settings.client_options = vec![("fetch.wait.max.ms".into(), "7".into())];
        let config = settings.group_consumer_config("g");
        assert_eq!(
            config.get("fetch.wait.max.ms"),
            Some("7"),
            "--kafka-option is set after Tweetoscope's own tuning"
        );
        assert_eq!(config.get("session.timeout.ms"), Some("6000"));
    }

    #[test]
    fn brokers_that_do_not_answer_are_not_a_security_failure() {
        // Nobody listens on port 1: the check gives up after its limit and lets the stage go on.
        let settings = KafkaSettings {
            brokers: "127.0.0.1:1".into(),
            group_prefix: "t".into(),
            session_timeout_ms: 6000,
            transactions: true,
            commit_interval: Duration::from_millis(100),
            replication: 1,
            client_options: vec![("client.id".into(), "probe".into())],
            fetch_wait_max_ms: None,
        };
        let started = Instant::now();
        check_brokers_accept(&settings, Duration::from_secs(1)).expect("not an error");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_read_range_is_clamped_to_what_the_partition_holds() {
        assert_eq!(clamp_range(5, 20, None, None), (5, 20));
        assert_eq!(clamp_range(5, 20, Some(8), Some(12)), (8, 12));
        assert_eq!(
            clamp_range(5, 20, Some(0), Some(99)),
            (5, 20),
            "offsets before the low watermark are gone, none after the end exist yet"
        );
        let (start, high) = clamp_range(5, 20, Some(30), None);
        assert!(high <= start, "nothing to read past the end");
        let (start, high) = clamp_range(5, 20, None, Some(3));
        assert!(high <= start, "nothing to read before the beginning");
    }

    fn broker_error(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::MetadataFetch(code)
    }

    #[test]
    fn the_errors_after_a_broker_restart_are_transient_the_others_not() {
        for code in [
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::CoordinatorLoadInProgress,
            RDKafkaErrorCode::AllBrokersDown,
        ] {
            assert!(is_transient(&broker_error(code)), "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::InvalidTransactionTimeout,
        ] {
            assert!(!is_transient(&broker_error(code)), "{code:?}");
        }
        assert!(!is_transient(&KafkaError::Canceled), "no error code");
    }

    #[test]
    fn a_transient_error_is_retried_until_the_call_succeeds() {
        let mut calls = 0;
        let result = retry_transient("test", Duration::from_secs(10), || {
            calls += 1;
            if calls < 3 {
                Err(broker_error(RDKafkaErrorCode::NotLeaderForPartition))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(result.expect("the third call succeeds"), 3);
    }

    #[test]
    fn other_errors_fail_at_once_and_transient_ones_after_the_limit() {
        let mut calls = 0;
        let result: KafkaResult<()> = retry_transient("test", Duration::from_secs(10), || {
            calls += 1;
            Err(broker_error(RDKafkaErrorCode::UnknownTopicOrPartition))
        });
        assert!(result.is_err());
        assert_eq!(calls, 1, "not retried");
        let mut calls = 0;
        let result: KafkaResult<()> = retry_transient("test", Duration::ZERO, || {
            calls += 1;
            Err(broker_error(RDKafkaErrorCode::NotLeaderForPartition))
        });
        assert!(result.is_err(), "the limit ends the retries");
        assert_eq!(calls, 1, "a zero limit allows no retry");
    }
}
