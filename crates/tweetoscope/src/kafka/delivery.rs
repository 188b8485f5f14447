//! The stages' producers and their delivery reports, tallied rather than awaited one by one.
//!
//! A [`StageProducer`]'s polling thread hands every delivery report to the producer's
//! [`DeliveryTally`], which counts it (the `produced` and `committed` counters, resolved once per
//! topic), remembers failures and how many records are still in flight, and wakes whoever waits
//! for them to settle. A record costs no future, channel or allocation of its own: the processing
//! loop enqueues a message's outputs and goes on, and before each commit it waits once for every
//! record in flight (see [`super::Sink::settled`]).
//!
//! Reports are grouped in epochs, one per transaction: a commit or an abort begins the next, and a
//! report of an earlier epoch (a record of an aborted transaction whose report comes late) counts
//! as produced but neither as committed nor as a failure of the transaction now open.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use tokio::sync::Notify;

use crate::events::{InternalEvent as _, RecordNotProduced};
use crate::metrics::Metrics;

/// A producer of a stage: its delivery reports go to its [`DeliveryTally`].
pub type StageProducer = ThreadedProducer<DeliveryTally>;

/// The counters of one topic a producer writes, resolved on its first record.
struct TopicTally {
    topic: String,
    produced: prometheus::IntCounter,
    committed: prometheus::IntCounter,
    /// Records delivered in the open epoch, counted as committed when it commits.
    uncommitted: u64,
}

/// What the tally's lock guards: the epoch, and the counts that move with it.
#[derive(Default)]
struct Epoch {
    number: usize,
    topics: Vec<TopicTally>,
}

/// The delivery reports of one producer, tallied (the producer's context; see the module).
pub struct DeliveryTally {
    stage: &'static str,
    metrics: Arc<Metrics>,
    /// Whether a delivery counts as committed only when its transaction commits.
    transactional: bool,
    epoch: Mutex<Epoch>,
    /// The open epoch's number, readable without the lock (written under it).
    current: AtomicUsize,
    /// Records refused or not delivered in the open epoch.
    failures: AtomicU64,
    /// Records refused or not delivered since the producer was made.
    failures_total: AtomicU64,
    /// Records enqueued whose report has not been tallied yet.
    in_flight: AtomicU64,
    /// Woken when `in_flight` falls to zero.
    settled: Notify,
}

impl std::fmt::Debug for DeliveryTally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryTally")
            .field("stage", &self.stage)
            .field("in_flight", &self.in_flight.load(Ordering::SeqCst))
            .field("failures", &self.failures.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl ClientContext for DeliveryTally {}

impl ProducerContext for DeliveryTally {
    /// The epoch the record was enqueued in.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, epoch: usize) {
        match result {
            Ok(message) => self.tally(message.topic(), epoch, None),
            Err((error, message)) => self.tally(message.topic(), epoch, Some(error)),
        }
    }
}

impl DeliveryTally {
    /// The tally of a producer of `stage`, counting deliveries as committed at once or, with
    /// `transactional`, when their transaction commits.
    pub fn new(stage: &'static str, metrics: Arc<Metrics>, transactional: bool) -> Self {
        Self {
            stage,
            metrics,
            transactional,
            epoch: Mutex::default(),
            current: AtomicUsize::new(0),
            failures: AtomicU64::new(0),
            failures_total: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            settled: Notify::new(),
        }
    }

    /// Tallies the report of a record of `topic` enqueued in `epoch`: delivered, or not with
    /// `error`.
    fn tally(&self, topic: &str, epoch: usize, error: Option<&KafkaError>) {
        match error {
            None => {
                let mut open = self.lock();
                let same_epoch = open.number == epoch;
                let counters = self.topic(&mut open, topic);
                counters.produced.inc();
                if !self.transactional {
                    counters.committed.inc();
                } else if same_epoch {
                    counters.uncommitted += 1;
                }
            }
            Some(error) => {
                if self.lock().number == epoch {
                    self.failures.fetch_add(1, Ordering::SeqCst);
                }
                self.failures_total.fetch_add(1, Ordering::SeqCst);
                RecordNotProduced {
                    stage: self.stage,
                    topic,
                    error: Some(error),
                    refused: false,
                }
                .emit(&self.metrics);
            }
        }
        self.one_less_in_flight();
    }

    /// One record fewer in flight; wakes [`DeliveryTally::settled`] when none is left.
    fn one_less_in_flight(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.settled.notify_waiters();
        }
    }

    /// The stage whose producer this is.
    pub fn stage(&self) -> &'static str {
        self.stage
    }

    /// The metrics it counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether deliveries count as committed only when their transaction commits.
    pub fn transactional(&self) -> bool {
        self.transactional
    }

    fn lock(&self) -> MutexGuard<'_, Epoch> {
        self.epoch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counters of `name`, resolved on its first record.
    fn topic<'a>(&self, open: &'a mut Epoch, name: &str) -> &'a mut TopicTally {
        let index = match open.topics.iter().position(|t| t.topic == name) {
            Some(index) => index,
            None => {
                let labels = [self.stage, name];
                // The failure series of the same labels starts at zero.
                self.metrics.produce_failures.with_label_values(&labels);
                open.topics.push(TopicTally {
                    topic: name.to_owned(),
                    produced: self.metrics.produced.with_label_values(&labels),
                    committed: self.metrics.committed.with_label_values(&labels),
                    uncommitted: 0,
                });
                open.topics.len() - 1
            }
        };
        &mut open.topics[index]
    }

    /// The epoch a record enqueued now belongs to.
    pub(super) fn current_epoch(&self) -> usize {
        self.current.load(Ordering::SeqCst)
    }

    /// A record was handed to the producer: its report is awaited.
    pub(super) fn enqueued(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// A record counted by [`DeliveryTally::enqueued`] did not reach the producer after all.
    pub(super) fn withdrawn(&self) {
        self.one_less_in_flight();
    }

    /// A record was refused by the producer (its report will never come).
    pub(super) fn refused(&self) {
        self.failures.fetch_add(1, Ordering::SeqCst);
        self.failures_total.fetch_add(1, Ordering::SeqCst);
    }

    /// Records refused or not delivered in the open epoch.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }

    /// Records refused or not delivered since the producer was made.
    pub fn failures_total(&self) -> u64 {
        self.failures_total.load(Ordering::SeqCst)
    }

    /// Records enqueued whose delivery report has not been tallied yet.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until every record enqueued so far has its report tallied.
    pub async fn settled(&self) {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            // Registered before the check: a report tallied in between still wakes this wait.
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Ends the open epoch and begins the next; with `committed`, what was delivered in it
    /// counts as committed (its transaction committed), else it is forgotten (aborted).
    pub(super) fn next_epoch(&self, committed: bool) {
        let mut open = self.lock();
        open.number = open.number.wrapping_add(1);
        self.current.store(open.number, Ordering::SeqCst);
        self.failures.store(0, Ordering::SeqCst);
        for topic in &mut open.topics {
            let count = std::mem::take(&mut topic.uncommitted);
            if committed {
                topic.committed.inc_by(count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(counter: &prometheus::IntCounterVec, topic: &str) -> u64 {
        Metrics::count(counter, &["tester", topic])
    }

    #[tokio::test]
    async fn reports_count_in_their_epoch_and_late_ones_of_an_abort_never_count() {
        let metrics = Metrics::new();
        let tally = DeliveryTally::new("tester", metrics.clone(), true);
        for _ in 0..4 {
            tally.enqueued();
        }
        assert_eq!(tally.in_flight(), 4);
        let epoch = tally.current_epoch();
        tally.tally("a", epoch, None);
        tally.tally("a", epoch, None);
        assert_eq!(count(&metrics.produced, "a"), 2);
        assert_eq!(count(&metrics.committed, "a"), 0, "not before the commit");
        assert_eq!(
            count(&metrics.produce_failures, "a"),
            0,
            "the failure series starts at zero"
        );
        tally.next_epoch(true);
        assert_eq!(count(&metrics.committed, "a"), 2);

        // The next transaction loses a record and is aborted; then its last report comes late.
        let epoch = tally.current_epoch();
        tally.tally("a", epoch, Some(&KafkaError::Canceled));
        assert_eq!((tally.failures(), tally.failures_total()), (1, 1));
        assert_eq!(count(&metrics.produce_failures, "a"), 1);
        tally.next_epoch(false);
        assert_eq!(tally.failures(), 0, "an abort forgets the failures");
        tally.tally("a", epoch, None);
        tally.next_epoch(true);
        assert_eq!(count(&metrics.produced, "a"), 3, "delivered all the same");
        assert_eq!(
            count(&metrics.committed, "a"),
            2,
            "a record of the aborted transaction never counts as committed"
        );
        assert_eq!(tally.in_flight(), 0);
        tally.settled().await;
    }

    #[tokio::test]
    async fn without_transactions_a_delivery_counts_as_committed_and_settling_waits_for_all() {
        let metrics = Metrics::new();
        let tally = Arc::new(DeliveryTally::new("tester", metrics.clone(), false));
        tally.enqueued();
        tally.enqueued();
        tally.tally("b", tally.current_epoch(), None);
        assert_eq!(count(&metrics.committed, "b"), 1);
        let waiting = tokio::spawn({
            let tally = tally.clone();
            async move { tally.settled().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one record is still in flight");
        tally.withdrawn();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("settled once nothing is in flight")
            .expect("joined");
    }
}
