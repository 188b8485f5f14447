//! The consumer context of the processing loops: consumer lag from librdkafka's statistics,
//! rebalances counted (the loop's generation) and timed, consumer-group state logged.

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
    /// When the partitions were last revoked, until the next assignment (empty or not).
    revoked_at: std::sync::Mutex<Option<Instant>>,
    /// librdkafka's consumer-group state and join state, as last reported in its statistics.
    group_state: std::sync::Mutex<(String, String)>,
    /// When librdkafka last reported that it could not read the committed offsets of the
    /// assignment, until the next assignment.
    offsets_unread_at: std::sync::Mutex<Option<Instant>>,
}

impl StageContext {
    /// A context for the consumer of `stage`, before any rebalance.
    pub(super) fn new(stage: &'static str, metrics: Arc<Metrics>) -> Self {
        StageContext {
            stage,
            metrics,
            generation: Arc::new(AtomicU64::new(0)),
            revoked_at: std::sync::Mutex::new(None),
            group_state: std::sync::Mutex::new(Default::default()),
            offsets_unread_at: std::sync::Mutex::new(None),
        }
    }

    /// How many rebalances the consumer has seen: the processing loop abandons its uncommitted
    /// work when this changes.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// How long the consumer has been waiting for an assignment since its partitions were
    /// revoked (None: it has one, possibly empty).
    pub(super) fn unassigned_for(&self) -> Option<Duration> {
        self.revoked_at
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
        let mut revoked_at = self.revoked_at.lock().expect("rebalance clock");
        match rebalance {
            Rebalance::Revoke(_) => {
                revoked_at.get_or_insert_with(Instant::now);
            }
            Rebalance::Assign(_) => {
                *revoked_at = None;
                *self.offsets_unread_at.lock().expect("offset fetch clock") = None;
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
    fn a_new_context_has_seen_no_rebalance_and_waits_for_no_assignment() {
        let context = StageContext::new("collector", Metrics::new());
        assert_eq!(context.generation(), 0);
        assert_eq!(context.unassigned_for(), None);
    }
}
