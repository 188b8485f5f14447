//! The processing loop: reads a topic, hands each message to a stage's [`Handler`], writes what
//! it returns through a [`Sink`], dead-letters malformed input, and commits (exactly once with
//! transactions; see the module [`super`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt as _;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tweetoscope_messages::Malformed;

use super::context::StageContext;
use super::delivery::StageProducer;
use super::sink::{
    abort_transaction, bounded_transactional_call, commit_transaction, dead_letter, Outgoing, Sink,
    StuckTransactionalCall, TRANSACTION_CALL_TIMEOUT,
};
use crate::events::{InternalEvent as _, MessageMalformed};
use crate::liveness::LoopBeat;
use crate::metrics::Metrics;

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

impl std::fmt::Debug for Handled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handled::Now(records) => f.debug_tuple("Now").field(records).finish(),
            Handled::Later(_) => f.write_str("Later(..)"),
            Handled::Malformed(reason) => f.debug_tuple("Malformed").field(reason).finish(),
        }
    }
}

/// Most records handed to the producer and not yet reported before the loop stops reading until
/// the next commit has waited for them (a bound on the producer's memory between commits).
const MAX_RECORDS_IN_FLIGHT: u64 = 100_000;

/// Most messages handled in a row, from what the consumer has already fetched, before the loop
/// looks at its timers (commit, liveness) and the shutdown signal again: about a millisecond of
/// the collector's work.
const READ_BATCH: usize = 256;

/// Largest payload a stage accepts; larger ones are dead-lettered unparsed.
pub const MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;

/// Settings of one processing loop.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    /// Stage name (metrics label, logs).
    pub stage: &'static str,
    /// Most messages whose outputs come later (work on other threads) at a time.
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

/// Longest wait for an assignment, after a revocation or for a new consumer's first one, before
/// the processing loop gives up on its consumer: a rebalance waits at most
/// `max.poll.interval.ms` (120 s) for slow members, so a longer wait means this consumer has not
/// (re)joined its group (seen after broker outages). The loop then fails and its supervisor
/// rebuilds the stage with new clients.
pub const REJOIN_DEADLINE: Duration = Duration::from_secs(150);

/// Longest wait, after librdkafka reported that it could not read the committed offsets of the
/// assignment, for a new assignment that would query them again (see
/// `StageContext::offsets_unread_for`), and longest time an assigned partition of a steady
/// member may go without a fetcher (`StageContext::unfetched_for`), before the processing loop
/// gives up on its consumer: the loop then fails and its supervisor rebuilds the stage with new
/// clients.
pub const OFFSET_FETCH_DEADLINE: Duration = Duration::from_secs(30);

/// Commits that may fail in a row (undelivered outputs or a failed transaction, ~10 s each)
/// before the loop gives up on its clients: seen after a frozen broker, a producer whose
/// deliveries to one partition kept timing out for minutes while the loop redid its work. The
/// loop then fails and its supervisor rebuilds the stage with new clients. A 30 s outage costs
/// about three.
const MAX_FAILED_COMMITS_IN_A_ROW: u32 = 6;

/// Counts the commits that failed in a row; an error once there were too many.
#[derive(Debug, Default)]
struct FailedCommits(u32);

impl FailedCommits {
    fn succeeded(&mut self) {
        self.0 = 0;
    }

    fn failed(&mut self) -> anyhow::Result<()> {
        self.0 += 1;
        if self.0 >= MAX_FAILED_COMMITS_IN_A_ROW {
            return Err(anyhow!(
                "{} commits failed in a row: rebuilding the stage's Kafka clients",
                self.0
            ));
        }
        Ok(())
    }
}

/// The topics a loop reads, each resolved once: its name, shared by the records of the loop's
/// bookkeeping, and its `consumed` counter (no label lookup per message).
struct InputTopics {
    stage: &'static str,
    metrics: Arc<Metrics>,
    by_name: HashMap<String, InputTopic>,
}

/// One topic of [`InputTopics`].
struct InputTopic {
    name: Arc<str>,
    consumed: prometheus::IntCounter,
}

impl InputTopics {
    fn new(stage: &'static str, metrics: &Arc<Metrics>) -> Self {
        Self {
            stage,
            metrics: metrics.clone(),
            by_name: HashMap::new(),
        }
    }

    /// The topic called `name`, resolved on its first message.
    fn get(&mut self, name: &str) -> &InputTopic {
        if !self.by_name.contains_key(name) {
            let topic = InputTopic {
                name: name.into(),
                consumed: self.metrics.consumed.with_label_values(&[self.stage, name]),
            };
            self.by_name.insert(name.to_owned(), topic);
        }
        &self.by_name[name]
    }
}

/// A message whose outputs came later (see [`Handled::Later`]): where it was read, and whether
/// the producer accepted every output.
struct Done {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    accepted: bool,
}

/// The work of a processing loop not committed yet. A message's outputs are handed to the sink
/// as soon as they are known, and their deliveries are tallied by the producer
/// ([`super::DeliveryTally`]); a commit waits for the work that comes later, then for every
/// delivery.
#[derive(Default)]
struct Uncommitted {
    /// Messages whose outputs are not known yet (work on another thread).
    later: FuturesUnordered<Pin<Box<dyn Future<Output = Done> + Send>>>,
    /// Per partition, the offset after the last message whose outputs were handed to the sink.
    next_offsets: HashMap<(Arc<str>, i32), i64>,
    /// Partitions whose handler state was resumed.
    known: std::collections::HashSet<(Arc<str>, i32)>,
    /// Whether a message finished since the last commit.
    dirty: bool,
    /// Messages finished since the last commit, per topic.
    finished: HashMap<Arc<str>, u64>,
}

impl Uncommitted {
    /// Records a message whose outputs were handed to the sink; false if one was refused.
    fn finish(&mut self, done: Done) -> bool {
        if done.accepted {
            *self.finished.entry(done.topic.clone()).or_default() += 1;
            // Later work finishes in any order: the commit waits for all of it, so the offset
            // after the furthest message is the one to commit.
            let next = self
                .next_offsets
                .entry((done.topic, done.partition))
                .or_insert(done.offset + 1);
            *next = (*next).max(done.offset + 1);
            self.dirty = true;
        }
        done.accepted
    }

    /// A commit succeeded: the messages finished since the last one are committed.
    fn committed(&mut self, stage: &str, sink: &Sink, metrics: &Metrics) {
        sink.committed();
        for (topic, count) in self.finished.drain() {
            metrics
                .inputs_committed
                .with_label_values(&[stage, &topic])
                .inc_by(count);
        }
    }

    /// Waits for the work that comes later, then for every delivery; false as soon as an output
    /// was refused, or if one was not delivered.
    async fn drain(&mut self, sink: &Sink) -> bool {
        while let Some(done) = self.later.next().await {
            if !self.finish(done) {
                return false;
            }
        }
        sink.settled().await;
        sink.failures() == 0
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

/// Why the loop should give up on its consumer (to be rebuilt with new clients by the stage's
/// supervisor), if it should: no assignment for [`REJOIN_DEADLINE`], or assigned partitions that
/// librdkafka will not fetch for [`OFFSET_FETCH_DEADLINE`] (a failed offset fetch it does not
/// retry, or partitions its statistics show without a fetcher).
fn stuck_consumer(context: &StageContext) -> Option<anyhow::Error> {
    if let Some(waited) = context.unassigned_for().filter(|w| *w > REJOIN_DEADLINE) {
        return Some(anyhow!(
            "no partition assignment for {} s (since the consumer was created or its partitions were last revoked): the consumer has not joined its group",
            waited.as_secs()
        ));
    }
    if let Some(waited) = context
        .offsets_unread_for()
        .filter(|w| *w > OFFSET_FETCH_DEADLINE)
    {
        return Some(anyhow!(
            "the committed offsets of the assignment could not be read {} s ago and librdkafka does not read them again: its partitions are not fetched",
            waited.as_secs()
        ));
    }
    let (waited, partitions) = context
        .unfetched_for()
        .filter(|(w, _)| *w > OFFSET_FETCH_DEADLINE)?;
    Some(anyhow!(
        "assigned partitions not fetched for {} s although the consumer is steady in its group ({partitions}): librdkafka's assignment is stuck",
        waited.as_secs()
    ))
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
    let mut generation = consumer.context().generation();
    let mut failed_commits = FailedCommits::default();
    let mut commit_tick = tokio::time::interval(settings.commit_interval);
    let processing = metrics.processing_seconds.with_label_values(&[stage]);
    let mut input_topics = InputTopics::new(stage, &metrics);
    // One stream for the whole loop: a stream registers a waker slot when made and frees it when
    // dropped, which `consumer.recv()` would do for every message.
    let mut stream = consumer.stream();
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
        let current = consumer.context().generation();
        if current != generation {
            generation = current;
            // Whatever was not committed is redone from the committed offsets, by whichever
            // process now owns each partition (an eager rebalance restarts fetching there).
            restart(
                consumer,
                &sink,
                transactional,
                false,
                &mut handler,
                &mut work,
                beat,
            )?;
        }
        if sink.failures() > 0 {
            // A record was refused or its delivery failed: the commit would lack it.
            tracing::warn!(
                stage,
                "an output was not delivered: uncommitted work is redone"
            );
            failed_commits.failed()?;
            restart(
                consumer,
                &sink,
                transactional,
                true,
                &mut handler,
                &mut work,
                beat,
            )?;
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => {}
            Some(done) = work.later.next(), if !work.later.is_empty() => {
                if !work.finish(done) {
                    tracing::warn!(stage, "an output was not delivered: uncommitted work is redone");
                    failed_commits.failed()?;
                    restart(consumer, &sink, transactional, true, &mut handler, &mut work, beat)?;
                }
            }
            _ = commit_tick.tick() => {
                if let Some(stuck) = stuck_consumer(consumer.context()) {
                    return Err(stuck);
                }
                if work.dirty || !work.later.is_empty() || sink.in_flight() > 0 {
                    // Everything handled so far is committed together: wait for its outputs.
                    beat.beat("waiting for the outputs in flight");
                    let failure = if work.drain(&sink).await {
                        commit(consumer, &producer, transactional, &handler, &work.next_offsets, generation, false, beat).err()
                    } else {
                        Some(anyhow!("an output was not delivered"))
                    };
                    work.dirty = false;
                    if let Some(e) = failure {
                        if e.downcast_ref::<RebalancedBeforeCommit>().is_some() {
                            // Not a failure: the top of the loop sees the new generation and
                            // abandons the work, which the owner of each partition redoes.
                            tracing::info!(stage, "{e}");
                            continue;
                        }
                        if e.downcast_ref::<StuckTransactionalCall>().is_some() {
                            // Aborting would wait on the same stuck client: rebuild them instead.
                            return Err(e.context("commit stuck: the stage's Kafka clients are rebuilt"));
                        }
                        tracing::warn!(stage, error = %format!("{e:#}"), "commit failed: uncommitted work is redone");
                        failed_commits.failed()?;
                        restart(consumer, &sink, transactional, true, &mut handler, &mut work, beat)?;
                    } else {
                        work.committed(stage, &sink, &metrics);
                        failed_commits.succeeded();
                    }
                }
            }
            received = stream.next(), if room_to_read(&work, &sink, settings.max_in_flight) => {
                // The message that woke the loop, then those already fetched, up to a batch: one
                // pass through this `select!` (its timers, the shutdown watch, the stream's waker)
                // per batch instead of per message.
                let mut received = received.expect("Kafka message streams never end");
                let mut read = 0;
                loop {
                    let message = match received {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(stage, error = %e, "Kafka consumer error");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            break;
                        }
                    };
                    let current = consumer.context().generation();
                    if current != generation {
                        // The rebalance was served by the poll that returned this message, which
                        // comes from the new assignment: reset, then handle it.
                        generation = current;
                        restart(consumer, &sink, transactional, false, &mut handler, &mut work, beat)?;
                    }
                    let started = Instant::now();
                    let input = input_topics.get(message.topic());
                    let topic = input.name.clone();
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
                    input.consumed.inc();
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
                            MessageMalformed {
                                stage,
                                topic: &topic,
                                partition: position.1,
                                offset: position.2,
                                reason,
                            }
                            .emit(&metrics);
                            Some(dead_letter(stage, &message, reason))
                        }
                        _ => None,
                    };
                    drop(message);
                    let (topic, partition, offset) = position;
                    match handled {
                        Handled::Now(records) => {
                            let accepted = sink.enqueue_all(records).await;
                            processing.observe(started.elapsed().as_secs_f64());
                            work.finish(Done { topic, partition, offset, accepted });
                        }
                        Handled::Later(later) => {
                            let sink = sink.clone();
                            let histogram = processing.clone();
                            work.later.push(Box::pin(async move {
                                let records = later.await;
                                let accepted = sink.enqueue_all(records).await;
                                histogram.observe(started.elapsed().as_secs_f64());
                                Done { topic, partition, offset, accepted }
                            }));
                        }
                        Handled::Malformed(_) => {
                            let letter = letter.expect("built above");
                            let accepted = sink.enqueue(letter).await;
                            work.finish(Done { topic, partition, offset, accepted });
                        }
                    }
                    read += 1;
                    if read == READ_BATCH
                        || !room_to_read(&work, &sink, settings.max_in_flight)
                        || sink.failures() > 0
                        || *shutdown.borrow()
                    {
                        break;
                    }
                    // Only a message already fetched: waiting is the `select!`'s job.
                    match stream.next().now_or_never() {
                        Some(Some(next)) => received = next,
                        _ => break,
                    }
                }
            }
        }
    }
    // Finish what is in flight, then commit for good; if it cannot all be finished, commit nothing
    // more: the uncommitted work is redone by the next owner of each partition.
    beat.beat("finishing the work in flight before stopping");
    let finished = match tokio::time::timeout(Duration::from_secs(30), work.drain(&sink)).await {
        Ok(true) => commit(
            consumer,
            &producer,
            transactional,
            &handler,
            &work.next_offsets,
            generation,
            true,
            beat,
        ),
        Ok(false) => Err(anyhow!("an output was not delivered")),
        Err(_) => Err(anyhow!("in-flight work not finished within 30 s")),
    };
    if finished.is_ok() {
        work.committed(stage, &sink, &metrics);
    }
    if let Err(e) = finished {
        tracing::warn!(stage, error = %format!("{e:#}"), "final commit not made: the uncommitted work will be redone");
        if transactional {
            let _ = tokio::task::block_in_place(|| abort_transaction(&producer, false));
        }
    }
    Ok(())
}

/// Whether the loop may read another message: fewer than `max_in_flight` messages wait for work
/// on other threads, and fewer than [`MAX_RECORDS_IN_FLIGHT`] outputs for their delivery.
fn room_to_read(work: &Uncommitted, sink: &Sink, max_in_flight: usize) -> bool {
    work.later.len() < max_in_flight && sink.in_flight() < MAX_RECORDS_IN_FLIGHT
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
    sink: &Sink,
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
    sink.abandoned();
    let producer = sink.producer();
    if transactional {
        // Logged on both sides: a call that blocks shows as a first line without its second.
        tracing::info!("abandoning the uncommitted work: aborting the transaction");
        beat.beat("aborting the transaction");
        tokio::task::block_in_place(|| abort_transaction(producer, true))
            .context("cannot abort the Kafka transaction")?;
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

/// A rebalance was served (by a poll of the consumer that returned no message) after the work
/// to commit was done: its partitions may already belong to another process, which read their
/// committed offsets when they were assigned to it, so committing would make both do the work.
#[derive(Debug)]
struct RebalancedBeforeCommit;

impl std::fmt::Display for RebalancedBeforeCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "partitions rebalanced since the work to commit was done: it is not committed but redone by each partition's owner",
        )
    }
}

impl std::error::Error for RebalancedBeforeCommit {}

/// Commits the handled prefix of every partition: with the outputs in a transaction, or alone.
/// Commits nothing ([`RebalancedBeforeCommit`]) if the consumer has seen a rebalance since
/// `generation`, the one in which the work was done.
#[allow(clippy::too_many_arguments)]
fn commit<H: Handler>(
    consumer: &StreamConsumer<StageContext>,
    producer: &StageProducer,
    transactional: bool,
    handler: &H,
    offsets: &HashMap<(Arc<str>, i32), i64>,
    generation: u64,
    last: bool,
    beat: &LoopBeat,
) -> anyhow::Result<()> {
    // A revocation is served before the group can move to a new generation (eager assignors), and
    // only inside a poll of this consumer, which nothing does while this runs: checked here, the
    // partitions are still this process's when their offsets are committed.
    if consumer.context().generation() != generation {
        return Err(RebalancedBeforeCommit.into());
    }
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
            bounded_transactional_call("send_offsets_to_transaction", producer, move |p| {
                p.send_offsets_to_transaction(&tpl, &group, TRANSACTION_CALL_TIMEOUT)
            })?;
        }
        beat.beat("committing the transaction");
        commit_transaction(producer, !last)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use futures_util::FutureExt;
    use tokio::sync::oneshot;

    use super::*;
    use crate::kafka::DeliveryTally;

    #[test]
    fn the_loop_gives_up_on_its_clients_after_too_many_failed_commits_in_a_row() {
        let mut failed = FailedCommits::default();
        for _ in 1..MAX_FAILED_COMMITS_IN_A_ROW {
            failed.failed().expect("not yet");
        }
        failed.succeeded();
        for _ in 1..MAX_FAILED_COMMITS_IN_A_ROW {
            failed.failed().expect("a success started the count again");
        }
        let err = failed.failed().unwrap_err();
        assert!(err.to_string().contains("commits failed in a row"), "{err}");
    }

    #[test]
    fn the_processed_mark_is_read_from_the_metadata_the_stages_write() {
        assert_eq!(processed_mark("processed=42"), Some(42));
        // The collector's form: the mark, then the source clocks as JSON.
        let clocks = BTreeMap::from([("source-0".to_owned(), 12.5), ("a;b".to_owned(), 3.0)]);
        let collector = format!(
            "processed=1234;clocks={}",
            serde_json::to_string(&clocks).expect("serializable")
        );
        assert_eq!(processed_mark(&collector), Some(1234));
        // The learner's form: the mark, then a total per window.
        let learner = tweetoscope_predict::learner_metadata(7, &[(600, 12), (1200, 30)]);
        assert_eq!(processed_mark(&learner), Some(7));
        // Wherever it is among the fields; the first one counts.
        assert_eq!(processed_mark("x=1;processed=5;processed=9"), Some(5));
    }

    #[test]
    fn metadata_without_a_valid_mark_has_none() {
        for metadata in [
            "",
            "processed=",
            "processed=abc",
            "processed=12x",
            "processed 12",
            "unprocessed=12",
            "clocks={}",
        ] {
            assert_eq!(processed_mark(metadata), None, "{metadata:?}");
        }
    }

    /// The commit of work done before a rebalance the consumer has served since is refused
    /// before anything is sent: no broker is needed to see it (nothing listens at the address).
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn work_done_before_a_rebalance_served_since_is_not_committed() {
        let metrics = Metrics::new();
        let consumer: StreamConsumer<StageContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("group.id", "rebalanced-before-commit")
            .create_with_context(StageContext::new("tester", metrics.clone()))
            .expect("consumer");
        let producer: StageProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .create_with_context(DeliveryTally::new("tester", metrics.clone(), false))
            .expect("producer");
        let beat = metrics.liveness.register("tester");
        let offsets = HashMap::from([((Arc::from("tweets"), 0), 5)]);
        let handler = |_: &BorrowedMessage<'_>| Handled::Now(Vec::new());
        let seen = consumer.context().generation();
        for transactional in [false, true] {
            let err = commit(
                &consumer,
                &producer,
                transactional,
                &handler,
                &offsets,
                seen + 1,
                false,
                &beat,
            )
            .expect_err("a rebalance was served since the work was done");
            assert!(
                err.downcast_ref::<RebalancedBeforeCommit>().is_some(),
                "{err:#}"
            );
        }
    }

    #[test]
    fn loop_settings_defaults() {
        let s = LoopSettings::new("collector");
        assert_eq!(s.stage, "collector");
        assert_eq!(s.max_in_flight, 1_000);
        assert_eq!(s.commit_interval, Duration::from_millis(500));
        assert!(!s.transactional);
    }

    fn done(partition: i32, offset: i64, accepted: bool) -> Done {
        Done {
            topic: "tweets".into(),
            partition,
            offset,
            accepted,
        }
    }

    /// A sink whose producer cannot reach a broker (nothing listens at the address): what it
    /// enqueues stays in flight until purged.
    fn unconnected_sink(metrics: &Arc<Metrics>) -> Sink {
        Sink::new(
            rdkafka::ClientConfig::new()
                .set("bootstrap.servers", "127.0.0.1:1")
                .create_with_context(DeliveryTally::new("tester", metrics.clone(), false))
                .expect("producer"),
        )
    }

    /// Puts a message whose outputs come later in the work; it finishes when its sender says
    /// whether the producer accepted them.
    fn later(work: &mut Uncommitted, partition: i32, offset: i64) -> oneshot::Sender<bool> {
        let (tx, rx) = oneshot::channel();
        work.later.push(Box::pin(async move {
            done(partition, offset, rx.await.expect("sent"))
        }));
        tx
    }

    /// Records the later messages that have finished.
    fn finish_ready(work: &mut Uncommitted) -> bool {
        while let Some(Some(d)) = work.later.next().now_or_never() {
            if !work.finish(d) {
                return false;
            }
        }
        true
    }

    fn committable(work: &Uncommitted, partition: i32) -> Option<i64> {
        work.next_offsets
            .get(&(Arc::from("tweets"), partition))
            .copied()
    }

    #[test]
    fn a_message_handed_over_moves_its_partition_past_it() {
        let mut work = Uncommitted::default();
        assert!(!work.dirty);
        assert!(work.finish(done(0, 10, true)));
        assert_eq!(committable(&work, 0), Some(11));
        assert!(work.dirty);
        assert!(work.finish(done(1, 3, true)));
        assert_eq!(
            (committable(&work, 0), committable(&work, 1)),
            (Some(11), Some(4)),
            "partitions are tracked apart"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn finished_messages_count_as_committed_inputs_at_the_commit_only() {
        let metrics = Metrics::new();
        let sink = unconnected_sink(&metrics);
        let inputs = || Metrics::count(&metrics.inputs_committed, &["tester", "tweets"]);
        let mut work = Uncommitted::default();
        assert!(work.finish(done(0, 10, true)));
        assert!(work.finish(done(1, 3, true)));
        assert!(!work.finish(done(1, 4, false)), "refused: not counted");
        assert_eq!(inputs(), 0, "nothing before the commit");
        work.committed("tester", &sink, &metrics);
        assert_eq!(inputs(), 2);
        work.committed("tester", &sink, &metrics);
        assert_eq!(inputs(), 2, "a message counts at one commit");
        assert!(work.finish(done(0, 11, true)));
        // A restart abandons the work: what it finished is redone, and counted when committed.
        work = Uncommitted::default();
        work.committed("tester", &sink, &metrics);
        assert_eq!(inputs(), 2);
    }

    #[test]
    fn a_message_with_a_refused_output_is_not_committable() {
        let mut work = Uncommitted::default();
        assert!(work.finish(done(0, 10, true)));
        work.dirty = false;
        assert!(!work.finish(done(0, 11, false)));
        assert_eq!(committable(&work, 0), Some(11), "offset 11 is redone");
        assert!(!work.dirty);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn later_work_finishing_out_of_order_is_all_waited_for_before_a_commit() {
        let metrics = Metrics::new();
        let sink = unconnected_sink(&metrics);
        let mut work = Uncommitted::default();
        let first = later(&mut work, 0, 10);
        let second = later(&mut work, 0, 11);
        let third = later(&mut work, 0, 12);
        // The last message's outputs come first: the partition's offset moves past it, but no
        // commit can be made while the others are in flight.
        third.send(true).expect("in flight");
        assert!(finish_ready(&mut work));
        assert_eq!(committable(&work, 0), Some(13));
        assert!(
            work.drain(&sink).now_or_never().is_none(),
            "10 and 11 are still in flight"
        );
        first.send(true).expect("in flight");
        second.send(true).expect("in flight");
        assert!(work.drain(&sink).now_or_never().expect("all finished"));
        assert_eq!(committable(&work, 0), Some(13), "never moved back");
        assert!(work.later.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn draining_stops_at_a_refused_output() {
        let metrics = Metrics::new();
        let sink = unconnected_sink(&metrics);
        let mut work = Uncommitted::default();
        later(&mut work, 0, 10).send(false).expect("in flight");
        assert!(!work.drain(&sink).now_or_never().expect("all finished"));
        assert_eq!(committable(&work, 0), None, "nothing past the refusal");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn draining_waits_for_every_delivery_and_fails_on_a_lost_one() {
        let metrics = Metrics::new();
        let sink = unconnected_sink(&metrics);
        let mut work = Uncommitted::default();
        assert!(sink.enqueue(Outgoing::unkeyed("out", b"x".to_vec())).await);
        work.finish(done(0, 10, true));
        assert_eq!(sink.in_flight(), 1);
        assert!(
            work.drain(&sink).now_or_never().is_none(),
            "its output is not delivered yet"
        );
        // Lost: purged from the producer's queue, its report says it was not delivered.
        sink.producer()
            .purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
        let drained = tokio::time::timeout(Duration::from_secs(10), work.drain(&sink))
            .await
            .expect("the report comes");
        assert!(!drained, "a lost output fails the commit");
        assert_eq!(sink.failures(), 1);
        assert_eq!(
            Metrics::count(&metrics.produce_failures, &["tester", "out"]),
            1
        );
        // Abandoned, the work's failures are forgotten.
        sink.abandoned();
        assert_eq!((sink.failures(), sink.failures_total()), (0, 1));
    }
}
