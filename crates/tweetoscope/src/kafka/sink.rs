//! What the stages write: records, the sink that produces them, dead letters and headers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use tweetoscope_messages::{topics, Malformed};

use super::delivery::{DeliveryTally, StageProducer};
use crate::events::{InternalEvent as _, RecordNotProduced};

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

/// Counter increments that take effect when the open transaction commits, and never if it
/// aborts: for a figure that must agree with what readers see, such as the sources whose end the
/// collector has committed. Without transactions (the default value), at once.
#[derive(Clone, Default)]
pub struct AtCommit(Option<Arc<Mutex<Vec<prometheus::IntCounter>>>>);

impl std::fmt::Debug for AtCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "AtCommit(deferred)"
        } else {
            "AtCommit(immediate)"
        })
    }
}

impl AtCommit {
    /// Increments that wait for the commit.
    fn deferred() -> Self {
        Self(Some(Arc::default()))
    }

    /// Increments `counter` at the next commit (at once without transactions).
    pub fn inc(&self, counter: &prometheus::IntCounter) {
        match &self.0 {
            Some(pending) => pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(counter.clone()),
            None => counter.inc(),
        }
    }

    fn apply(&self) {
        if let Some(pending) = &self.0 {
            let pending = std::mem::take(&mut *pending.lock().unwrap_or_else(|e| e.into_inner()));
            for counter in pending {
                counter.inc();
            }
        }
    }

    fn forget(&self) {
        if let Some(pending) = &self.0 {
            pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}

/// Writes records, retrying while the local queue is full. Deliveries are not awaited one by one:
/// the producer's [`DeliveryTally`] counts them (`produced`; `committed` at once without
/// transactions, else at [`Sink::committed`]) and remembers failures, and [`Sink::settled`] waits
/// for every record in flight. Clones share the producer and its tally.
#[derive(Clone)]
pub struct Sink {
    producer: StageProducer,
    at_commit: AtCommit,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("tally", self.tally())
            .finish_non_exhaustive()
    }
}

impl Sink {
    /// A sink writing through `producer`, in transactions if the producer was made
    /// transactional ([`super::KafkaSettings::stage_producer`] with transactions on).
    pub fn new(producer: StageProducer) -> Self {
        let at_commit = if producer.context().transactional() {
            AtCommit::deferred()
        } else {
            AtCommit::default()
        };
        Self {
            producer,
            at_commit,
        }
    }

    fn tally(&self) -> &DeliveryTally {
        self.producer.context()
    }

    /// The counter increments that move with this sink's commits.
    pub fn at_commit(&self) -> AtCommit {
        self.at_commit.clone()
    }

    /// The open transaction committed: what this sink (and its clones) delivered since the last
    /// commit counts as committed, then the [`AtCommit`] increments are made (so a figure counted
    /// at commit never runs ahead of the records committed with it). Call it once every record
    /// of the transaction is [settled](Sink::settled) (a commit waits for them anyway).
    pub fn committed(&self) {
        self.tally().next_epoch(true);
        self.at_commit.apply();
    }

    /// The open transaction was aborted (or, without transactions, the uncommitted work
    /// abandoned): what was delivered since the last commit never counts as committed, and its
    /// failures are forgotten, as are the reports of its records that come later.
    pub fn abandoned(&self) {
        self.tally().next_epoch(false);
        self.at_commit.forget();
    }

    /// The producer.
    pub fn producer(&self) -> &StageProducer {
        &self.producer
    }

    /// Records enqueued whose delivery report has not come yet.
    pub fn in_flight(&self) -> u64 {
        self.tally().in_flight()
    }

    /// Records refused by the producer or not delivered since the last commit or abort: a
    /// transaction (or, without transactions, a commit of input offsets) that lacks one of its
    /// records must not commit.
    pub fn failures(&self) -> u64 {
        self.tally().failures()
    }

    /// Records refused or not delivered since the producer was made.
    pub fn failures_total(&self) -> u64 {
        self.tally().failures_total()
    }

    /// Waits until every record enqueued so far (by this sink and its clones) has its delivery
    /// report.
    pub async fn settled(&self) {
        self.tally().settled().await;
    }

    /// Hands `record` to the producer, waiting while its queue is full; false if the producer
    /// refused it (counted and logged, and a failure of the open transaction). Its delivery is
    /// tallied when reported.
    pub async fn enqueue(&self, record: Outgoing) -> bool {
        let headers = (!record.headers.is_empty()).then(|| {
            record
                .headers
                .iter()
                .fold(OwnedHeaders::new(), |h, (k, v)| {
                    h.insert(Header {
                        key: k,
                        value: Some(v.as_bytes()),
                    })
                })
        });
        self.send(
            &record.topic,
            record.key.as_deref(),
            record.partition,
            record.payload.as_deref(),
            headers.as_ref(),
        )
        .await
    }

    /// Like [`Sink::enqueue`] for a keyed record without headers whose parts are borrowed: the
    /// producer copies them, so a stage that writes many (the generator) makes no record of its
    /// own per message.
    pub async fn enqueue_keyed(&self, topic: &str, key: &str, payload: &[u8]) -> bool {
        self.send(topic, Some(key), None, Some(payload), None).await
    }

    /// What [`Sink::enqueue`] and [`Sink::enqueue_keyed`] do.
    async fn send(
        &self,
        topic: &str,
        key: Option<&str>,
        partition: Option<i32>,
        payload: Option<&[u8]>,
        headers: Option<&OwnedHeaders>,
    ) -> bool {
        let tally = self.tally();
        loop {
            let mut r =
                BaseRecord::<str, [u8], usize>::with_opaque_to(topic, tally.current_epoch());
            if let Some(h) = headers {
                r = r.headers(h.clone());
            }
            if let Some(p) = payload {
                r = r.payload(p);
            }
            if let Some(k) = key {
                r = r.key(k);
            }
            if let Some(p) = partition {
                r = r.partition(p);
            }
            // Counted before the send: its report may be tallied before `send` returns.
            tally.enqueued();
            match self.producer.send(r) {
                Ok(()) => return true,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tally.withdrawn();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => {
                    tally.withdrawn();
                    tally.refused();
                    RecordNotProduced {
                        stage: tally.stage(),
                        topic,
                        error: Some(&e),
                        refused: true,
                    }
                    .emit(tally.metrics());
                    return false;
                }
            }
        }
    }

    /// Hands every record to the producer in order ([`Sink::enqueue`]); false if one was
    /// refused.
    pub async fn enqueue_all(&self, records: Vec<Outgoing>) -> bool {
        let mut accepted = true;
        for r in records {
            accepted &= self.enqueue(r).await;
        }
        accepted
    }

    /// Enqueues every record in order, then waits until everything in flight is reported; true
    /// if no record was refused or lost since the last commit or abort.
    pub async fn send_all(&self, records: Vec<Outgoing>) -> bool {
        self.enqueue_all(records).await;
        self.settled().await;
        self.failures() == 0
    }
}

/// Longest wait of a transactional call (send offsets, commit, abort): a little more than the
/// transaction timeout (10 s), after which the coordinator aborts the transaction anyway.
/// librdkafka recommends -1, documented as "the remaining transaction time", but for commit and
/// abort -1 means no limit at all: with the broker frozen, a commit was seen blocking for as long
/// as the broker did, and the loop with it. A call that times out leaves the transaction in
/// progress, so the next abort fails too and the loop returns an error: its supervisor rebuilds
/// the stage with new clients.
pub(super) const TRANSACTION_CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// How long past [`TRANSACTION_CALL_TIMEOUT`] a transactional call may block before it counts as
/// stuck. librdkafka does not always keep its own timeout: `send_offsets_to_transaction` waits
/// without limit for a group coordinator it cannot reach (librdkafka issue 5456, open in 2.14; seen
/// here as a collector blocked for more than 270 s after the broker had been frozen for 30 s).
const STUCK_CALL_GRACE: Duration = Duration::from_secs(15);

/// A transactional call of a producer that did not return, even well past its own timeout. Its
/// clients cannot be trusted any more: the processing loop ends with this error, so that its
/// supervisor rebuilds the stage with new clients. Their transactional id is a new one: the old
/// producer's open transaction is aborted by its coordinator after the transaction timeout, and
/// offsets it still sends carry a consumer-group generation that the group has left behind.
#[derive(Debug)]
pub struct StuckTransactionalCall {
    /// The call, e.g. `send_offsets_to_transaction`.
    pub call: &'static str,
    /// How long it was waited for.
    pub waited: Duration,
}

impl std::fmt::Display for StuckTransactionalCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the Kafka producer's {} did not return within {} s, past its own timeout: its clients \
             are given up (the blocked call is left on its thread)",
            self.call,
            self.waited.as_secs_f64()
        )
    }
}

impl std::error::Error for StuckTransactionalCall {}

/// Runs the transactional `call` of `producer` on a thread of its own and waits for it at most
/// [`TRANSACTION_CALL_TIMEOUT`] + [`STUCK_CALL_GRACE`]: a call that does not return by then is
/// left running, and the error is a [`StuckTransactionalCall`]. Blocking.
pub(super) fn bounded_transactional_call<T: Send + 'static>(
    name: &'static str,
    producer: &StageProducer,
    call: impl FnOnce(&StageProducer) -> Result<T, KafkaError> + Send + 'static,
) -> anyhow::Result<T> {
    bounded_call(
        name,
        producer,
        TRANSACTION_CALL_TIMEOUT + STUCK_CALL_GRACE,
        call,
    )
}

/// [`bounded_transactional_call`] with the wait given.
fn bounded_call<T: Send + 'static>(
    name: &'static str,
    producer: &StageProducer,
    deadline: Duration,
    call: impl FnOnce(&StageProducer) -> Result<T, KafkaError> + Send + 'static,
) -> anyhow::Result<T> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    let producer = producer.clone();
    std::thread::Builder::new()
        .name("kafka-txn-call".to_owned())
        .spawn(move || {
            // The receiver is gone if the call was given up: nobody to tell.
            let _ = sender.send(call(&producer));
        })
        .map_err(|e| anyhow::anyhow!("cannot start a thread for {name}: {e}"))?;
    match receiver.recv_timeout(deadline) {
        Ok(result) => Ok(result?),
        Err(_) => {
            let stuck = StuckTransactionalCall {
                call: name,
                waited: deadline,
            };
            tracing::error!(error = %stuck, "transactional call stuck");
            Err(stuck.into())
        }
    }
}

/// Commits `producer`'s open transaction, waiting at most [`TRANSACTION_CALL_TIMEOUT`] (see
/// [`bounded_transactional_call`]), and with `begin_next` begins the next one. Blocking.
pub(super) fn commit_transaction(producer: &StageProducer, begin_next: bool) -> anyhow::Result<()> {
    bounded_transactional_call("commit_transaction", producer, move |p| {
        wait_for_deliveries(p, TRANSACTION_CALL_TIMEOUT);
        p.commit_transaction(TRANSACTION_CALL_TIMEOUT)?;
        if begin_next {
            p.begin_transaction()?;
        }
        Ok(())
    })
}

/// How often [`wait_for_deliveries`] looks at the producer's queue.
const DELIVERY_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// Waits (blocking, at most `timeout`) until `producer` has no message left in flight: every
/// delivery report served by its polling thread. rust-rdkafka's `commit_transaction` flushes
/// first, and its flush sleeps in a 100 ms poll of the producer's queue whenever a message is
/// still in flight, a queue whose events the producer's own polling thread takes: so
/// every commit with messages in flight cost 100 ms, whatever their number (measured on the
/// embedded broker: 20,000-message transactions went from about 185,000 to 1.9 M messages/s once
/// the commit found nothing left to flush). After this wait the flush returns at once.
fn wait_for_deliveries(producer: &StageProducer, timeout: Duration) {
    let started = std::time::Instant::now();
    while producer.in_flight_count() > 0 && started.elapsed() < timeout {
        std::thread::sleep(DELIVERY_POLL_INTERVAL);
    }
}

/// Aborts `producer`'s open transaction, waiting at most [`TRANSACTION_CALL_TIMEOUT`] (see
/// [`bounded_transactional_call`]), and with `begin_next` begins the next one. Blocking.
pub(super) fn abort_transaction(producer: &StageProducer, begin_next: bool) -> anyhow::Result<()> {
    bounded_transactional_call("abort_transaction", producer, move |p| {
        p.abort_transaction(TRANSACTION_CALL_TIMEOUT)?;
        if begin_next {
            p.begin_transaction()?;
        }
        Ok(())
    })
}

impl Sink {
    /// Begins a transaction; the sink's producer must be transactional
    /// ([`super::KafkaSettings::stage_producer`] with transactions on).
    pub fn begin_transaction(&self) -> anyhow::Result<()> {
        self.producer.begin_transaction()?;
        Ok(())
    }

    /// Enqueues `record`, waits for every record in flight, commits the open transaction with
    /// them (waiting at most as long as the processing loop's transactional calls), and with
    /// `begin_next` begins the next transaction. For a producer's own progress records, such as
    /// the generator's: what the transaction holds becomes visible together with them. Fails
    /// without committing if a record was refused or not delivered since the last commit or abort
    /// (it would be missing from the transaction); the transaction is then left to be aborted.
    pub async fn commit_transaction_with(
        &self,
        record: Outgoing,
        begin_next: bool,
    ) -> anyhow::Result<()> {
        self.enqueue(record).await;
        self.settled().await;
        // A refused record never reached the producer, so its transaction would commit without
        // it: fail instead, leaving the transaction to be aborted and its work redone.
        let failures = self.failures();
        let committed = if failures > 0 {
            Err(anyhow::anyhow!(
                "{failures} record(s) of this transaction refused by the producer or not \
                 delivered: not committing it"
            ))
        } else {
            tokio::task::block_in_place(|| commit_transaction(&self.producer, begin_next))
        };
        if let Err(e) = committed {
            self.abandoned();
            return Err(e);
        }
        self.committed();
        Ok(())
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
pub fn header_text<M: Message>(message: &M, key: &str) -> Option<String> {
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
pub fn dead_letter<M: Message>(stage: &str, message: &M, reason: &Malformed) -> Outgoing {
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

#[cfg(test)]
mod tests {
    use rdkafka::message::{OwnedMessage, Timestamp};

    use super::*;
    use crate::metrics::Metrics;

    /// A message as read from `tweets`/2 at offset 41.
    fn message(
        key: Option<&str>,
        payload: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> OwnedMessage {
        let mut owned = OwnedHeaders::new();
        for (k, v) in headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        OwnedMessage::new(
            payload.map(<[u8]>::to_vec),
            key.map(|k| k.as_bytes().to_vec()),
            "tweets".into(),
            Timestamp::NotAvailable,
            2,
            41,
            (!headers.is_empty()).then_some(owned),
        )
    }

    fn unconnected_producer() -> StageProducer {
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create_with_context(DeliveryTally::new("tester", Metrics::new(), false))
            .expect("producer")
    }

    #[test]
    fn a_transactional_call_that_returns_in_time_gives_its_result() {
        let producer = unconnected_producer();
        let value = bounded_call("quick", &producer, Duration::from_secs(30), |_| Ok(42))
            .expect("returned in time");
        assert_eq!(value, 42);
        let err = bounded_call("failing", &producer, Duration::from_secs(30), |_| {
            Err::<(), _>(KafkaError::Canceled)
        })
        .unwrap_err();
        assert!(
            err.downcast_ref::<StuckTransactionalCall>().is_none(),
            "a failure is not a stuck call: {err:#}"
        );
    }

    #[test]
    fn a_transactional_call_that_does_not_return_is_given_up_as_stuck() {
        let producer = unconnected_producer();
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let err = bounded_call(
            "send_offsets_to_transaction",
            &producer,
            Duration::from_millis(50),
            move |_| {
                // Blocks until the test lets it go, long after the deadline.
                let _ = blocked.recv();
                Ok(())
            },
        )
        .unwrap_err();
        let stuck = err
            .downcast_ref::<StuckTransactionalCall>()
            .unwrap_or_else(|| panic!("not a stuck call: {err:#}"));
        assert_eq!(stuck.call, "send_offsets_to_transaction");
        assert!(
            err.to_string()
                .contains("send_offsets_to_transaction did not return within 0.05 s"),
            "{err}"
        );
        release
            .send(())
            .expect("the call's thread is still waiting");
    }

    fn committed(metrics: &Metrics, topic: &str) -> u64 {
        Metrics::count(&metrics.committed, &["tester", topic])
    }

    /// A transactional sink of stage `tester` on the embedded broker.
    async fn transactional_sink(
        broker: &super::super::EmbeddedBroker,
        metrics: &Arc<Metrics>,
    ) -> Sink {
        let settings = super::super::KafkaSettings {
            brokers: broker.bootstrap().to_owned(),
            group_prefix: "sink-test".into(),
            session_timeout_ms: 6_000,
            transactions: true,
            commit_interval: Duration::from_millis(100),
            replication: 1,
            client_options: Vec::new(),
            fetch_wait_max_ms: None,
        };
        let producer = settings
            .stage_producer("tester", metrics)
            .await
            .expect("producer");
        Sink::new(producer)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deliveries_count_as_committed_once_their_transaction_commits_and_never_if_aborted() {
        let topics = ["a".to_owned(), "b".to_owned()];
        let broker = super::super::EmbeddedBroker::start(&topics, &[], 1).expect("broker");
        let metrics = Metrics::new();
        let sink = transactional_sink(&broker, &metrics).await;
        sink.begin_transaction().expect("begin");
        let ended = prometheus::IntCounter::new("ended", "test").expect("counter");
        sink.at_commit().inc(&ended);
        let records = vec![
            Outgoing::keyed("a", "k", b"1".to_vec()),
            Outgoing::keyed("a", "k", b"2".to_vec()),
            Outgoing::keyed("b", "k", b"3".to_vec()),
        ];
        // A clone (as the processing loop hands to each message's work) shares the tally.
        assert!(sink.clone().send_all(records.clone()).await, "delivered");
        assert_eq!(Metrics::count(&metrics.produced, &["tester", "a"]), 2);
        assert_eq!((committed(&metrics, "a"), committed(&metrics, "b")), (0, 0));
        assert_eq!(ended.get(), 0, "counted at commit only");

        tokio::task::block_in_place(|| {
            sink.producer()
                .abort_transaction(TRANSACTION_CALL_TIMEOUT)
                .expect("abort")
        });
        sink.abandoned();
        sink.begin_transaction().expect("begin");
        assert!(sink.send_all(records[..2].to_vec()).await, "delivered");
        sink.at_commit().inc(&ended);
        tokio::task::block_in_place(|| commit_transaction(sink.producer(), false)).expect("commit");
        sink.committed();
        assert_eq!(
            (committed(&metrics, "a"), committed(&metrics, "b")),
            (2, 0),
            "only the committed transaction's records count"
        );
        assert_eq!(
            ended.get(),
            1,
            "the aborted transaction's increment is forgotten"
        );
        assert_eq!(Metrics::count(&metrics.produced, &["tester", "a"]), 4);
        sink.committed();
        assert_eq!(committed(&metrics, "a"), 2, "a record counts once");
        assert_eq!(ended.get(), 1, "an increment is made once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_with_a_refused_record_is_not_committed() {
        let topics = ["a".to_owned(), "progress".to_owned()];
        let broker = super::super::EmbeddedBroker::start(&topics, &[], 1).expect("broker");
        let metrics = Metrics::new();
        let sink = transactional_sink(&broker, &metrics).await;
        // The producer knows the topic's partitions once it has delivered to it.
        sink.begin_transaction().expect("begin");
        assert!(
            sink.send_all(vec![Outgoing::keyed("a", "k", b"0".to_vec())])
                .await
        );
        sink.commit_transaction_with(Outgoing::keyed("progress", "p", b"1".to_vec()), true)
            .await
            .expect("a transaction without refusal commits");
        assert_eq!(committed(&metrics, "a"), 1);

        assert!(sink.enqueue(Outgoing::keyed("a", "k", b"1".to_vec())).await);
        let refused = sink
            .enqueue(Outgoing::keyed("a", "k", b"2".to_vec()).on_partition(7))
            .await;
        assert!(!refused, "no partition 7: the producer refuses the record");
        assert_eq!(
            Metrics::count(&metrics.produce_failures, &["tester", "a"]),
            1
        );
        assert_eq!(sink.failures(), 1);
        sink.settled().await;
        assert_eq!(
            Metrics::count(&metrics.produced, &["tester", "a"]),
            2,
            "the other record is delivered, uncommitted"
        );
        let error = sink
            .commit_transaction_with(Outgoing::keyed("progress", "p", b"2".to_vec()), true)
            .await
            .expect_err("the transaction lacks a record");
        assert!(format!("{error:#}").contains("refused"), "{error:#}");
        assert_eq!(
            committed(&metrics, "a"),
            1,
            "nothing of it counts as committed"
        );

        // Aborted and redone without the refusal, the next transaction commits.
        tokio::task::block_in_place(|| {
            sink.producer()
                .abort_transaction(TRANSACTION_CALL_TIMEOUT)
                .expect("abort")
        });
        sink.begin_transaction().expect("begin");
        assert!(
            sink.send_all(vec![Outgoing::keyed("a", "k", b"1".to_vec())])
                .await
        );
        sink.commit_transaction_with(Outgoing::keyed("progress", "p", b"2".to_vec()), false)
            .await
            .expect("commits");
        assert_eq!(committed(&metrics, "a"), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_transactions_a_delivery_counts_as_committed() {
        let topics = ["a".to_owned()];
        let broker = super::super::EmbeddedBroker::start(&topics, &[], 1).expect("broker");
        let metrics = Metrics::new();
        let sink = Sink::new(
            rdkafka::ClientConfig::new()
                .set("bootstrap.servers", broker.bootstrap())
                .create_with_context(DeliveryTally::new("tester", metrics.clone(), false))
                .expect("producer"),
        );
        assert!(
            sink.send_all(vec![Outgoing::unkeyed("a", b"x".to_vec())])
                .await
        );
        assert_eq!(committed(&metrics, "a"), 1);
    }

    #[test]
    fn the_builders_set_key_payload_partition_and_headers() {
        let keyed = Outgoing::keyed("series", "source-1", b"{}".to_vec());
        assert_eq!(keyed.topic, "series");
        assert_eq!(keyed.key.as_deref(), Some("source-1"));
        assert_eq!(keyed.payload.as_deref(), Some(&b"{}"[..]));
        assert_eq!((keyed.partition, keyed.headers.len()), (None, 0));

        let tombstone = Outgoing::tombstone("models", "600");
        assert_eq!(tombstone.key.as_deref(), Some("600"));
        assert_eq!(tombstone.payload, None, "a tombstone has no payload");

        let unkeyed = Outgoing::unkeyed("alerts", b"x".to_vec())
            .with_header("a", "1")
            .with_header("b", String::from("2"))
            .on_partition(3);
        assert_eq!(unkeyed.key, None);
        assert_eq!(unkeyed.payload.as_deref(), Some(&b"x"[..]));
        assert_eq!(unkeyed.partition, Some(3));
        assert_eq!(
            unkeyed.headers,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())],
            "headers are kept in the order they were added"
        );
    }

    #[test]
    fn a_dead_letter_keeps_key_and_payload_and_names_reason_stage_and_origin() {
        let m = message(Some("source-7"), Some(b"not json"), &[]);
        let letter = dead_letter("collector", &m, &Malformed::new("expected a tweet"));
        assert_eq!(letter.topic, topics::dead_letter("tweets"));
        assert_eq!(letter.key.as_deref(), Some("source-7"));
        assert_eq!(letter.payload.as_deref(), Some(&b"not json"[..]));
        assert_eq!(letter.partition, None, "the key decides the partition");
        assert_eq!(
            letter.headers,
            vec![
                ("tweetoscope-error".into(), "expected a tweet".into()),
                ("tweetoscope-stage".into(), "collector".into()),
                ("tweetoscope-origin".into(), "tweets/2/41".into()),
            ]
        );
    }

    #[test]
    fn a_dead_letter_of_a_tombstone_has_an_empty_payload_and_no_key() {
        let m = message(None, None, &[]);
        let letter = dead_letter("logger", &m, &Malformed::new("empty"));
        assert_eq!(letter.key, None);
        assert_eq!(letter.payload.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn header_text_finds_a_header_by_key() {
        let m = message(
            None,
            Some(b"{}"),
            &[("other", "x"), (WINDOW_CLOSED_HEADER, "1700000000000")],
        );
        assert_eq!(
            header_text(&m, WINDOW_CLOSED_HEADER).as_deref(),
            Some("1700000000000")
        );
        assert_eq!(header_text(&m, "missing"), None);
        assert_eq!(header_text(&message(None, None, &[]), "other"), None);
    }
}
