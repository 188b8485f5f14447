//! Learner stage: keeps a bounded window of samples per observation window and retrains that
//! window's random forest every `retrain_every` new samples (a tenth of the samples held, once
//! that is more: see [`tweetoscope_predict::Trainer`]), publishing it on `models`.

use std::collections::HashMap;
use std::sync::Arc;

use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use tokio::sync::Semaphore;
use tweetoscope_forest::ForestParams;
use tweetoscope_messages::{to_payload, Sample};
use tweetoscope_predict::{
    learner_metadata, parse_learner_metadata, train, Trainer, MAX_MODEL_BYTES,
};

use super::StageEnv;
use crate::config::LearnerArgs;
use crate::events::{
    InternalEvent as _, ModelTrained, TrainingFailed, TrainingFailure, TrainingSuperseded,
};
use crate::kafka::{Handled, Handler, Outgoing};

const STAGE: &str = "learner";

/// Which training of each window was asked for last. Trainings run one at a time, in order; one
/// whose turn comes while a newer one of its window waits is skipped, since the newer one trains
/// on the same samples and more: when training cannot keep up with the samples, the learner
/// publishes the newest model as soon as it can instead of every intermediate one (the inputs of
/// a skipped training are committed without output, as those of a sample that trains nothing).
/// A training is known by its model version, which grows with every training of its window.
#[derive(Debug, Clone, Default)]
struct Supersession {
    /// The newest version asked for, by window.
    newest: Arc<std::sync::Mutex<HashMap<u64, u64>>>,
}

impl Supersession {
    /// Records the training of `version` asked for `window`.
    fn ask(&self, window: u64, version: u64) {
        self.newest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(window, version);
    }

    /// Whether `version` is still the newest training asked for `window`.
    fn is_newest(&self, window: u64, version: u64) -> bool {
        self.newest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&window)
            == Some(&version)
    }
}

/// The learner wired to Kafka.
#[derive(Debug)]
pub struct LearnerHandler {
    trainer: Trainer,
    capacity: usize,
    /// Input partition of each window.
    window_partition: HashMap<u64, i32>,
    params: Arc<ForestParams>,
    training: Arc<Semaphore>,
    /// The newest training asked for, by window (see [`Supersession`]).
    newest: Supersession,
    metrics: Arc<crate::metrics::Metrics>,
    topics: crate::config::TopicArgs,
    kafka: crate::kafka::KafkaSettings,
}

impl Handler for LearnerHandler {
    fn handle(&mut self, message: &BorrowedMessage<'_>) -> Handled {
        let sample = match Sample::parse(message.key(), message.payload().unwrap_or_default()) {
            Ok(s) => s,
            Err(m) => return Handled::Malformed(m),
        };
        self.window_partition
            .insert(sample.window(), message.partition());
        let job = self.trainer.add(&sample);
        let window = sample.window().to_string();
        self.metrics
            .training_samples
            .with_label_values(&[&window])
            .set(self.trainer.samples(sample.window()) as i64);
        let Some(job) = job else {
            return Handled::Now(Vec::new());
        };
        let params = self.params.clone();
        let metrics = self.metrics.clone();
        let topic = self.topics.models_topic.clone();
        let training = self.training.clone();
        let newest = self.newest.clone();
        newest.ask(job.window, job.version);
        Handled::Later(Box::pin(async move {
            let Ok(_turn) = training.acquire_owned().await else {
                return Vec::new();
            };
            if !newest.is_newest(job.window, job.version) {
                TrainingSuperseded {
                    window: job.window,
                    version: job.version,
                }
                .emit(&metrics);
                return Vec::new();
            }
            let trained = tokio::task::spawn_blocking(move || (train(&job, &params), job)).await;
            match trained {
                Ok((Ok(model), job)) => {
                    let payload = to_payload(&model);
                    if payload.len() > MAX_MODEL_BYTES {
                        TrainingFailed {
                            window: Some(job.window),
                            failure: TrainingFailure::TooLarge,
                            error: format!("{} bytes, at most {MAX_MODEL_BYTES}", payload.len()),
                        }
                        .emit(&metrics);
                        return Vec::new();
                    }
                    ModelTrained {
                        window: job.window,
                        version: job.version,
                        samples: job.rows.len(),
                        bytes: payload.len(),
                        growth_blended: model.growth.as_ref().map(|g| g.blend),
                    }
                    .emit(&metrics);
                    vec![Outgoing::keyed(&topic, window, payload)]
                }
                Ok((Err(e), job)) => {
                    TrainingFailed {
                        window: Some(job.window),
                        failure: TrainingFailure::Error,
                        error: e.to_string(),
                    }
                    .emit(&metrics);
                    Vec::new()
                }
                Err(e) => {
                    TrainingFailed {
                        window: None,
                        failure: TrainingFailure::Panic,
                        error: e.to_string(),
                    }
                    .emit(&metrics);
                    Vec::new()
                }
            }
        }))
    }

    fn checkpoint(&self, _topic: &str, partition: i32, processed: i64) -> (i64, String) {
        let mut totals: Vec<(u64, u64)> = self
            .window_partition
            .iter()
            .filter(|(_, &p)| p == partition)
            .map(|(&w, _)| (w, self.trainer.total(w)))
            .collect();
        totals.sort_unstable();
        (processed, learner_metadata(processed, &totals))
    }

    fn resume(
        &mut self,
        topic: &str,
        partition: i32,
        committed: Option<(i64, &str)>,
    ) -> anyhow::Result<()> {
        let Some((offset, metadata)) = committed else {
            return Ok(());
        };
        let totals = parse_learner_metadata(metadata);
        if totals.is_empty() {
            return Ok(());
        }
        // The newest `capacity` samples of each window lie within the last capacity × windows
        // records of the partition (a partition holds few windows).
        let span = (self.capacity * totals.len()) as i64;
        let records =
            self.kafka
                .read_partition_range(topic, partition, Some(offset - span), Some(offset))?;
        let mut recent: HashMap<u64, Vec<Sample>> = HashMap::new();
        for (key, value) in records {
            if let Some(Ok(s)) = value.map(|v| Sample::parse(key.as_deref(), &v)) {
                recent.entry(s.window()).or_default().push(s);
            }
        }
        for (window, total) in totals {
            let samples = recent.remove(&window).unwrap_or_default();
            let keep = samples.len().saturating_sub(self.capacity);
            self.trainer.restore(window, &samples[keep..], total);
            self.window_partition.insert(window, partition);
            tracing::info!(
                window,
                total,
                rebuilt = samples.len() - keep,
                "training window restored"
            );
        }
        Ok(())
    }

    fn revoke(&mut self, _topic: &str, partition: i32) {
        let windows: Vec<u64> = self
            .window_partition
            .iter()
            .filter(|(_, &p)| p == partition)
            .map(|(&w, _)| w)
            .collect();
        for w in windows {
            self.trainer.forget(w);
            self.window_partition.remove(&w);
        }
    }
}

/// Runs the learner until shutdown.
pub async fn run(env: StageEnv, args: LearnerArgs) -> anyhow::Result<()> {
    TrainingFailed::register(&env.metrics);
    let params = Arc::new(args.forest_params());
    params.validate()?;
    tracing::info!(
        retrain_every = args.retrain_every,
        training_window = args.training_window,
        trees = args.trees,
        "learner started"
    );
    let handler = LearnerHandler {
        trainer: Trainer::new(args.retrain_every, args.training_window as usize),
        capacity: args.training_window as usize,
        window_partition: HashMap::new(),
        params,
        // One training at a time, in the order they were asked for: versions go out in order.
        training: Arc::new(Semaphore::new(1)),
        newest: Supersession::default(),
        metrics: env.metrics.clone(),
        topics: env.topics.clone(),
        kafka: env.kafka.clone(),
    };
    let input = env.input(STAGE, &env.topics.samples_topic);
    env.consume(input, |_| Ok(handler)).await
}

#[cfg(test)]
mod tests {
    use super::Supersession;

    #[test]
    fn a_training_is_superseded_only_by_a_newer_one_of_its_own_window() {
        let newest = Supersession::default();
        newest.ask(600, 1);
        newest.ask(1200, 1);
        assert!(newest.is_newest(600, 1), "nothing newer yet");
        newest.ask(600, 2);
        assert!(!newest.is_newest(600, 1));
        assert!(newest.is_newest(600, 2));
        assert!(newest.is_newest(1200, 1), "another window's training");
        assert!(!newest.is_newest(21600, 1), "a window never asked for");
    }
}
