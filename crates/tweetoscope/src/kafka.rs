//! Kafka plumbing shared by the stages: clients, topics, the embedded broker, and the processing
//! loop that reads a topic, hands each message to a stage, writes what the stage returns, sends
//! malformed input to the dead-letter topic, and commits.
//!
//! Commits are transactional: a stage's outputs and its input offsets are committed atomically
//! (Kafka transactions, consumers in `read_committed`), so a crash or a rebalance never loses nor
//! duplicates an output. A stage with state chooses what offset to commit (the oldest input its
//! state still needs) and stores in the commit metadata how far it had processed; after a restart
//! it replays from there, rebuilding its state with its outputs suppressed up to that mark.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use futures_util::stream::{FuturesOrdered, StreamExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;
use tweetoscope_messages::{topics, Malformed};

use crate::liveness::LoopBeat;
use crate::metrics::Metrics;

/// A record read back as (key, payload); `None` payload: a tombstone.
pub type RawRecord = (Option<Vec<u8>>, Option<Vec<u8>>);

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
}

impl KafkaSettings {
    /// The settings the common options give, for `brokers`.
    pub fn from_common(common: &crate::config::CommonArgs, brokers: String) -> Self {
        Self {
            brokers,
            group_prefix: common.group_prefix.clone(),
            session_timeout_ms: common.session_timeout_ms,
            transactions: !common.no_transactions,
            commit_interval: Duration::from_millis(common.commit_interval_ms),
        }
    }

    /// Base client configuration.
    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c
    }

    /// A producer tuned for throughput with per-partition order kept: idempotent, batched, lz4.
    pub fn producer(&self) -> anyhow::Result<FutureProducer> {
        self.base()
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", "300000")
            .set("queue.buffering.max.messages", "1000000")
            .create()
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
    pub async fn stage_producer(&self, stage: &str) -> anyhow::Result<FutureProducer> {
        if !self.transactions {
            return self.producer();
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let id = format!(
            "{}-{stage}-{}-{nanos}",
            self.group_prefix,
            std::process::id()
        );
        let producer: FutureProducer = self
            .base()
            .set("enable.idempotence", "true")
            .set("transactional.id", &id)
            // A crashed replica's open transaction holds back read_committed readers (and the
            // committed offsets of its partitions) until this timeout aborts it.
            .set("transaction.timeout.ms", "10000")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("queue.buffering.max.messages", "1000000")
            .create()
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
        self.base()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            // Recovery reads (committed offsets held back by an aborted transaction, changelog
            // reloads) may block the loop for tens of seconds: leave room before eviction.
            .set("max.poll.interval.ms", "120000")
            .set("statistics.interval.ms", "1000")
            .set("isolation.level", self.isolation_level())
            // Eager assignors: after a rebalance every assigned partition is fetched from its
            // committed offset, which the processing loop relies on.
            .set("partition.assignment.strategy", "range,roundrobin")
            .create_with_context(StageContext {
                stage,
                metrics,
                generation: Arc::new(AtomicU64::new(0)),
                revoked_at: std::sync::Mutex::new(None),
                group_state: std::sync::Mutex::new(Default::default()),
            })
            .with_context(|| format!("cannot create a Kafka consumer for {}", self.brokers))
    }

    /// A consumer outside any group that reads every partition of `topic` from the beginning
    /// (for broadcast topics such as `models`).
    pub fn broadcast_consumer(&self, topic: &str) -> anyhow::Result<StreamConsumer> {
        let consumer: StreamConsumer = self
            .base()
            .set(
                "group.id",
                format!("{}-broadcast-{}", self.group_prefix, std::process::id()),
            )
            .set("enable.auto.commit", "false")
            .set("isolation.level", self.isolation_level())
            .create()
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
        let consumer: BaseConsumer = self
            .base()
            .set(
                "group.id",
                format!("{}-reader-{}", self.group_prefix, std::process::id()),
            )
            .set("enable.auto.commit", "false")
            .set("isolation.level", self.isolation_level())
            .create()
            .context("cannot create a reader")?;
        let (low, end) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(30))
            .with_context(|| format!("cannot read the end of {topic}/{partition}"))?;
        let high = to.map_or(end, |t| t.min(end));
        let start = from.map_or(low, |f| f.max(low));
        let mut records = Vec::new();
        if high <= start {
            return Ok(records);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
        consumer.assign(&tpl)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message?;
                if message.offset() >= high {
                    break;
                }
                records.push((
                    message.key().map(<[u8]>::to_vec),
                    message.payload().map(<[u8]>::to_vec),
                ));
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
            if Instant::now() > deadline {
                return Err(anyhow!(
                    "reading {topic}/{partition} to its end took more than 120 s"
                ));
            }
        }
        Ok(records)
    }

    /// Partition count of `topic`.
    pub fn partitions_of(&self, producer: &FutureProducer, topic: &str) -> anyhow::Result<i32> {
        let metadata = producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
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

/// Consumer context that turns librdkafka statistics into the consumer-lag metric and counts
/// rebalances.
pub struct StageContext {
    stage: &'static str,
    metrics: Arc<Metrics>,
    generation: Arc<AtomicU64>,
    /// When the partitions were last revoked, until the next assignment (empty or not).
    revoked_at: std::sync::Mutex<Option<Instant>>,
    /// librdkafka's consumer-group state and join state, as last reported in its statistics.
    group_state: std::sync::Mutex<(String, String)>,
}

impl StageContext {
    /// How long the consumer has been waiting for an assignment since its partitions were
    /// revoked (None: it has one, possibly empty).
    fn unassigned_for(&self) -> Option<Duration> {
        self.revoked_at
            .lock()
            .expect("rebalance clock")
            .map(|at| at.elapsed())
    }
}

/// Longest wait for an assignment after a revocation before the processing loop gives up on its
/// consumer: a rebalance waits at most `max.poll.interval.ms` (120 s) for slow members, so a
/// longer wait means this consumer has not rejoined its group (seen after broker outages). The
/// loop then fails and its supervisor rebuilds the stage with new clients.
const REJOIN_DEADLINE: Duration = Duration::from_secs(150);

impl ClientContext for StageContext {
    fn stats(&self, statistics: Statistics) {
        if let Some(group) = &statistics.cgrp {
            // Changes of the group membership as librdkafka sees it: after an outage, these
            // lines tell whether and when the consumer rejoined.
            let mut last = self.group_state.lock().expect("group state");
            if last.0 != group.state || last.1 != group.join_state {
                *last = (group.state.clone(), group.join_state.clone());
                tracing::info!(
                    stage = self.stage,
                    state = %group.state,
                    join_state = %group.join_state,
                    assigned = group.assignment_size,
                    last_rebalance = %group.rebalance_reason,
                    "consumer group state"
                );
            }
        }
        for (topic, t) in &statistics.topics {
            for (id, p) in &t.partitions {
                // With transactions, offsets are committed by the producer and librdkafka's
                // consumer_lag stays -1: fall back to the stored offset or the position.
                let lag = [
                    p.consumer_lag,
                    p.consumer_lag_stored,
                    if p.app_offset >= 0 && p.ls_offset >= 0 {
                        (p.ls_offset - p.app_offset).max(0)
                    } else {
                        -1
                    },
                ]
                .into_iter()
                .find(|&l| l >= 0);
                if let (true, Some(lag)) = (*id >= 0, lag) {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[self.stage, topic, &id.to_string()])
                        .set(lag);
                }
            }
        }
    }
}

impl ConsumerContext for StageContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        tracing::info!(stage = self.stage, ?rebalance, "partitions rebalanced");
        let mut revoked_at = self.revoked_at.lock().expect("rebalance clock");
        match rebalance {
            Rebalance::Revoke(_) => {
                revoked_at.get_or_insert_with(Instant::now);
            }
            Rebalance::Assign(_) => *revoked_at = None,
            Rebalance::Error(_) => {}
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// Topics of the pipeline with their dead-letter topics, and how each is configured.
pub fn topic_plan(
    all: &[String],
    compacted: &[String],
) -> Vec<(String, Vec<(&'static str, &'static str)>)> {
    let mut plan = Vec::new();
    for t in all {
        let config = if compacted.contains(t) {
            vec![("cleanup.policy", "compact")]
        } else {
            vec![]
        };
        plan.push((t.clone(), config));
        plan.push((topics::dead_letter(t), vec![]));
    }
    plan
}

/// Creates the topics on a real broker; existing ones are left as they are.
pub async fn create_topics(
    settings: &KafkaSettings,
    all: &[String],
    compacted: &[String],
    partitions: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = settings
        .base()
        .create()
        .context("cannot create a Kafka admin client")?;
    let plan = topic_plan(all, compacted);
    let replication = settings.replication_factor();
    let new_topics: Vec<NewTopic> = plan
        .iter()
        .map(|(name, config)| {
            let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
            for (k, v) in config {
                t = t.set(k, v);
            }
            t
        })
        .collect();
    let results = admin
        .create_topics(
            &new_topics,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .with_context(|| format!("cannot create topics on {}", settings.brokers))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(anyhow!("cannot create topic {topic}: {code}")),
        }
    }
    Ok(())
}

impl KafkaSettings {
    /// Replication factor of created topics: `TWEETOSCOPE_REPLICATION` or 1.
    fn replication_factor(&self) -> i32 {
        std::env::var("TWEETOSCOPE_REPLICATION")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    }
}

/// The in-process Kafka-protocol broker (`rdkafka::mocking::MockCluster`) on its own thread.
pub struct EmbeddedBroker {
    bootstrap: String,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts a one-broker cluster with every topic of `all` (and its dead-letter topic).
    pub fn start(all: &[String], compacted: &[String], partitions: i32) -> anyhow::Result<Self> {
        let plan = topic_plan(all, compacted);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let cluster = match rdkafka::mocking::MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(anyhow!("cannot start the embedded broker: {e}")));
                        return;
                    }
                };
                for (topic, _) in &plan {
                    if let Err(e) = cluster.create_topic(topic, partitions, 1) {
                        let _ = ready_tx.send(Err(anyhow!("cannot create topic {topic}: {e}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                let _ = stop_rx.recv();
                drop(cluster);
            })?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| anyhow!("the embedded broker thread died"))??;
        Ok(Self {
            bootstrap,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Its bootstrap servers.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A record a stage wants written.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Destination topic.
    pub topic: String,
    /// Record key.
    pub key: Option<String>,
    /// Explicit partition (else the key decides).
    pub partition: Option<i32>,
    /// Payload (`None`: a tombstone, deleting the key from a compacted topic).
    pub payload: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, String)>,
}

impl Outgoing {
    /// A record with a key.
    pub fn keyed(topic: &str, key: impl Into<String>, payload: Vec<u8>) -> Self {
        Self {
            topic: topic.to_owned(),
            key: Some(key.into()),
            partition: None,
            payload: Some(payload),
            headers: Vec::new(),
        }
    }

    /// A tombstone for `key`.
    pub fn tombstone(topic: &str, key: impl Into<String>) -> Self {
        Self {
            topic: topic.to_owned(),
            key: Some(key.into()),
            partition: None,
            payload: None,
            headers: Vec::new(),
        }
    }

    /// A record without key.
    pub fn unkeyed(topic: &str, payload: Vec<u8>) -> Self {
        Self {
            topic: topic.to_owned(),
            key: None,
            partition: None,
            payload: Some(payload),
            headers: Vec::new(),
        }
    }

    /// The same record with one more header.
    pub fn with_header(mut self, key: &str, value: impl Into<String>) -> Self {
        self.headers.push((key.to_owned(), value.into()));
        self
    }

    /// The same record on an explicit partition.
    pub fn on_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
}

/// A boxed future of the records a message causes.
pub type Later = Pin<Box<dyn Future<Output = Vec<Outgoing>> + Send>>;

/// What a stage made of one message.
pub enum Handled {
    /// These records, now.
    Now(Vec<Outgoing>),
    /// These records, once the work (e.g. a fit on a worker thread) is done.
    Later(Later),
    /// The message is malformed: it goes to the dead-letter topic.
    Malformed(Malformed),
}

/// Writes records, retrying while the local queue is full, and counts them.
#[derive(Clone)]
pub struct Sink {
    producer: FutureProducer,
    metrics: Arc<Metrics>,
    stage: &'static str,
}

impl Sink {
    /// A sink for `stage`.
    pub fn new(producer: FutureProducer, metrics: Arc<Metrics>, stage: &'static str) -> Self {
        Self {
            producer,
            metrics,
            stage,
        }
    }

    /// The producer.
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Enqueues `record` now; the returned future resolves when Kafka has it (true) or gave up.
    pub async fn enqueue(&self, record: Outgoing) -> impl Future<Output = bool> + Send + 'static {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &record.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let delivery = loop {
            let mut r = FutureRecord::<String, Vec<u8>>::to(&record.topic).headers(headers.clone());
            if let Some(p) = &record.payload {
                r = r.payload(p);
            }
            if let Some(k) = &record.key {
                r = r.key(k);
            }
            if let Some(p) = record.partition {
                r = r.partition(p);
            }
            match self.producer.send_result(r) {
                Ok(delivery) => break Some(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => {
                    tracing::error!(stage = self.stage, topic = %record.topic, error = %e, "cannot produce");
                    break None;
                }
            }
        };
        let metrics = self.metrics.clone();
        let stage = self.stage;
        let topic = record.topic;
        async move {
            let ok = match delivery {
                Some(d) => match d.await {
                    Ok(Ok(_)) => true,
                    Ok(Err((e, _))) => {
                        tracing::error!(stage, topic = %topic, error = %e, "delivery failed");
                        false
                    }
                    Err(_) => false,
                },
                None => false,
            };
            if ok {
                metrics.produced.with_label_values(&[stage, &topic]).inc();
                // Create the failure series at 0 so its first increment shows in rate().
                metrics.produce_failures.with_label_values(&[stage, &topic]);
            } else {
                metrics
                    .produce_failures
                    .with_label_values(&[stage, &topic])
                    .inc();
            }
            ok
        }
    }

    /// Enqueues every record in order, then waits for all deliveries.
    pub async fn send_all(&self, records: Vec<Outgoing>) -> bool {
        let mut pending = Vec::with_capacity(records.len());
        for r in records {
            pending.push(self.enqueue(r).await);
        }
        let mut ok = true;
        for p in pending {
            ok &= p.await;
        }
        ok
    }
}

/// Header carrying the wall time (Unix milliseconds) when a cascade's window closed, from the
/// collector's series through the estimator's parameters to the predictor's alert.
pub const WINDOW_CLOSED_HEADER: &str = "tweetoscope-window-closed-ms";

/// Wall time in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The value of a text header of `message`.
pub fn header_text(message: &BorrowedMessage<'_>, key: &str) -> Option<String> {
    use rdkafka::message::Headers;
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The dead-letter record for a malformed message: payload and key unchanged, the reason and the
/// origin in headers.
pub fn dead_letter(stage: &str, message: &BorrowedMessage<'_>, reason: &Malformed) -> Outgoing {
    Outgoing {
        topic: topics::dead_letter(message.topic()),
        key: message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        partition: None,
        payload: Some(message.payload().unwrap_or_default().to_vec()),
        headers: vec![
            ("tweetoscope-error".into(), reason.reason.clone()),
            ("tweetoscope-stage".into(), stage.into()),
            (
                "tweetoscope-origin".into(),
                format!(
                    "{}/{}/{}",
                    message.topic(),
                    message.partition(),
                    message.offset()
                ),
            ),
        ],
    }
}

/// Largest payload a stage accepts; larger ones are dead-lettered unparsed.
pub const MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;

/// Settings of one processing loop.
pub struct LoopSettings {
    /// Stage name (metrics label, logs).
    pub stage: &'static str,
    /// Most messages in flight (handled, outputs not yet delivered).
    pub max_in_flight: usize,
    /// How often offsets (and, with transactions, outputs) are committed.
    pub commit_interval: Duration,
    /// Whether the sink's producer is transactional.
    pub transactional: bool,
}

impl LoopSettings {
    /// Defaults for `stage`.
    pub fn new(stage: &'static str) -> Self {
        Self {
            stage,
            max_in_flight: 1_000,
            commit_interval: Duration::from_millis(500),
            transactional: false,
        }
    }
}

/// What a stage does with its input, and how it recovers.
pub trait Handler: Send {
    /// Handles one message.
    fn handle(&mut self, message: &BorrowedMessage<'_>) -> Handled;

    /// The offset to commit for a partition whose messages before `processed` are all handled,
    /// and the commit metadata. Default: `processed`, no metadata. A stage with state returns the
    /// oldest offset its state still needs and records `processed` in the metadata.
    fn checkpoint(&self, _topic: &str, _partition: i32, processed: i64) -> (i64, String) {
        (processed, String::new())
    }

    /// Called before the first message of a partition newly assigned to this process, with the
    /// committed offset and metadata (None: nothing committed yet).
    fn resume(
        &mut self,
        _topic: &str,
        _partition: i32,
        _committed: Option<(i64, &str)>,
    ) -> anyhow::Result<()> {
        Ok(())
    }

    /// The partition is no longer this process's (or its uncommitted work was abandoned): drop
    /// the state built from it.
    fn revoke(&mut self, _topic: &str, _partition: i32) {}
}

impl<F> Handler for F
where
    F: FnMut(&BorrowedMessage<'_>) -> Handled + Send,
{
    fn handle(&mut self, message: &BorrowedMessage<'_>) -> Handled {
        self(message)
    }
}

/// A stateless handler from a closure (pins down the closure's signature for type inference).
pub fn handler<F>(f: F) -> F
where
    F: FnMut(&BorrowedMessage<'_>) -> Handled + Send,
{
    f
}

/// Commit metadata written by stages that replay: `processed=<offset>` plus their own fields.
pub fn processed_mark(metadata: &str) -> Option<i64> {
    metadata
        .split(';')
        .find_map(|field| field.strip_prefix("processed="))
        .and_then(|v| v.parse().ok())
}

/// Longest wait of a transactional call (send offsets, commit, abort): a little more than the
/// transaction timeout (10 s), after which the coordinator aborts the transaction anyway.
/// librdkafka recommends -1, documented as "the remaining transaction time", but for commit and
/// abort -1 means no limit at all: with the broker frozen, a commit was seen blocking for as long
/// as the broker did, and the loop with it. A call that times out leaves the transaction in
/// progress, so the next abort fails too and the loop returns an error: its supervisor rebuilds
/// the stage with new clients.
const TRANSACTION_CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A handled message: where it was read, and whether every output it caused reached Kafka.
struct Done {
    topic: String,
    partition: i32,
    offset: i64,
    delivered: bool,
}

/// The work of a processing loop not committed yet.
#[derive(Default)]
struct Uncommitted {
    /// Handled messages whose outputs are not all delivered yet, in reading order.
    in_flight: FuturesOrdered<Pin<Box<dyn Future<Output = Done> + Send>>>,
    /// Per partition, the offset after the last message whose outputs are all delivered.
    next_offsets: HashMap<(String, i32), i64>,
    /// Partitions whose handler state was resumed.
    known: std::collections::HashSet<(String, i32)>,
    /// Whether a message finished since the last commit.
    dirty: bool,
}

impl Uncommitted {
    /// Records a finished message; false if one of its outputs was not delivered.
    fn finish(&mut self, done: Done) -> bool {
        if done.delivered {
            self.next_offsets
                .insert((done.topic, done.partition), done.offset + 1);
            self.dirty = true;
        }
        done.delivered
    }

    /// Waits for every message in flight; false as soon as one had an output not delivered.
    async fn drain(&mut self) -> bool {
        while let Some(done) = self.in_flight.next().await {
            if !self.finish(done) {
                return false;
            }
        }
        true
    }
}

/// Reads `consumer` until `shutdown` turns true; each message goes to `handler`, its outputs to
/// `sink`. Every `commit_interval`, reading pauses until the outputs of every handled message are
/// delivered, then the offsets after them are committed: with transactions on, atomically with
/// those outputs (so a transaction never holds the outputs of a message whose offset it does not
/// commit), otherwise after them. The handler's checkpoint is thus always taken in a state that
/// matches the committed offsets. A rebalance, an output not delivered or a failed commit
/// abandons the uncommitted work: the transaction is aborted, the handler drops its state, and
/// reading resumes from the committed offsets. On shutdown, in-flight work is finished (for at
/// most 30 s), committed, and the consumer leaves its group.
pub async fn process<H: Handler>(
    settings: LoopSettings,
    consumer: StreamConsumer<StageContext>,
    sink: Sink,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    handler: H,
) -> anyhow::Result<()> {
    let beat = metrics.liveness.register(settings.stage);
    let result = run_loop(settings, &consumer, sink, metrics, shutdown, handler, &beat).await;
    beat.beat("leaving the consumer group");
    close_consumer(consumer).await;
    beat.stopped();
    result
}

/// The body of [`process`], which closes the consumer however this ends.
async fn run_loop<H: Handler>(
    settings: LoopSettings,
    consumer: &StreamConsumer<StageContext>,
    sink: Sink,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
    mut handler: H,
    beat: &LoopBeat,
) -> anyhow::Result<()> {
    let stage = settings.stage;
    let transactional = settings.transactional;
    let producer = sink.producer().clone();
    if transactional {
        producer.begin_transaction()?;
    }
    let mut work = Uncommitted::default();
    let mut generation = consumer.context().generation.load(Ordering::SeqCst);
    let mut commit_tick = tokio::time::interval(settings.commit_interval);
    let processing = metrics.processing_seconds.with_label_values(&[stage]);
    // Labelled counters exist from the start, so rate() and increase() see their first step.
    if let Ok(subscription) = consumer.subscription() {
        for e in subscription.elements() {
            metrics.malformed.with_label_values(&[stage, e.topic()]);
        }
    }
    loop {
        beat.beat("waiting for messages");
        if *shutdown.borrow() {
            break;
        }
        let current = consumer.context().generation.load(Ordering::SeqCst);
        if current != generation {
            generation = current;
            // Whatever was not committed is redone from the committed offsets, by whichever
            // process now owns each partition (an eager rebalance restarts fetching there).
            restart(
                consumer,
                &producer,
                transactional,
                false,
                &mut handler,
                &mut work,
                beat,
            )?;
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => {}
            Some(done) = work.in_flight.next(), if !work.in_flight.is_empty() => {
                if !work.finish(done) {
                    tracing::warn!(stage, "an output was not delivered: uncommitted work is redone");
                    restart(consumer, &producer, transactional, true, &mut handler, &mut work, beat)?;
                }
            }
            _ = commit_tick.tick() => {
                if let Some(waited) = consumer.context().unassigned_for() {
                    if waited > REJOIN_DEADLINE {
                        return Err(anyhow!(
                            "no partition assignment {} s after the last revocation: the consumer has not rejoined its group",
                            waited.as_secs()
                        ));
                    }
                }
                if work.dirty || !work.in_flight.is_empty() {
                    // Everything handled so far is committed together: wait for its outputs.
                    beat.beat("waiting for the outputs in flight");
                    let failure = if work.drain().await {
                        commit(consumer, &producer, transactional, &handler, &work.next_offsets, false, beat).err()
                    } else {
                        Some(anyhow!("an output was not delivered"))
                    };
                    work.dirty = false;
                    if let Some(e) = failure {
                        tracing::warn!(stage, error = %format!("{e:#}"), "commit failed: uncommitted work is redone");
                        restart(consumer, &producer, transactional, true, &mut handler, &mut work, beat)?;
                    }
                }
            }
            received = consumer.recv(), if work.in_flight.len() < settings.max_in_flight => {
                let message = match received {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(stage, error = %e, "Kafka consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let current = consumer.context().generation.load(Ordering::SeqCst);
                if current != generation {
                    // The rebalance was served by the poll that returned this message, which
                    // comes from the new assignment: reset, then handle it.
                    generation = current;
                    restart(consumer, &producer, transactional, false, &mut handler, &mut work, beat)?;
                }
                let started = Instant::now();
                let topic = message.topic().to_owned();
                let key = (topic.clone(), message.partition());
                if !work.known.contains(&key) {
                    beat.beat("reading a committed offset");
                    let committed = committed_position(consumer, &topic, message.partition())?;
                    beat.beat("restoring the state of a partition");
                    tokio::task::block_in_place(|| {
                        handler.resume(&topic, message.partition(), committed.as_ref().map(|(o, m)| (*o, m.as_str())))
                    })?;
                    work.known.insert(key);
                }
                metrics.consumed.with_label_values(&[stage, &topic]).inc();
                let position = (topic.clone(), message.partition(), message.offset());
                let too_big = message.payload().map_or(0, <[u8]>::len) > MAX_PAYLOAD_BYTES;
                let handled = if too_big {
                    Handled::Malformed(Malformed::new(format!(
                        "payload larger than {MAX_PAYLOAD_BYTES} bytes"
                    )))
                } else {
                    handler.handle(&message)
                };
                let letter = match &handled {
                    Handled::Malformed(reason) => {
                        metrics.malformed.with_label_values(&[stage, &topic]).inc();
                        tracing::warn!(
                            stage,
                            topic = %topic,
                            partition = position.1,
                            offset = position.2,
                            reason = %reason.reason,
                            "malformed message sent to the dead-letter topic"
                        );
                        Some(dead_letter(stage, &message, reason))
                    }
                    _ => None,
                };
                drop(message);
                let sink = sink.clone();
                let histogram = processing.clone();
                let (topic, partition, offset) = position;
                let future: Pin<Box<dyn Future<Output = Done> + Send>> = match handled {
                    Handled::Now(records) => {
                        let mut pending = Vec::with_capacity(records.len());
                        for r in records {
                            pending.push(sink.enqueue(r).await);
                        }
                        Box::pin(async move {
                            let mut delivered = true;
                            for p in pending {
                                delivered &= p.await;
                            }
                            histogram.observe(started.elapsed().as_secs_f64());
                            Done { topic, partition, offset, delivered }
                        })
                    }
                    Handled::Later(later) => Box::pin(async move {
                        let records = later.await;
                        let delivered = sink.send_all(records).await;
                        histogram.observe(started.elapsed().as_secs_f64());
                        Done { topic, partition, offset, delivered }
                    }),
                    Handled::Malformed(_) => {
                        let letter = letter.expect("built above");
                        let pending = sink.enqueue(letter).await;
                        Box::pin(async move {
                            let delivered = pending.await;
                            Done { topic, partition, offset, delivered }
                        })
                    }
                };
                work.in_flight.push_back(future);
            }
        }
    }
    // Finish what is in flight, then commit for good; if it cannot all be finished, commit nothing
    // more: the uncommitted work is redone by the next owner of each partition.
    beat.beat("finishing the work in flight before stopping");
    let finished = match tokio::time::timeout(Duration::from_secs(30), work.drain()).await {
        Ok(true) => commit(
            consumer,
            &producer,
            transactional,
            &handler,
            &work.next_offsets,
            true,
            beat,
        ),
        Ok(false) => Err(anyhow!("an output was not delivered")),
        Err(_) => Err(anyhow!("in-flight work not finished within 30 s")),
    };
    if let Err(e) = finished {
        tracing::warn!(stage, error = %format!("{e:#}"), "final commit not made: the uncommitted work will be redone");
        if transactional {
            let _ = tokio::task::block_in_place(|| {
                producer.abort_transaction(TRANSACTION_CALL_TIMEOUT)
            });
        }
    }
    Ok(())
}

/// The committed offset and metadata of one partition, if any.
fn committed_position(
    consumer: &StreamConsumer<StageContext>,
    topic: &str,
    partition: i32,
) -> anyhow::Result<Option<(i64, String)>> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed =
        tokio::task::block_in_place(|| consumer.committed_offsets(tpl, Duration::from_secs(10)))
            .with_context(|| format!("cannot read the committed offset of {topic}/{partition}"))?;
    Ok(committed
        .find_partition(topic, partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(o) => Some((o, e.metadata().to_owned())),
            _ => None,
        }))
}

/// Abandons the uncommitted work: aborts the transaction, drops the handler's state and, with
/// `rewind`, moves every assigned partition back to its committed offset (after a rebalance the
/// consumer already fetches from there).
fn restart<H: Handler>(
    consumer: &StreamConsumer<StageContext>,
    producer: &FutureProducer,
    transactional: bool,
    rewind: bool,
    handler: &mut H,
    work: &mut Uncommitted,
    beat: &LoopBeat,
) -> anyhow::Result<()> {
    let known = std::mem::take(&mut work.known);
    *work = Uncommitted::default();
    for (topic, partition) in known {
        handler.revoke(&topic, partition);
    }
    if transactional {
        // Logged on both sides: a call that blocks shows as a first line without its second.
        tracing::info!("abandoning the uncommitted work: aborting the transaction");
        beat.beat("aborting the transaction");
        tokio::task::block_in_place(|| -> anyhow::Result<()> {
            producer
                .abort_transaction(TRANSACTION_CALL_TIMEOUT)
                .context("cannot abort the Kafka transaction")?;
            producer.begin_transaction()?;
            Ok(())
        })?;
        tracing::info!("transaction aborted; reading again from the committed offsets");
    }
    if !rewind {
        return Ok(());
    }
    beat.beat("rewinding to the committed offsets");
    let assignment = consumer.assignment()?;
    for element in assignment.elements() {
        let (topic, partition) = (element.topic().to_owned(), element.partition());
        let target = committed_position(consumer, &topic, partition)?
            .map_or(Offset::Beginning, |(o, _)| Offset::Offset(o));
        consumer
            .seek(&topic, partition, target, Duration::from_secs(10))
            .with_context(|| {
                format!("cannot rewind {topic}/{partition} to its committed offset")
            })?;
    }
    Ok(())
}

/// Commits the handled prefix of every partition: with the outputs in a transaction, or alone.
fn commit<H: Handler>(
    consumer: &StreamConsumer<StageContext>,
    producer: &FutureProducer,
    transactional: bool,
    handler: &H,
    offsets: &HashMap<(String, i32), i64>,
    last: bool,
    beat: &LoopBeat,
) -> anyhow::Result<()> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), processed) in offsets {
        let (offset, metadata) = handler.checkpoint(topic, *partition, *processed);
        tpl.add_partition_offset(topic, *partition, Offset::Offset(offset))?;
        if let Some(mut e) = tpl.find_partition(topic, *partition) {
            e.set_metadata(metadata);
        }
    }
    beat.beat("committing");
    if !transactional {
        if tpl.count() > 0 {
            consumer.commit(
                &tpl,
                if last {
                    CommitMode::Sync
                } else {
                    CommitMode::Async
                },
            )?;
        }
        return Ok(());
    }
    tokio::task::block_in_place(|| -> anyhow::Result<()> {
        if tpl.count() > 0 {
            let group = consumer
                .group_metadata()
                .ok_or_else(|| anyhow!("no consumer group metadata yet"))?;
            producer.send_offsets_to_transaction(&tpl, &group, TRANSACTION_CALL_TIMEOUT)?;
        }
        beat.beat("committing the transaction");
        producer.commit_transaction(TRANSACTION_CALL_TIMEOUT)?;
        if !last {
            producer.begin_transaction()?;
        }
        Ok(())
    })
}

/// Leaves the group and drops the consumer on a worker thread, giving up after 10 s (librdkafka can
/// hang on close when the broker is gone).
pub async fn close_consumer<C: ConsumerContext + 'static>(consumer: StreamConsumer<C>) {
    let closing = tokio::task::spawn_blocking(move || {
        consumer.unsubscribe();
        drop(consumer);
    });
    if tokio::time::timeout(Duration::from_secs(10), closing)
        .await
        .is_err()
    {
        tracing::warn!("Kafka consumer did not close within 10 s");
    }
}
