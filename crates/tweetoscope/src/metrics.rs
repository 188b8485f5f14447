//! Prometheus metrics of every stage (served by the admin server, `admin_server.rs`).
//!
//! One [`Metrics`] per process; stages label their series with `stage`, so `tweetoscope run` (all
//! stages in one process) and one-stage-per-process deployments export the same names.

use std::sync::Arc;

use crate::liveness::Liveness;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the stages export.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Messages read, by stage and topic.
    pub consumed: IntCounterVec,
    /// Messages written, by stage and topic.
    pub produced: IntCounterVec,
    /// Malformed messages sent to the dead-letter topic, by stage and topic.
    pub malformed: IntCounterVec,
    /// Messages whose delivery to Kafka failed, by stage and topic.
    pub produce_failures: IntCounterVec,
    /// Records made visible to read-committed readers, by stage and topic: their transaction
    /// committed (without transactions: delivered). Unlike `produced`, never counts the outputs
    /// of an aborted transaction, which are redone.
    pub committed: IntCounterVec,
    /// Input messages whose handling a commit completed (their offsets committed, with their
    /// outputs), by stage and topic. A message read again after a restart counts again.
    pub inputs_committed: IntCounterVec,
    /// Time from receiving a message to having its outputs delivered, by stage.
    pub processing_seconds: HistogramVec,
    /// Messages behind the end of each assigned partition, by stage, topic and partition.
    pub consumer_lag: IntGaugeVec,
    /// Last stable offset of each assigned partition, by stage, topic and partition: read_committed
    /// readers stop there; it stands still behind a transaction that never ends.
    pub consumer_stable_offset: IntGaugeVec,
    /// Messages after the last stable offset of each assigned partition (written in transactions
    /// not ended yet), by stage, topic and partition.
    pub consumer_unstable_messages: IntGaugeVec,
    /// Tweets replayed by the generator, by source.
    pub generator_tweets: IntCounterVec,
    /// What the collector did with each tweet, by outcome.
    pub collector_tweets: IntCounterVec,
    /// Cascades held in memory by the collector.
    pub open_cascades: IntGauge,
    /// Sources whose end-of-stream marker the collector has handled.
    pub sources_ended: IntCounter,
    /// Duration of one Hawkes fit.
    pub fit_seconds: Histogram,
    /// Fits that failed, by reason.
    pub fit_failures: IntCounterVec,
    /// Relative errors of the predictions, by window.
    pub are: HistogramVec,
    /// Predictions (alerts) made, by window.
    pub predictions: IntCounterVec,
    /// Join entries the predictor dropped because its pending table was full.
    pub join_evictions: IntCounter,
    /// Pending half-joined (cascade, window) entries held by the predictor.
    pub join_pending: IntGauge,
    /// Version of the newest random forest, by window (learner: trained; predictor: in use).
    pub model_version: IntGaugeVec,
    /// Samples in the learner's training window, by window.
    pub training_samples: IntGaugeVec,
    /// How the newest model of each window serves its growth model: 1 blended with the
    /// forest-corrected Hawkes size, 0 alone (no series without a growth model).
    pub growth_blended: IntGaugeVec,
    /// Training runs of the learner, by window.
    pub trainings: IntCounterVec,
    /// Trainings the learner skipped because a newer one of the same window was waiting.
    pub trainings_superseded: IntCounterVec,
    /// Trainings that published no model, by reason.
    pub training_failures: IntCounterVec,
    /// Alerts posted to Alertmanager.
    pub alerts_sent: IntCounter,
    /// Alerts that Alertmanager did not accept.
    pub alert_failures: IntCounter,
    /// Alerts written to the dead-letter topic after Alertmanager refused them for too long.
    pub alerts_dead_lettered: IntCounter,
    /// Alerts the dashboard is done with: below the threshold, accepted, or dead-lettered.
    pub alerts_handled: IntCounter,
    /// Pushes to the Pushgateway.
    pub pushes: IntCounter,
    /// Pushes to the Pushgateway that failed.
    pub push_failures: IntCounter,
    /// Log records shown by the logger, by level.
    pub logs_shown: IntCounterVec,
    /// Log records dropped because the shipping queue was full.
    pub logs_dropped: IntCounter,
    /// Always 1, labelled with the version.
    pub build_info: IntGaugeVec,
    /// Wall time from a cascade's window closing (series emitted) to its prediction.
    pub prediction_latency: Histogram,
    /// Seconds since each running processing loop last made progress, by stage (the longest if
    /// a stage has several; set from [`Metrics::liveness`] at each rendering).
    pub loop_stalled_seconds: IntGaugeVec,
    /// Progress of the processing loops (the liveness probe).
    pub liveness: Liveness,
    /// The same latencies, the first million kept exactly for `bench`'s quantiles.
    pub latencies: tweetoscope_stats::FirstValues,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Arc<Self> {
        let r = Registry::new();
        // CPU seconds, resident memory, open file descriptors and threads of this process.
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("process metrics register once");
        let latency_buckets = prometheus::exponential_buckets(0.000_1, 2.5, 14).expect("buckets");
        let processing_seconds = HistogramVec::new(
            HistogramOpts::new(
                "tweetoscope_processing_seconds",
                "Time from receiving a message to having its outputs handed to the producer",
            )
            .buckets(latency_buckets.clone()),
            &["stage"],
        )
        .expect("valid metric");
        r.register(Box::new(processing_seconds.clone()))
            .expect("unique metric");
        let fit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "tweetoscope_estimator_fit_seconds",
                "Duration of one Hawkes fit",
            )
            .buckets(prometheus::exponential_buckets(0.000_01, 2.5, 14).expect("buckets")),
        )
        .expect("valid metric");
        r.register(Box::new(fit_seconds.clone()))
            .expect("unique metric");
        let are = HistogramVec::new(
            HistogramOpts::new(
                "tweetoscope_predictor_are",
                "Absolute relative error of the final-size predictions",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0,
            ]),
            &["window"],
        )
        .expect("valid metric");
        r.register(Box::new(are.clone())).expect("unique metric");
        let prediction_latency = Histogram::with_opts(
            HistogramOpts::new(
                "tweetoscope_prediction_latency_seconds",
                "Wall time from a cascade's window closing to its prediction",
            )
            .buckets(latency_buckets.clone()),
        )
        .expect("valid metric");
        r.register(Box::new(prediction_latency.clone()))
            .expect("unique metric");
        let m = Metrics {
            loop_stalled_seconds: gauge_vec(
                &r,
                "tweetoscope_processing_loop_stalled_seconds",
                "Seconds since the processing loop last made progress",
                &["stage"],
            ),
            liveness: Liveness::default(),
            prediction_latency,
            latencies: tweetoscope_stats::FirstValues::new(1_000_000),
            consumed: counter_vec(
                &r,
                "tweetoscope_messages_consumed_total",
                "Messages read",
                &["stage", "topic"],
            ),
            produced: counter_vec(
                &r,
                "tweetoscope_messages_produced_total",
                "Messages written",
                &["stage", "topic"],
            ),
            malformed: counter_vec(
                &r,
                "tweetoscope_malformed_messages_total",
                "Malformed messages sent to the dead-letter topic",
                &["stage", "topic"],
            ),
            inputs_committed: counter_vec(
                &r,
                "tweetoscope_messages_processed_total",
                "Messages read whose offsets were committed with their outputs",
                &["stage", "topic"],
            ),
            committed: counter_vec(
                &r,
                "tweetoscope_messages_committed_total",
                "Messages written whose transaction committed (without transactions: delivered)",
                &["stage", "topic"],
            ),
            produce_failures: counter_vec(
                &r,
                "tweetoscope_produce_failures_total",
                "Messages whose delivery to Kafka failed",
                &["stage", "topic"],
            ),
            processing_seconds,
            consumer_lag: gauge_vec(
                &r,
                "tweetoscope_consumer_lag_messages",
                "Messages behind the end of each assigned partition",
                &["stage", "topic", "partition"],
            ),
            consumer_stable_offset: gauge_vec(
                &r,
                "tweetoscope_consumer_stable_offset",
                "Last stable offset of each assigned partition: read_committed readers stop there",
                &["stage", "topic", "partition"],
            ),
            consumer_unstable_messages: gauge_vec(
                &r,
                "tweetoscope_consumer_unstable_messages",
                "Messages after the last stable offset of each assigned partition (in open transactions)",
                &["stage", "topic", "partition"],
            ),
            generator_tweets: counter_vec(
                &r,
                "tweetoscope_generator_tweets_total",
                "Tweets replayed by the generator",
                &["source"],
            ),
            collector_tweets: counter_vec(
                &r,
                "tweetoscope_collector_tweets_total",
                "Tweets handled by the collector, by outcome",
                &["outcome"],
            ),
            open_cascades: gauge(
                &r,
                "tweetoscope_collector_open_cascades",
                "Cascades held in memory by the collector",
            ),
            sources_ended: counter(
                &r,
                "tweetoscope_collector_sources_ended_total",
                "Sources whose end-of-stream marker the collector handled",
            ),
            fit_seconds,
            fit_failures: counter_vec(
                &r,
                "tweetoscope_estimator_fit_failures_total",
                "Hawkes fits that failed",
                &["reason"],
            ),
            are,
            predictions: counter_vec(
                &r,
                "tweetoscope_predictor_predictions_total",
                "Predictions made",
                &["window"],
            ),
            join_evictions: counter(
                &r,
                "tweetoscope_predictor_join_evictions_total",
                "Half-joined entries dropped because the pending table was full",
            ),
            join_pending: gauge(
                &r,
                "tweetoscope_predictor_join_pending",
                "Half-joined (cascade, window) entries waiting for their other half",
            ),
            model_version: gauge_vec(
                &r,
                "tweetoscope_model_version",
                "Version of the newest random forest",
                &["stage", "window"],
            ),
            training_samples: gauge_vec(
                &r,
                "tweetoscope_learner_training_samples",
                "Samples in the learner's training window",
                &["window"],
            ),
            growth_blended: gauge_vec(
                &r,
                "tweetoscope_learner_growth_blended",
                "1 when the newest model blends its growth model with the forest-corrected Hawkes \
                 size, 0 when it serves the growth model alone",
                &["window"],
            ),
            trainings: counter_vec(
                &r,
                "tweetoscope_learner_trainings_total",
                "Training runs",
                &["window"],
            ),
            trainings_superseded: counter_vec(
                &r,
                "tweetoscope_learner_trainings_superseded_total",
                "Trainings skipped because a newer training of the same window was waiting",
                &["window"],
            ),
            training_failures: counter_vec(
                &r,
                "tweetoscope_learner_training_failures_total",
                "Trainings that published no model (training_error, panic, too_large)",
                &["reason"],
            ),
            alerts_sent: counter(
                &r,
                "tweetoscope_dashboard_alerts_sent_total",
                "Alerts posted to Alertmanager",
            ),
            alert_failures: counter(
                &r,
                "tweetoscope_dashboard_alert_failures_total",
                "Posts of an alert that Alertmanager did not accept (each attempt)",
            ),
            alerts_dead_lettered: counter(
                &r,
                "tweetoscope_dashboard_alerts_dead_lettered_total",
                "Alerts given up after --alert-retry-for and written to the alerts dead-letter topic",
            ),
            alerts_handled: counter(
                &r,
                "tweetoscope_dashboard_alerts_handled_total",
                "Alerts the dashboard is done with: not popular, accepted by Alertmanager, or dead-lettered",
            ),
            pushes: counter(
                &r,
                "tweetoscope_monitor_pushes_total",
                "Pushes to the Pushgateway",
            ),
            push_failures: counter(
                &r,
                "tweetoscope_monitor_push_failures_total",
                "Failed pushes to the Pushgateway",
            ),
            logs_shown: counter_vec(
                &r,
                "tweetoscope_logger_records_total",
                "Log records shown",
                &["level"],
            ),
            logs_dropped: counter(
                &r,
                "tweetoscope_log_records_dropped_total",
                "Log records dropped because the shipping queue was full",
            ),
            build_info: gauge_vec(&r, "tweetoscope_build_info", "Always 1", &["version"]),
            registry: r,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Arc::new(m)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.loop_stalled_seconds.reset();
        for stall in self.liveness.stalls() {
            let gauge = self.loop_stalled_seconds.with_label_values(&[stall.stage]);
            gauge.set(gauge.get().max(stall.for_.as_secs() as i64));
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("text format is UTF-8")
    }

    /// Current value of a counter (used for progress reports).
    pub fn count(counter: &IntCounterVec, labels: &[&str]) -> u64 {
        counter.with_label_values(labels).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_metrics_are_exported() {
        let text = Metrics::new().render();
        for name in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
        ] {
            assert!(text.contains(&format!("\n{name} ")), "{name} missing");
        }
    }
}
