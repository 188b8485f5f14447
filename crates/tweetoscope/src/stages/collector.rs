//! Collector stage: `tweets` → `cascade_series` (keyed by cid) and `cascade_properties` sizes
//! (keyed by `T_obs`, partitioned by cid).
//!
//! Recovery: the collector commits, per partition, the offset of the oldest original tweet its open
//! cascades still need (with `processed=<offset>` in the commit metadata). After a crash or a
//! rebalance it re-reads from there, rebuilding the open cascades with outputs suppressed until the
//! processed mark, so no partial series or size is emitted twice or lost. The metadata also keeps
//! each source's clock, put back when the processed mark is reached: with event times out of
//! order, the re-read tweets alone could leave it behind and make due again what was already sent.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use tweetoscope_cascade::{Collector, Emission, Outcome};
use tweetoscope_messages::{
    partition_for, to_payload, CascadeProperty, SourceRecord, SourceRecordRef,
};

use super::{key_text, StageEnv};
use crate::config::{CascadeArgs, TopicArgs};
use crate::kafka::{
    now_ms, processed_mark, AtCommit, Handled, Handler, KafkaSettings, Outgoing,
    WINDOW_CLOSED_HEADER,
};
use crate::metrics::Metrics;

const STAGE: &str = "collector";

/// Label of an outcome in `tweetoscope_collector_tweets_total`.
fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Started => "started",
        Outcome::Recorded => "recorded",
        Outcome::RecordedLate => "late",
        Outcome::Duplicate => "duplicate",
        Outcome::Orphan => "orphan",
        Outcome::BeforeStart => "before_start",
    }
}

/// The counter of each [`Outcome`] of a tweet, resolved once (not looked up by label per tweet).
#[derive(Debug)]
struct OutcomeCounters {
    started: prometheus::IntCounter,
    recorded: prometheus::IntCounter,
    late: prometheus::IntCounter,
    duplicate: prometheus::IntCounter,
    orphan: prometheus::IntCounter,
    before_start: prometheus::IntCounter,
}

impl OutcomeCounters {
    fn new(metrics: &Metrics) -> Self {
        let counter = |o| {
            metrics
                .collector_tweets
                .with_label_values(&[outcome_label(o)])
        };
        Self {
            started: counter(Outcome::Started),
            recorded: counter(Outcome::Recorded),
            late: counter(Outcome::RecordedLate),
            duplicate: counter(Outcome::Duplicate),
            orphan: counter(Outcome::Orphan),
            before_start: counter(Outcome::BeforeStart),
        }
    }

    fn inc(&self, outcome: Outcome) {
        match outcome {
            Outcome::Started => &self.started,
            Outcome::Recorded => &self.recorded,
            Outcome::RecordedLate => &self.late,
            Outcome::Duplicate => &self.duplicate,
            Outcome::Orphan => &self.orphan,
            Outcome::BeforeStart => &self.before_start,
        }
        .inc();
    }
}

/// The collector wired to Kafka offsets.
#[derive(Debug)]
pub struct CollectorHandler {
    collector: Collector,
    metrics: Arc<Metrics>,
    outcomes: OutcomeCounters,
    topics: TopicArgs,
    properties_partitions: i32,
    /// Partition of the tweets topic each source is read from.
    source_partition: HashMap<String, i32>,
    /// Per partition: outputs of messages before this offset were already committed.
    replay_until: HashMap<i32, i64>,
    /// Per partition: the source clocks committed with the processed mark, put back once it is
    /// reached.
    committed_clocks: HashMap<i32, BTreeMap<String, f64>>,
    /// Whether the too-many-sources warning was logged.
    clocks_dropped: AtomicBool,
    /// Counters that move when the stage commits (the sources whose end is committed).
    at_commit: AtCommit,
    /// Where the memory of finished cascades is read again after a restart (none: not rebuilt).
    kafka: Option<KafkaSettings>,
}

/// Largest commit metadata written (Kafka's default `offset.metadata.max.bytes` is 4096).
const MAX_METADATA_BYTES: usize = 4000;

/// Where the originals of the remembered finished cascades start, in commit metadata written by
/// [`CollectorHandler`].
fn finished_from(metadata: &str) -> Option<i64> {
    let fields = metadata.split_once(";clocks=").map_or(metadata, |(f, _)| f);
    fields
        .split(';')
        .find_map(|field| field.strip_prefix("finished_from="))
        .and_then(|v| v.parse().ok())
}

/// The source clocks in commit metadata written by [`CollectorHandler`].
fn clocks_of(metadata: &str) -> BTreeMap<String, f64> {
    metadata
        .split_once(";clocks=")
        .and_then(|(_, json)| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

impl CollectorHandler {
    /// A handler with no open cascade.
    pub fn new(
        args: &CascadeArgs,
        topics: TopicArgs,
        properties_partitions: i32,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            collector: Collector::new(args.collector_config()),
            outcomes: OutcomeCounters::new(&metrics),
            metrics,
            topics,
            properties_partitions,
            source_partition: HashMap::new(),
            replay_until: HashMap::new(),
            committed_clocks: HashMap::new(),
            clocks_dropped: AtomicBool::new(false),
            at_commit: AtCommit::default(),
            kafka: None,
        }
    }

    /// Rebuilds the memory of the cascades finished before the committed offset of `partition`
    /// from their original tweets in `[from, to)`, so that a repeated original is ignored after a
    /// restart as before it.
    fn remember_finished(
        &mut self,
        topic: &str,
        partition: i32,
        from: i64,
        to: i64,
    ) -> anyhow::Result<()> {
        let Some(kafka) = &self.kafka else {
            return Ok(());
        };
        let mut remembered = 0u64;
        let (collector, source_partition) = (&mut self.collector, &mut self.source_partition);
        kafka.scan_partition_range(
            topic,
            partition,
            Some(from),
            Some(to),
            |offset, key, payload| {
                let Ok(SourceRecord::Tweet(tweet)) =
                    SourceRecord::parse(payload.unwrap_or_default())
                else {
                    return;
                };
                if tweet.kind != tweetoscope_messages::TweetKind::Tweet {
                    return;
                }
                let source = key_text(key).unwrap_or_else(|| "default".into());
                if collector.remember_finished(&source, &tweet.tweet_id, offset.max(0) as u64) {
                    remembered += 1;
                }
                source_partition.entry(source).or_insert(partition);
            },
        )?;
        tracing::info!(
            partition,
            from,
            until = to,
            remembered,
            "memory of finished cascades rebuilt"
        );
        Ok(())
    }

    fn records(&self, emitted: Vec<Emission>) -> Vec<Outgoing> {
        emitted
            .into_iter()
            .map(|e| match e {
                Emission::Series(s) => {
                    Outgoing::keyed(&self.topics.series_topic, s.cid.0.clone(), to_payload(&s))
                        .with_header(WINDOW_CLOSED_HEADER, now_ms().to_string())
                }
                Emission::Size(s) => {
                    let window = s.t_obs.unwrap_or_default();
                    let partition = partition_for(&s.cid.0, self.properties_partitions);
                    Outgoing::keyed(
                        &self.topics.properties_topic,
                        window.to_string(),
                        to_payload(&CascadeProperty::Size(s)),
                    )
                    .on_partition(partition)
                }
            })
            .collect()
    }
}

impl Handler for CollectorHandler {
    fn handle(&mut self, message: &BorrowedMessage<'_>) -> Handled {
        // Borrowed from the message (no copy) unless the key is not UTF-8.
        let source = message
            .key()
            .map_or(Cow::Borrowed("default"), String::from_utf8_lossy);
        // Its texts borrowed from the payload: a retweet is read without a copy.
        let record = match SourceRecordRef::parse(message.payload().unwrap_or_default()) {
            Ok(r) => r,
            Err(m) => return Handled::Malformed(m),
        };
        let partition = message.partition();
        let replaying = self
            .replay_until
            .get(&partition)
            .is_some_and(|&mark| message.offset() < mark);
        if !replaying {
            if let Some(clocks) = self.committed_clocks.remove(&partition) {
                for (s, t) in clocks {
                    // Whatever this makes due was sent before the processed mark.
                    self.collector.advance_clock(&s, t, &mut Vec::new());
                }
            }
        }
        if self.source_partition.get(source.as_ref()) != Some(&partition) {
            self.source_partition
                .insert(source.clone().into_owned(), partition);
        }
        let mut emitted = Vec::new();
        match record {
            SourceRecordRef::Tweet(tweet) => {
                let outcome = self.collector.on_tweet_at(
                    &source,
                    &tweet,
                    message.offset().max(0) as u64,
                    &mut emitted,
                );
                if !replaying {
                    self.outcomes.inc(outcome);
                }
                if !matches!(outcome, Outcome::Started | Outcome::Recorded) {
                    tracing::debug!(source = %source, cid = %tweet.tweet_id, t = tweet.t, outcome = outcome_label(outcome), "tweet not recorded as usual");
                }
            }
            SourceRecordRef::End(end) => {
                self.collector
                    .on_end_of_source(&source, end.t, &mut emitted);
                if !replaying {
                    // Counted once committed: `run` ends on it, and an aborted end is redone.
                    self.at_commit.inc(&self.metrics.sources_ended);
                    tracing::info!(source = %source, t = end.t, "source ended; its cascades are flushed");
                }
            }
        }
        self.metrics
            .open_cascades
            .set(self.collector.open_cascades() as i64);
        if replaying {
            // Rebuilding state after a restart: these outputs are already committed.
            return Handled::Now(Vec::new());
        }
        Handled::Now(self.records(emitted))
    }

    fn checkpoint(&self, _topic: &str, partition: i32, processed: i64) -> (i64, String) {
        let oldest = self
            .source_partition
            .iter()
            .filter(|(_, &p)| p == partition)
            .filter_map(|(source, _)| self.collector.oldest_open_position(source))
            .min()
            .map_or(processed, |o| (o as i64).min(processed));
        let mark = processed.max(self.replay_until.get(&partition).copied().unwrap_or(0));
        // Clocks at the mark: those committed with it while it is not reached yet, else now's.
        let mut clocks = self
            .committed_clocks
            .get(&partition)
            .cloned()
            .unwrap_or_default();
        for (source, _) in self
            .source_partition
            .iter()
            .filter(|(_, &p)| p == partition)
        {
            if let Some(t) = self.collector.clock(source) {
                let clock = clocks.entry(source.clone()).or_insert(t);
                *clock = clock.max(t);
            }
        }
        // Where the originals of the finished cascades still remembered start, if before the
        // committed offset: a restart reads them again from there.
        let finished_from = self
            .source_partition
            .iter()
            .filter(|(_, &p)| p == partition)
            .filter_map(|(source, _)| self.collector.oldest_remembered_position(source))
            .min()
            .filter(|&f| (f as i64) < oldest)
            .map_or(String::new(), |f| format!(";finished_from={f}"));
        let metadata = format!(
            "processed={mark}{finished_from};clocks={}",
            serde_json::to_string(&clocks).expect("serializable")
        );
        if metadata.len() <= MAX_METADATA_BYTES {
            return (oldest, metadata);
        }
        if !self.clocks_dropped.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                partition,
                sources = clocks.len(),
                "too many sources on one partition to commit their clocks: a restart may resend \
                 windows of sources whose event times go backwards"
            );
        }
        (oldest, format!("processed={mark}{finished_from}"))
    }

    fn resume(
        &mut self,
        topic: &str,
        partition: i32,
        committed: Option<(i64, &str)>,
    ) -> anyhow::Result<()> {
        if let Some((offset, metadata)) = committed {
            if let Some(from) = finished_from(metadata).filter(|&f| f < offset) {
                self.remember_finished(topic, partition, from, offset)?;
            }
        }
        if let Some(mark) = committed.and_then(|(_, metadata)| processed_mark(metadata)) {
            tracing::info!(
                partition,
                from = committed.map(|c| c.0),
                until = mark,
                "rebuilding open cascades"
            );
            self.replay_until.insert(partition, mark);
            let clocks = committed.map(|(_, m)| clocks_of(m)).unwrap_or_default();
            self.committed_clocks.insert(partition, clocks);
        }
        Ok(())
    }

    fn revoke(&mut self, _topic: &str, partition: i32) {
        let sources: Vec<String> = self
            .source_partition
            .iter()
            .filter(|(_, &p)| p == partition)
            .map(|(s, _)| s.clone())
            .collect();
        for source in sources {
            self.collector.forget_source(&source);
            self.source_partition.remove(&source);
        }
        self.replay_until.remove(&partition);
        self.committed_clocks.remove(&partition);
        self.metrics
            .open_cascades
            .set(self.collector.open_cascades() as i64);
    }
}

/// Runs the collector until shutdown.
pub async fn run(env: StageEnv, args: CascadeArgs) -> anyhow::Result<()> {
    let input = env.input(STAGE, &env.topics.tweets_topic);
    env.consume(input, |clients| {
        let partitions = clients.partitions_of(&env.topics.properties_topic)?;
        let mut handler =
            CollectorHandler::new(&args, env.topics.clone(), partitions, env.metrics.clone());
        handler.at_commit = clients.at_commit();
        handler.kafka = Some(env.kafka.clone());
        let config = handler.collector.config();
        tracing::info!(windows = ?config.windows, terminated = config.terminated,
            terminated_age_ratio = config.terminated_age_ratio, min_cascade_size = config.min_cascade_size, "collector started");
        Ok(handler)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tweetoscope_cascade::CollectorConfig;
    use tweetoscope_messages::{CascadeId, Tweet, TweetKind};

    fn handler() -> CollectorHandler {
        let cli = crate::cli::parse(["tweetoscope", "collector"]).expect("defaults");
        let (kafka, _) = cli.command.kafka().expect("a Kafka command");
        let metrics = Metrics::new();
        CollectorHandler {
            outcomes: OutcomeCounters::new(&metrics),
            collector: Collector::new(CollectorConfig {
                windows: vec![600, 1200],
                terminated: 1800.0,
                terminated_age_ratio: 0.0,
                min_cascade_size: 1,
                remembered_finished: 100,
            }),
            metrics,
            topics: kafka.topics.clone(),
            properties_partitions: 4,
            source_partition: HashMap::new(),
            replay_until: HashMap::new(),
            committed_clocks: HashMap::new(),
            clocks_dropped: AtomicBool::new(false),
            at_commit: AtCommit::default(),
            kafka: None,
        }
    }

    fn feed(h: &mut CollectorHandler, source: &str, partition: i32, offset: u64, t: f64) {
        let tweet = Tweet {
            kind: TweetKind::Tweet,
            msg: String::new(),
            t,
            m: 1.0,
            tweet_id: CascadeId(format!("{source}-{offset}")),
            info: String::new(),
        };
        h.collector
            .on_tweet_at(source, &tweet, offset, &mut Vec::new());
        h.source_partition.insert(source.into(), partition);
    }

    #[test]
    fn the_checkpoint_keeps_the_oldest_needed_offset_the_mark_and_the_clocks() {
        let mut h = handler();
        feed(&mut h, "a", 1, 10, 500.0);
        feed(&mut h, "a", 1, 11, 520.0);
        feed(&mut h, "b", 1, 12, 90.0);
        feed(&mut h, "c", 2, 3, 7000.0);
        let (offset, metadata) = h.checkpoint("tweets", 1, 13);
        assert_eq!(offset, 10);
        assert_eq!(processed_mark(&metadata), Some(13));
        let clocks = clocks_of(&metadata);
        assert_eq!(
            clocks,
            BTreeMap::from([("a".to_owned(), 520.0), ("b".to_owned(), 90.0)])
        );

        // A restarted handler keeps those clocks until it reaches the mark, and commits them
        // meanwhile even though its own clocks are still behind.
        let mut restarted = handler();
        restarted
            .resume("tweets", 1, Some((offset, &metadata)))
            .expect("resume");
        assert_eq!(restarted.replay_until.get(&1), Some(&13));
        feed(&mut restarted, "a", 1, 10, 500.0);
        let (_, during_replay) = restarted.checkpoint("tweets", 1, 11);
        assert_eq!(processed_mark(&during_replay), Some(13));
        assert_eq!(clocks_of(&during_replay), clocks);
        restarted.revoke("tweets", 1);
        assert!(restarted.committed_clocks.is_empty());
    }

    /// Writes `tweets` of source "s" to partition 0 of `topic`; their offsets.
    async fn produce(brokers: &str, topic: &str, tweets: &[Tweet]) -> Vec<u64> {
        let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .expect("producer");
        let mut offsets = Vec::new();
        for t in tweets {
            let payload = to_payload(t);
            let record = rdkafka::producer::FutureRecord::to(topic)
                .key("s")
                .payload(&payload)
                .partition(0);
            let delivery = producer
                .send(record, std::time::Duration::from_secs(10))
                .await
                .expect("delivered");
            offsets.push(delivery.offset as u64);
        }
        offsets
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_collector_still_ignores_repeated_originals_of_cascades_finished_before() {
        let topic = "tweets".to_owned();
        let broker = crate::kafka::EmbeddedBroker::start(std::slice::from_ref(&topic), &[], 1)
            .expect("broker");
        let tweet = |id: &str, t: f64, kind: TweetKind| Tweet {
            kind,
            msg: String::new(),
            t,
            m: 1.0,
            tweet_id: CascadeId(id.into()),
            info: String::new(),
        };
        // "a" and "b" finish (the clock passes their last tweet + 1800 s) once "c" starts.
        let tweets = [
            tweet("a", 0.0, TweetKind::Tweet),
            tweet("a", 5.0, TweetKind::Retweet),
            tweet("b", 10.0, TweetKind::Tweet),
            tweet("c", 5000.0, TweetKind::Tweet),
        ];
        let offsets = produce(broker.bootstrap(), &topic, &tweets).await;
        let mut before = handler();
        for (t, &offset) in tweets.iter().zip(&offsets) {
            before
                .collector
                .on_tweet_at("s", t, offset, &mut Vec::new());
        }
        before.source_partition.insert("s".into(), 0);
        let (committed, metadata) = before.checkpoint(&topic, 0, offsets[3] as i64 + 1);
        assert_eq!(committed, offsets[3] as i64, "the oldest open cascade, c");
        assert_eq!(
            finished_from(&metadata),
            Some(offsets[0] as i64),
            "{metadata}"
        );

        let restart = |kafka: Option<KafkaSettings>| {
            let mut h = handler();
            h.kafka = kafka;
            h.resume(&topic, 0, Some((committed, &metadata)))
                .expect("resume");
            ["a", "b"].map(|id| {
                h.collector
                    .on_tweet("s", &tweet(id, 6000.0, TweetKind::Tweet), &mut Vec::new())
            })
        };
        let kafka = KafkaSettings {
            brokers: broker.bootstrap().to_owned(),
            group_prefix: "collector-test".into(),
            session_timeout_ms: 6_000,
            transactions: false,
            commit_interval: std::time::Duration::from_millis(100),
            replication: 1,
            client_options: Vec::new(),
            fetch_wait_max_ms: None,
        };
        let outcomes = tokio::task::block_in_place(|| restart(Some(kafka)));
        assert_eq!(outcomes, [Outcome::Duplicate, Outcome::Duplicate]);
        // Without reading the originals again, they would start over.
        assert_eq!(restart(None), [Outcome::Started, Outcome::Started]);
    }

    #[test]
    fn finished_from_is_read_before_the_clocks() {
        assert_eq!(
            finished_from("processed=9;finished_from=3;clocks={}"),
            Some(3)
        );
        assert_eq!(finished_from("processed=9;finished_from=4"), Some(4));
        assert_eq!(
            finished_from("processed=9;clocks={\"finished_from=5\":1.0}"),
            None
        );
        assert_eq!(finished_from(""), None);
    }

    #[test]
    fn clocks_that_do_not_fit_the_metadata_are_left_out() {
        let mut h = handler();
        for i in 0..200 {
            feed(
                &mut h,
                &format!("a-source-with-a-long-name-{i}"),
                0,
                i,
                100.0,
            );
        }
        let (offset, metadata) = h.checkpoint("tweets", 0, 500);
        assert_eq!(offset, 0);
        assert_eq!(metadata, "processed=500");
        assert!(clocks_of(&metadata).is_empty());
    }
}
