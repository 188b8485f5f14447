//! Internal events: one type per thing worth telling an operator. Its [`InternalEvent::emit`]
//! writes the log line and moves the metric together, in this one place, so a call site is one
//! line and the log and the metric never disagree. Labelled series that count failures are
//! created at zero by the events' `register` functions when a stage starts, so that their first
//! increment shows in `rate()` and `increase()`.

use tweetoscope_messages::Malformed;

use crate::metrics::Metrics;

/// Something that happened inside a stage, told to both the logs and the metrics.
pub trait InternalEvent {
    /// Writes the log line and updates the metric.
    fn emit(self, metrics: &Metrics);
}

/// A message no stage can use: it goes to the dead-letter topic.
#[derive(Debug)]
pub struct MessageMalformed<'a> {
    /// The stage that read it.
    pub stage: &'a str,
    /// Where it was read.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Why it is unusable.
    pub reason: &'a Malformed,
}

impl MessageMalformed<'_> {
    /// Creates the series of `stage` reading `topic` at zero.
    pub fn register(metrics: &Metrics, stage: &str, topic: &str) {
        metrics.malformed.with_label_values(&[stage, topic]);
    }
}

impl InternalEvent for MessageMalformed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics
            .malformed
            .with_label_values(&[self.stage, self.topic])
            .inc();
        tracing::warn!(
            stage = self.stage,
            topic = %self.topic,
            partition = self.partition,
            offset = self.offset,
            reason = %self.reason.reason,
            "malformed message sent to the dead-letter topic"
        );
    }
}

/// A record Kafka did not take: refused when enqueued, or its delivery failed.
#[derive(Debug)]
pub struct RecordNotProduced<'a> {
    /// The stage that wrote it.
    pub stage: &'a str,
    /// Its topic.
    pub topic: &'a str,
    /// What went wrong (none: the delivery was cancelled).
    pub error: Option<&'a rdkafka::error::KafkaError>,
    /// Whether the producer refused it at once (else its delivery failed).
    pub refused: bool,
}

impl InternalEvent for RecordNotProduced<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics
            .produce_failures
            .with_label_values(&[self.stage, self.topic])
            .inc();
        let error = self.error.map(ToString::to_string);
        let error = error.as_deref().unwrap_or("the delivery was cancelled");
        if self.refused {
            tracing::error!(stage = self.stage, topic = %self.topic, error, "cannot produce");
        } else {
            tracing::error!(stage = self.stage, topic = %self.topic, error, "delivery failed");
        }
    }
}

/// Why a fit gave no parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FitFailure {
    /// The optimiser failed or the cascade cannot be fitted.
    Error,
    /// The fit panicked on its worker thread.
    Panic,
}

impl FitFailure {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            FitFailure::Error => "fit_error",
            FitFailure::Panic => "panic",
        }
    }
}

/// A partial cascade the estimator could not fit.
#[derive(Debug)]
pub struct FitFailed<'a> {
    /// The cascade and window, when known.
    pub cascade: Option<(&'a str, u64)>,
    /// What failed.
    pub failure: FitFailure,
    /// The error.
    pub error: String,
}

impl FitFailed<'_> {
    /// Creates every failure series at zero.
    pub fn register(metrics: &Metrics) {
        for failure in [FitFailure::Error, FitFailure::Panic] {
            metrics.fit_failures.with_label_values(&[failure.label()]);
        }
    }
}

impl InternalEvent for FitFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics
            .fit_failures
            .with_label_values(&[self.failure.label()])
            .inc();
        match (self.failure, self.cascade) {
            (FitFailure::Error, Some((cid, window))) => {
                tracing::warn!(cid, window, error = %self.error, "fit failed")
            }
            (FitFailure::Error, None) => tracing::warn!(error = %self.error, "fit failed"),
            (FitFailure::Panic, _) => tracing::error!(error = %self.error, "fit worker panicked"),
        }
    }
}

/// A model on the models topic the predictor cannot use; it keeps the model it has.
#[derive(Debug)]
pub struct ModelRejected<'a> {
    /// The stage that read it.
    pub stage: &'a str,
    /// The models topic.
    pub topic: &'a str,
    /// Its offset.
    pub offset: i64,
    /// Why.
    pub reason: &'a str,
}

impl InternalEvent for ModelRejected<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics
            .malformed
            .with_label_values(&[self.stage, self.topic])
            .inc();
        tracing::warn!(
            reason = self.reason,
            offset = self.offset,
            "unusable model ignored"
        );
    }
}

/// A model trained and about to be published on the models topic.
#[derive(Debug)]
pub struct ModelTrained {
    /// Its window.
    pub window: u64,
    /// Its version.
    pub version: u64,
    /// Samples it was trained on.
    pub samples: usize,
    /// Size of its message.
    pub bytes: usize,
    /// Whether its growth model is served blended with the forest-corrected Hawkes size (`None`:
    /// no growth model, the ω forest alone).
    pub growth_blended: Option<bool>,
}

impl InternalEvent for ModelTrained {
    fn emit(self, metrics: &Metrics) {
        let window = self.window.to_string();
        metrics.trainings.with_label_values(&[&window]).inc();
        // The window's superseded series starts at zero, so increase() sees its first step.
        metrics.trainings_superseded.with_label_values(&[&window]);
        metrics
            .model_version
            .with_label_values(&["learner", &window])
            .set(self.version as i64);
        if let Some(blended) = self.growth_blended {
            metrics
                .growth_blended
                .with_label_values(&[&window])
                .set(i64::from(blended));
        }
        let served = match self.growth_blended {
            Some(true) => "growth model blended with the forest-corrected Hawkes size",
            Some(false) => "growth model alone",
            None => "forest-corrected Hawkes size alone",
        };
        tracing::info!(
            window = self.window,
            version = self.version,
            samples = self.samples,
            bytes = self.bytes,
            served,
            "model trained"
        );
    }
}

/// A training the learner skipped: by its turn, a newer training of the same window (on the same
/// samples and more) was already waiting.
#[derive(Debug)]
pub struct TrainingSuperseded {
    /// Its window.
    pub window: u64,
    /// The version it would have published.
    pub version: u64,
}

impl InternalEvent for TrainingSuperseded {
    fn emit(self, metrics: &Metrics) {
        metrics
            .trainings_superseded
            .with_label_values(&[&self.window.to_string()])
            .inc();
        tracing::debug!(
            window = self.window,
            version = self.version,
            "training superseded by a newer one"
        );
    }
}

/// A model the predictor now predicts with.
#[derive(Debug)]
pub struct ModelInUse {
    /// Its window.
    pub window: u64,
    /// Its version.
    pub version: u64,
    /// Samples it was trained on.
    pub samples: u64,
}

impl InternalEvent for ModelInUse {
    fn emit(self, metrics: &Metrics) {
        metrics
            .model_version
            .with_label_values(&["predictor", &self.window.to_string()])
            .set(self.version as i64);
        tracing::info!(
            window = self.window,
            version = self.version,
            samples = self.samples,
            "new model in use"
        );
    }
}

/// Why a training gave no model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainingFailure {
    /// The forest could not be trained on the samples.
    Error,
    /// The training panicked on its worker thread.
    Panic,
    /// The model is too large for a Kafka message.
    TooLarge,
}

impl TrainingFailure {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            TrainingFailure::Error => "training_error",
            TrainingFailure::Panic => "panic",
            TrainingFailure::TooLarge => "too_large",
        }
    }
}

/// A training that published no model.
#[derive(Debug)]
pub struct TrainingFailed {
    /// The window, when known.
    pub window: Option<u64>,
    /// What failed.
    pub failure: TrainingFailure,
    /// The error.
    pub error: String,
}

impl TrainingFailed {
    /// Creates every failure series at zero.
    pub fn register(metrics: &Metrics) {
        for failure in [
            TrainingFailure::Error,
            TrainingFailure::Panic,
            TrainingFailure::TooLarge,
        ] {
            metrics
                .training_failures
                .with_label_values(&[failure.label()]);
        }
    }
}

impl InternalEvent for TrainingFailed {
    fn emit(self, metrics: &Metrics) {
        metrics
            .training_failures
            .with_label_values(&[self.failure.label()])
            .inc();
        match self.failure {
            TrainingFailure::Error => {
                tracing::warn!(window = self.window, error = %self.error, "training failed")
            }
            TrainingFailure::Panic => {
                tracing::error!(error = %self.error, "training worker panicked")
            }
            TrainingFailure::TooLarge => tracing::error!(
                window = self.window,
                error = %self.error,
                "model too large for a Kafka message; not published (lower --trees)"
            ),
        }
    }
}

/// An alert Alertmanager accepted.
#[derive(Debug)]
pub struct AlertDelivered;

impl InternalEvent for AlertDelivered {
    fn emit(self, metrics: &Metrics) {
        metrics.alerts_sent.inc();
    }
}

/// An alert Alertmanager did not accept.
#[derive(Debug)]
pub struct AlertNotDelivered<'a> {
    /// The cascade alerted on.
    pub cid: &'a str,
    /// What went wrong.
    pub error: String,
}

impl InternalEvent for AlertNotDelivered<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.alert_failures.inc();
        tracing::warn!(cid = self.cid, error = %self.error, "alert not delivered to Alertmanager; retrying");
    }
}

/// An alert Alertmanager did not accept for `--alert-retry-for`: it goes to the dead-letter
/// topic instead, so that it is kept and its offset can be committed.
#[derive(Debug)]
pub struct AlertDeadLettered<'a> {
    /// The cascade alerted on.
    pub cid: &'a str,
    /// Posts tried.
    pub attempts: u32,
    /// The last error.
    pub error: String,
}

impl InternalEvent for AlertDeadLettered<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.alerts_dead_lettered.inc();
        tracing::error!(
            cid = self.cid,
            attempts = self.attempts,
            error = %self.error,
            "alert given up: Alertmanager did not accept it in time; kept in the dead-letter topic"
        );
    }
}

/// A push to the Pushgateway, and whether it failed.
#[derive(Debug)]
pub struct Pushed {
    /// The error, if the push failed.
    pub error: Option<String>,
}

impl InternalEvent for Pushed {
    fn emit(self, metrics: &Metrics) {
        metrics.pushes.inc();
        if let Some(error) = self.error {
            metrics.push_failures.inc();
            tracing::warn!(error = %error, "push to the Pushgateway failed");
        }
    }
}

/// A log record not published on the logs topic because the shipping queue was full. Counted
/// only: a log line about it would go to the queue that is full.
#[derive(Debug)]
pub struct LogRecordDropped;

impl InternalEvent for LogRecordDropped {
    fn emit(self, metrics: &Metrics) {
        metrics.logs_dropped.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(metrics: &Metrics, series: &str) -> Option<f64> {
        metrics.render().lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().expect("a number"))
        })
    }

    #[test]
    fn registered_failure_series_start_at_zero_and_events_move_them() {
        let metrics = Metrics::new();
        let series = "tweetoscope_estimator_fit_failures_total{reason=\"panic\"}";
        assert_eq!(value(&metrics, series), None);
        FitFailed::register(&metrics);
        assert_eq!(value(&metrics, series), Some(0.0));
        FitFailed {
            cascade: None,
            failure: FitFailure::Panic,
            error: "boom".into(),
        }
        .emit(&metrics);
        assert_eq!(value(&metrics, series), Some(1.0));

        TrainingFailed::register(&metrics);
        let too_large = "tweetoscope_learner_training_failures_total{reason=\"too_large\"}";
        assert_eq!(value(&metrics, too_large), Some(0.0));
        TrainingFailed {
            window: Some(600),
            failure: TrainingFailure::TooLarge,
            error: "2 MB".into(),
        }
        .emit(&metrics);
        assert_eq!(value(&metrics, too_large), Some(1.0));
    }

    #[test]
    fn a_record_not_produced_counts_as_a_failure_of_its_stage_and_topic() {
        let metrics = Metrics::new();
        let labels = "{stage=\"collector\",topic=\"cascade_series\"}";
        RecordNotProduced {
            stage: "collector",
            topic: "cascade_series",
            error: None,
            refused: false,
        }
        .emit(&metrics);
        assert_eq!(
            value(
                &metrics,
                &format!("tweetoscope_produce_failures_total{labels}")
            ),
            Some(1.0)
        );
    }

    #[test]
    fn a_failed_push_counts_as_a_push_and_a_failure() {
        let metrics = Metrics::new();
        Pushed { error: None }.emit(&metrics);
        Pushed {
            error: Some("connection refused".into()),
        }
        .emit(&metrics);
        assert_eq!(metrics.pushes.get(), 2);
        assert_eq!(metrics.push_failures.get(), 1);
        MessageMalformed::register(&metrics, "monitor", "stats");
        let series = "tweetoscope_malformed_messages_total{stage=\"monitor\",topic=\"stats\"}";
        assert_eq!(value(&metrics, series), Some(0.0));
        MessageMalformed {
            stage: "monitor",
            topic: "stats",
            partition: 0,
            offset: 7,
            reason: &Malformed::new("not JSON"),
        }
        .emit(&metrics);
        assert_eq!(value(&metrics, series), Some(1.0));
    }
}
