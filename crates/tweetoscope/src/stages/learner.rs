//! Learner stage: keeps a bounded window of samples per observation window and retrains that
//! window's random forest every `retrain_every` new samples, publishing it on `models`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use rdkafka::consumer::Consumer;
use rdkafka::Message;
use tokio::sync::Semaphore;
use tweetoscope_forest::ForestParams;
use tweetoscope_messages::{to_payload, ModelMessage, ModelTag, ModelTarget, Sample};

use super::StageEnv;
use crate::config::LearnerArgs;
use crate::kafka::{process, Handled, LoopSettings, Outgoing, Sink};

const STAGE: &str = "learner";

/// Largest model blob sent (Kafka's default message limit is 1 MB).
const MAX_MODEL_BYTES: usize = 900_000;

/// Training data of one observation window.
#[derive(Debug, Default)]
pub struct WindowSamples {
    rows: VecDeque<([f64; 3], f64)>,
    new_since_training: u64,
    version: u64,
}

/// Smallest ω the forests work with: W = 0 (no retweet after the window) maps here.
pub const OMEGA_FLOOR: f64 = 1e-2;

/// The forests learn ln ω rather than ω: W is heavy-tailed (a small G1 gives a huge W), and a mean
/// of logs estimates the typical correction instead of chasing outliers.
pub fn target_from_omega(w: f64) -> f64 {
    w.max(OMEGA_FLOOR).ln()
}

/// Inverse of [`target_from_omega`].
pub fn omega_from_target(y: f64) -> f64 {
    y.exp()
}

/// Samples per window and when to retrain.
pub struct Trainer {
    windows: HashMap<u64, WindowSamples>,
    retrain_every: u64,
    capacity: usize,
}

/// A training job: everything needed to fit one forest off the consumer loop.
#[derive(Debug, Clone)]
pub struct TrainingJob {
    /// Observation window.
    pub window: u64,
    /// Version the model will carry.
    pub version: u64,
    /// Features.
    pub rows: Vec<[f64; 3]>,
    /// Targets: the ω of each sample (the forest is fitted on ln ω).
    pub targets: Vec<f64>,
}

impl Trainer {
    /// A trainer retraining every `retrain_every` samples on at most `capacity` of them.
    pub fn new(retrain_every: u64, capacity: usize) -> Self {
        Self {
            windows: HashMap::new(),
            retrain_every,
            capacity,
        }
    }

    /// Adds a sample; returns a training job when the window is due.
    pub fn add(&mut self, sample: &Sample) -> Option<TrainingJob> {
        let window = sample.window();
        let w = self.windows.entry(window).or_default();
        if w.rows.len() == self.capacity {
            w.rows.pop_front();
        }
        w.rows.push_back((sample.x, sample.w));
        w.new_since_training += 1;
        if w.new_since_training < self.retrain_every {
            return None;
        }
        w.new_since_training = 0;
        w.version += 1;
        Some(TrainingJob {
            window,
            version: w.version,
            rows: w.rows.iter().map(|r| r.0).collect(),
            targets: w.rows.iter().map(|r| r.1).collect(),
        })
    }

    /// Samples held for `window`.
    pub fn samples(&self, window: u64) -> usize {
        self.windows.get(&window).map_or(0, |w| w.rows.len())
    }
}

/// Forest settings of the learner: shallow enough that a model fits in one Kafka message.
pub fn forest_params(args: &LearnerArgs) -> ForestParams {
    ForestParams {
        n_trees: args.trees as usize,
        max_depth: 8,
        min_samples_leaf: 10,
        seed: args.forest_seed,
        ..ForestParams::default()
    }
}

/// Fits the forest of a job and wraps it in a model message.
pub fn train(job: &TrainingJob, params: &ForestParams) -> Result<ModelMessage, String> {
    let targets: Vec<f64> = job.targets.iter().map(|&w| target_from_omega(w)).collect();
    let forest =
        tweetoscope_forest::fit_rows(&job.rows, &targets, params).map_err(|e| e.to_string())?;
    Ok(ModelMessage {
        kind: ModelTag::Model,
        t_obs: job.window,
        version: job.version,
        n_samples: job.rows.len() as u64,
        features: vec!["beta".into(), "n_star".into(), "G1".into()],
        target: ModelTarget::LnOmega,
        forest: serde_json::to_value(&forest).map_err(|e| e.to_string())?,
    })
}

/// Runs the learner until shutdown.
pub async fn run(env: StageEnv, args: LearnerArgs) -> anyhow::Result<()> {
    let params = Arc::new(forest_params(&args));
    params.validate()?;
    let producer = env.kafka.producer()?;
    let consumer = env.kafka.consumer(STAGE, env.metrics.clone())?;
    consumer.subscribe(&[env.topics.samples_topic.as_str()])?;
    let mut trainer = Trainer::new(args.retrain_every, args.training_window as usize);
    // One training at a time, in the order they were asked for: versions go out in order.
    let training = Arc::new(Semaphore::new(1));
    let metrics = env.metrics.clone();
    let topic = env.topics.models_topic.clone();
    tracing::info!(
        retrain_every = args.retrain_every,
        training_window = args.training_window,
        trees = args.trees,
        "learner started"
    );
    let sink = Sink::new(producer, env.metrics.clone(), STAGE);
    process(
        LoopSettings::new(STAGE),
        consumer,
        sink,
        env.metrics.clone(),
        env.shutdown.clone(),
        move |message| {
            let sample = match Sample::parse(message.key(), message.payload().unwrap_or_default()) {
                Ok(s) => s,
                Err(m) => return Handled::Malformed(m),
            };
            let job = trainer.add(&sample);
            let window = sample.window().to_string();
            metrics
                .training_samples
                .with_label_values(&[&window])
                .set(trainer.samples(sample.window()) as i64);
            let Some(job) = job else {
                return Handled::Now(Vec::new());
            };
            let params = params.clone();
            let metrics = metrics.clone();
            let topic = topic.clone();
            let training = training.clone();
            Handled::Later(Box::pin(async move {
                let Ok(_turn) = training.acquire_owned().await else {
                    return Vec::new();
                };
                let trained = tokio::task::spawn_blocking(move || (train(&job, &params), job)).await;
                match trained {
                    Ok((Ok(model), job)) => {
                        let payload = to_payload(&model);
                        if payload.len() > MAX_MODEL_BYTES {
                            tracing::error!(window = job.window, bytes = payload.len(), "model too large for a Kafka message; not published (lower --trees)");
                            return Vec::new();
                        }
                        metrics.trainings.with_label_values(&[&window]).inc();
                        metrics.model_version.with_label_values(&[STAGE, &window]).set(job.version as i64);
                        tracing::info!(window = job.window, version = job.version, samples = job.rows.len(), bytes = payload.len(), "model trained");
                        vec![Outgoing::keyed(&topic, window, payload)]
                    }
                    Ok((Err(e), job)) => {
                        tracing::warn!(window = job.window, error = %e, "training failed");
                        Vec::new()
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "training worker panicked");
                        Vec::new()
                    }
                }
            }))
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retrains_every_b_samples_on_a_bounded_window() {
        let mut t = Trainer::new(3, 5);
        let sample = |i: usize, window: u64| {
            Sample::new(
                format!("c{i}").as_str().into(),
                window,
                [i as f64, 0.5, 1.0],
                1.0,
            )
        };
        let mut jobs = Vec::new();
        for i in 0..10 {
            jobs.extend(t.add(&sample(i, 600)));
        }
        assert!(
            t.add(&sample(99, 1200)).is_none(),
            "windows count separately"
        );
        assert_eq!(
            jobs.iter()
                .map(|j| (j.version, j.rows.len()))
                .collect::<Vec<_>>(),
            vec![(1, 3), (2, 5), (3, 5)]
        );
        // The last job holds the 5 newest samples.
        assert_eq!(
            jobs[2]
                .rows
                .iter()
                .map(|r| r[0] as usize)
                .collect::<Vec<_>>(),
            vec![4, 5, 6, 7, 8]
        );
        assert_eq!(t.samples(600), 5);
        assert_eq!(t.samples(1200), 1);
    }

    #[test]
    fn trained_models_are_small_enough_and_usable() {
        let rows: Vec<[f64; 3]> = (0..5000)
            .map(|i| [i as f64 * 1e-6, (i % 90) as f64 / 100.0, (i % 37) as f64])
            .collect();
        let targets: Vec<f64> = rows
            .iter()
            .map(|r| 1.0 + r[1] + (r[2] / 37.0).sin())
            .collect();
        let job = TrainingJob {
            window: 600,
            version: 1,
            rows,
            targets,
        };
        let args = LearnerArgs {
            retrain_every: 1,
            training_window: 5000,
            trees: 100,
            forest_seed: 1,
        };
        let model = train(&job, &forest_params(&args)).unwrap();
        let bytes = to_payload(&model).len();
        assert!(bytes < MAX_MODEL_BYTES, "{bytes} bytes");
        let parsed = ModelMessage::parse(&to_payload(&model)).unwrap();
        let forest: tweetoscope_forest::RandomForest =
            serde_json::from_value(parsed.forest).unwrap();
        assert_eq!(parsed.target, ModelTarget::LnOmega);
        let predicted = omega_from_target(forest.predict_one(&[0.001, 0.5, 10.0]));
        assert!(
            (predicted - (1.5 + (10.0f64 / 37.0).sin())).abs() < 0.2,
            "{predicted}"
        );
    }
}
