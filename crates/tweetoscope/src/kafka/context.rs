//! The consumer context of the processing loops: consumer lag from librdkafka's statistics,
//! rebalances counted (the loop's generation) and timed, consumer-group state logged.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::statistics::{Partition, Statistics};
use rdkafka::ClientContext;

use crate::metrics::Metrics;

/// Consumer context that turns librdkafka statistics into the consumer-lag metric and counts
/// rebalances.
#[derive(Debug)]
pub struct StageContext {
    stage: &'static str,
    metrics: Arc<Metrics>,
    generation: Arc<AtomicU64>,
    /// Since when the consumer has had no assignment: since it was created, then since its
    /// partitions were last revoked, until the next assignment (empty or not).
    unassigned_since: std::sync::Mutex<Option<Instant>>,
    /// librdkafka's consumer-group state and join state, as last reported in its statistics.
    group_state: std::sync::Mutex<(String, String)>,
    /// When librdkafka last reported that it could not read the committed offsets of the
    /// assignment, until the next assignment.
    offsets_unread_at: std::sync::Mutex<Option<Instant>>,
    /// The assigned partitions librdkafka does not fetch, timed from its statistics.
    unfetched: std::sync::Mutex<UnfetchedClock>,
}

impl StageContext {
    /// A context for the consumer of `stage`, before any rebalance.
    pub(super) fn new(stage: &'static str, metrics: Arc<Metrics>) -> Self {
        StageContext {
            stage,
            metrics,
            generation: Arc::new(AtomicU64::new(0)),
            unassigned_since: std::sync::Mutex::new(Some(Instant::now())),
            group_state: std::sync::Mutex::new(Default::default()),
            offsets_unread_at: std::sync::Mutex::new(None),
            unfetched: std::sync::Mutex::new(UnfetchedClock::default()),
        }
    }

    /// How many rebalances the consumer has seen: the processing loop abandons its uncommitted
    /// work when this changes.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// How long the consumer has been waiting for an assignment, since it was created or since
    /// its partitions were revoked (None: it has one, possibly empty). A new consumer waits too:
    /// seen after a frozen broker, a rebuilt stage whose new consumer stayed in librdkafka's
    /// `wait-metadata` join state and never joined its group.
    pub(super) fn unassigned_for(&self) -> Option<Duration> {
        self.unassigned_since
            .lock()
            .expect("rebalance clock")
            .map(|at| at.elapsed())
    }

    /// How long ago librdkafka reported that it could not read the committed offsets of the
    /// current assignment (None: it has read them, or a new assignment came since). librdkafka
    /// 2.12 does not query them again after such an error (a failed offset fetch leaves the
    /// partitions on its "queried" list, which blocks any new query), so those partitions are
    /// never fetched until the next assignment: seen after a frozen broker, a stage that never
    /// read its input again.
    pub(super) fn offsets_unread_for(&self) -> Option<Duration> {
        self.offsets_unread_at
            .lock()
            .expect("offset fetch clock")
            .map(|at| at.elapsed())
    }

    /// How long some partition of the assignment has gone unfetched while the consumer is a
    /// steady member of its group, and which (None: every assigned partition is fetched, or the
    /// group is not steady). The statistics-based form of [`Self::offsets_unread_for`], for the
    /// same librdkafka state when it raises no error (seen after a broker restart: consumers
    /// steady in their group with four partitions, none of them ever fetched again).
    pub(super) fn unfetched_for(&self) -> Option<(Duration, String)> {
        self.unfetched
            .lock()
            .expect("fetch clock")
            .unfetched_for(Instant::now())
    }
}

/// librdkafka's fetch state of a partition whose fetcher runs.
const FETCH_ACTIVE: &str = "active";

/// How long an assigned partition of a steady member may go unfetched before it is logged.
const UNFETCHED_LOGGED_AFTER: Duration = Duration::from_secs(10);

/// Times the assigned partitions that librdkafka's statistics show without a running fetcher
/// while the consumer is a steady member of its group. A partition's fetcher starts once its
/// committed offset is read, which takes milliseconds after an assignment; one that has not
/// started long after means the assignment is stuck in librdkafka.
#[derive(Debug, Default)]
struct UnfetchedClock {
    /// The current assignment, as `(topic, partition)`.
    assigned: BTreeSet<(String, i32)>,
    /// Since when some assigned partition has been unfetched, with the partitions and their
    /// fetch states then.
    since: Option<(Instant, String)>,
    /// Whether the current episode has been logged.
    logged: bool,
}

impl UnfetchedClock {
    /// A new assignment (empty after a revocation): the clock starts over.
    fn assign(&mut self, partitions: BTreeSet<(String, i32)>) {
        self.assigned = partitions;
        self.since = None;
        self.logged = false;
    }

    /// Takes one statistics report: whether the member is steady, and the fetch state of each
    /// partition the client knows. Returns the episode's description once it has lasted
    /// [`UNFETCHED_LOGGED_AFTER`], to be logged once.
    fn observe<'a>(
        &mut self,
        steady: bool,
        states: impl IntoIterator<Item = (&'a str, i32, &'a str)>,
        now: Instant,
    ) -> Option<String> {
        let unfetched: Vec<String> = if steady {
            states
                .into_iter()
                .filter(|(topic, partition, state)| {
                    *state != FETCH_ACTIVE
                        && self.assigned.contains(&((*topic).to_owned(), *partition))
                })
                .map(|(topic, partition, state)| format!("{topic}/{partition} {state}"))
                .collect()
        } else {
            Vec::new()
        };
        if unfetched.is_empty() {
            self.since = None;
            self.logged = false;
            return None;
        }
        let described = unfetched.join(", ");
        let started = self.since.as_ref().map_or(now, |(at, _)| *at);
        self.since = Some((started, described.clone()));
        let due = !self.logged && now.saturating_duration_since(started) >= UNFETCHED_LOGGED_AFTER;
        self.logged |= due;
        due.then_some(described)
    }

    fn unfetched_for(&self, now: Instant) -> Option<(Duration, String)> {
        self.since
            .as_ref()
            .map(|(at, described)| (now.saturating_duration_since(*at), described.clone()))
    }
}

/// Whether a librdkafka error reason is its report of a failed committed-offset fetch for the
/// assignment ("Failed to fetch committed offset(s) …").
fn is_failed_offset_fetch(reason: &str) -> bool {
    reason.starts_with("Failed to fetch committed offset")
}

impl ClientContext for StageContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::error!(stage = self.stage, "librdkafka: {error}: {reason}");
        if is_failed_offset_fetch(reason) {
            self.offsets_unread_at
                .lock()
                .expect("offset fetch clock")
                .get_or_insert_with(Instant::now);
        }
    }

    fn stats(&self, statistics: Statistics) {
        let steady = statistics
            .cgrp
            .as_ref()
            .is_some_and(|g| g.state == "up" && g.join_state == "steady");
        let states = statistics.topics.iter().flat_map(|(topic, t)| {
            t.partitions
                .iter()
                .filter(|(id, _)| **id >= 0)
                .map(move |(id, p)| (topic.as_str(), *id, p.fetch_state.as_str()))
        });
        let episode =
            self.unfetched
                .lock()
                .expect("fetch clock")
                .observe(steady, states, Instant::now());
        if let Some(partitions) = episode {
            tracing::warn!(
                stage = self.stage,
                %partitions,
                "assigned partitions not fetched for {} s although the consumer is steady in its group",
                UNFETCHED_LOGGED_AFTER.as_secs()
            );
        }
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
                if *id < 0 {
                    continue;
                }
                let labels = [self.stage, topic.as_str(), &id.to_string()];
                if let Some(lag) = partition_lag(p) {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&labels)
                        .set(lag);
                }
                if let Some((stable, unstable)) = stable_offset(p) {
                    self.metrics
                        .consumer_stable_offset
                        .with_label_values(&labels)
                        .set(stable);
                    self.metrics
                        .consumer_unstable_messages
                        .with_label_values(&labels)
                        .set(unstable);
                }
            }
        }
    }
}

/// The consumer lag of a partition from its statistics, if known. With transactions, offsets are
/// committed by the producer and librdkafka's `consumer_lag` stays -1: fall back to the stored
/// offset or the position.
fn partition_lag(p: &Partition) -> Option<i64> {
    [
        p.consumer_lag,
        p.consumer_lag_stored,
        if p.app_offset >= 0 && p.ls_offset >= 0 {
            (p.ls_offset - p.app_offset).max(0)
        } else {
            -1
        },
    ]
    .into_iter()
    .find(|&l| l >= 0)
}

/// The last stable offset of a partition and the messages after it (written in transactions not
/// ended yet), if both ends are known. A transaction its producer never ends (seen after a broker
/// bounce: see the runbook's TweetoscopeTransactionHanging) holds the stable offset still while the
/// messages after it pile up.
fn stable_offset(p: &Partition) -> Option<(i64, i64)> {
    (p.ls_offset >= 0 && p.hi_offset >= 0)
        .then(|| (p.ls_offset, (p.hi_offset - p.ls_offset).max(0)))
}

impl ConsumerContext for StageContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalanced(rebalance);
    }
}

impl StageContext {
    /// Records a rebalance: the generation, the revocation clock, the offset-fetch clock.
    fn rebalanced(&self, rebalance: &Rebalance<'_>) {
        tracing::info!(stage = self.stage, ?rebalance, "partitions rebalanced");
        let mut unassigned_since = self.unassigned_since.lock().expect("rebalance clock");
        let mut unfetched = self.unfetched.lock().expect("fetch clock");
        match rebalance {
            Rebalance::Revoke(_) => {
                unassigned_since.get_or_insert_with(Instant::now);
                unfetched.assign(BTreeSet::new());
            }
            Rebalance::Assign(partitions) => {
                *unassigned_since = None;
                *self.offsets_unread_at.lock().expect("offset fetch clock") = None;
                unfetched.assign(
                    partitions
                        .elements()
                        .iter()
                        .map(|e| (e.topic().to_owned(), e.partition()))
                        .collect(),
                );
            }
            Rebalance::Error(_) => {}
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_offset_fetch_is_timed_until_the_next_assignment() {
        let context = StageContext::new("learner", Metrics::new());
        let error =
            || rdkafka::error::KafkaError::Global(rdkafka::types::RDKafkaErrorCode::NotCoordinator);
        context.error(error(), "Broker: Not coordinator");
        assert_eq!(context.offsets_unread_for(), None, "another error");
        // librdkafka 2.12's three wordings of it.
        for reason in [
            "Failed to fetch committed offsets for 0 partition(s) in group \"g\": Broker: Not coordinator",
            "Failed to fetch committed offsets for partitions in group \"g\": Local: Timed out",
            "Failed to fetch committed offset for group \"g\" topic t [0]: Broker: Not coordinator",
        ] {
            assert!(is_failed_offset_fetch(reason), "{reason}");
        }
        context.error(
            error(),
            "Failed to fetch committed offsets for 0 partition(s) in group \"g\": Broker: Not coordinator",
        );
        let first = context.offsets_unread_for().expect("timed");
        std::thread::sleep(Duration::from_millis(20));
        context.error(
            error(),
            "Failed to fetch committed offsets for partitions in group \"g\": x",
        );
        assert!(
            context.offsets_unread_for().expect("timed") >= first + Duration::from_millis(20),
            "timed from the first report"
        );
        let generation = context.generation();
        context.rebalanced(&Rebalance::Revoke(&rdkafka::TopicPartitionList::new()));
        assert!(
            context.offsets_unread_for().is_some(),
            "a revocation does not query them"
        );
        context.rebalanced(&Rebalance::Assign(&rdkafka::TopicPartitionList::new()));
        assert_eq!(
            context.offsets_unread_for(),
            None,
            "a new assignment queries them again"
        );
        assert_eq!(context.generation(), generation + 2);
    }

    #[test]
    fn assigned_partitions_without_a_fetcher_are_timed_while_the_member_is_steady() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut clock = UnfetchedClock::default();
        let assigned: BTreeSet<(String, i32)> =
            [("samples".to_owned(), 0), ("samples".to_owned(), 1)].into();
        clock.assign(assigned.clone());
        let states = |p1: &'static str| {
            [
                ("samples", 0, "active"),
                ("samples", 1, p1),
                ("other", 0, "none"),
            ]
        };
        // Every assigned partition fetched; an unassigned one without a fetcher does not count.
        assert_eq!(clock.observe(true, states("active"), at(0)), None);
        assert_eq!(clock.unfetched_for(at(0)), None);
        // An assigned partition without a fetcher, timed from its first report, logged once.
        assert_eq!(clock.observe(true, states("offset-query"), at(1)), None);
        assert_eq!(clock.observe(true, states("none"), at(5)), None);
        assert_eq!(
            clock.unfetched_for(at(9)),
            Some((Duration::from_secs(8), "samples/1 none".into()))
        );
        assert_eq!(
            clock.observe(true, states("none"), at(11)),
            Some("samples/1 none".into())
        );
        assert_eq!(
            clock.observe(true, states("none"), at(12)),
            None,
            "logged once"
        );
        // Not steady (rejoining, or the broker away): not timed.
        assert_eq!(clock.observe(false, states("none"), at(13)), None);
        assert_eq!(clock.unfetched_for(at(13)), None);
        // Fetched again, or a new assignment: the clock starts over.
        clock.observe(true, states("none"), at(14));
        assert!(clock.unfetched_for(at(20)).is_some());
        clock.observe(true, states("active"), at(21));
        assert_eq!(clock.unfetched_for(at(21)), None);
        clock.observe(true, states("none"), at(22));
        clock.assign(assigned);
        assert_eq!(clock.unfetched_for(at(40)), None);
    }

    /// Partition statistics as librdkafka reports them when nothing is known (-1 everywhere).
    fn unknown() -> Partition {
        Partition {
            consumer_lag: -1,
            consumer_lag_stored: -1,
            app_offset: -1,
            ls_offset: -1,
            hi_offset: -1,
            ..Partition::default()
        }
    }

    /// Nothing known but the position and the last stable offset.
    fn at(app_offset: i64, ls_offset: i64) -> Partition {
        Partition {
            app_offset,
            ls_offset,
            ..unknown()
        }
    }

    #[test]
    fn the_lag_falls_back_from_librdkafkas_to_the_stored_one_to_the_position() {
        assert_eq!(partition_lag(&unknown()), None);
        let position = at(70, 100);
        assert_eq!(partition_lag(&position), Some(30));
        let stored = Partition {
            consumer_lag_stored: 12,
            ..position.clone()
        };
        assert_eq!(partition_lag(&stored), Some(12));
        let reported = Partition {
            consumer_lag: 4,
            ..stored
        };
        assert_eq!(partition_lag(&reported), Some(4));
    }

    #[test]
    fn a_position_past_the_stable_offset_is_no_lag_and_half_a_position_is_unknown() {
        assert_eq!(partition_lag(&at(105, 100)), Some(0));
        assert_eq!(partition_lag(&at(-1, 100)), None);
        assert_eq!(partition_lag(&at(70, -1)), None);
    }

    #[test]
    fn the_stable_offset_and_the_messages_after_it_need_both_ends() {
        let open = Partition {
            hi_offset: 10_280,
            ..at(4_100, 4_177)
        };
        assert_eq!(stable_offset(&open), Some((4_177, 6_103)));
        assert_eq!(stable_offset(&at(70, 100)), None, "no high watermark");
        let caught_up = Partition {
            hi_offset: 100,
            ..at(70, 100)
        };
        assert_eq!(stable_offset(&caught_up), Some((100, 0)));
    }

    #[test]
    fn a_new_context_has_seen_no_rebalance_and_waits_for_its_first_assignment() {
        let context = StageContext::new("collector", Metrics::new());
        assert_eq!(context.generation(), 0);
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            context.unassigned_for().expect("waiting since created") >= Duration::from_millis(20)
        );
        context.rebalanced(&Rebalance::Assign(&rdkafka::TopicPartitionList::new()));
        assert_eq!(context.unassigned_for(), None, "an empty assignment is one");
        context.rebalanced(&Rebalance::Revoke(&rdkafka::TopicPartitionList::new()));
        assert!(context.unassigned_for().is_some());
    }
}
