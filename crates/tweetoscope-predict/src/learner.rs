//! The learner's side: the ω ↔ target transforms, the samples of each window and when to retrain,
//! and the training of one forest into a model message.

use std::collections::{HashMap, VecDeque};

use tweetoscope_forest::{ForestParams, RandomForest};
use tweetoscope_messages::{ModelMessage, ModelTag, ModelTarget, Sample};

/// Largest model blob sent (Kafka's default message limit is 1 MB).
pub const MAX_MODEL_BYTES: usize = 900_000;

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

/// ω for one row of a forest that learns ln ω, with ω's
/// [`PREDICTION_INTERVAL_COVERAGE`](tweetoscope_messages::PREDICTION_INTERVAL_COVERAGE) interval
/// when the forest holds its out-of-bag residuals; one forest prediction for both.
pub fn omega_with_interval(
    forest: &RandomForest,
    x: &[f64],
) -> Result<(f64, Option<(f64, f64)>), tweetoscope_forest::ForestError> {
    let y = forest.try_predict_one(x)?;
    let interval = forest
        .residual_bounds(tweetoscope_messages::PREDICTION_INTERVAL_COVERAGE)
        .map(|(lo, hi)| (omega_from_target(y + lo), omega_from_target(y + hi)));
    Ok((omega_from_target(y), interval))
}

/// Training data of one observation window.
#[derive(Debug, Default)]
pub struct WindowSamples {
    /// Features, ω and growth (`n_tot / n_obs`, when the sample carries it).
    rows: VecDeque<([f64; 3], f64, Option<f64>)>,
    /// Samples of this window ever received: the model version is `total / retrain_every`.
    total: u64,
}

/// Samples per window and when to retrain. Versions and training points depend only on how many
/// samples a window has received, so a learner rebuilt after a crash continues the same sequence.
#[derive(Debug)]
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
    /// The growths `n_tot / n_obs` of the samples that carry them.
    pub growths: Vec<f64>,
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

    fn push(&mut self, window: u64, sample: &Sample) -> &mut WindowSamples {
        let capacity = self.capacity;
        let samples = self.windows.entry(window).or_default();
        if samples.rows.len() == capacity {
            samples.rows.pop_front();
        }
        samples
            .rows
            .push_back((sample.x, sample.w, sample.growth()));
        samples
    }

    /// Adds a sample; returns a training job when the window is due.
    pub fn add(&mut self, sample: &Sample) -> Option<TrainingJob> {
        let window = sample.window();
        let every = self.retrain_every;
        let w = self.push(window, sample);
        w.total += 1;
        if !w.total.is_multiple_of(every) {
            return None;
        }
        Some(TrainingJob {
            window,
            version: w.total / every,
            rows: w.rows.iter().map(|r| r.0).collect(),
            targets: w.rows.iter().map(|r| r.1).collect(),
            growths: w.rows.iter().filter_map(|r| r.2).collect(),
        })
    }

    /// Rebuilds a window after a restart: `recent` are its newest samples (oldest first) and
    /// `total` how many it had received in all.
    pub fn restore(&mut self, window: u64, recent: &[Sample], total: u64) {
        self.windows.remove(&window);
        for s in recent {
            self.push(window, s);
        }
        if let Some(w) = self.windows.get_mut(&window) {
            w.total = total;
        } else {
            self.windows.insert(
                window,
                WindowSamples {
                    rows: VecDeque::new(),
                    total,
                },
            );
        }
    }

    /// Forgets a window.
    pub fn forget(&mut self, window: u64) {
        self.windows.remove(&window);
    }

    /// Samples held for `window`.
    pub fn samples(&self, window: u64) -> usize {
        self.windows.get(&window).map_or(0, |w| w.rows.len())
    }

    /// Samples ever received for `window`.
    pub fn total(&self, window: u64) -> u64 {
        self.windows.get(&window).map_or(0, |w| w.total)
    }
}

/// Commit metadata of the learner: `processed=<offset>;<window>=<total>;...`.
pub fn learner_metadata(processed: i64, totals: &[(u64, u64)]) -> String {
    let mut m = format!("processed={processed}");
    for (window, total) in totals {
        m.push_str(&format!(";{window}={total}"));
    }
    m
}

/// Window totals from learner commit metadata.
pub fn parse_learner_metadata(metadata: &str) -> Vec<(u64, u64)> {
    metadata
        .split(';')
        .filter_map(|f| {
            let (k, v) = f.split_once('=')?;
            Some((k.parse().ok()?, v.parse().ok()?))
        })
        .collect()
}

/// Forest settings of the learner (and of `eval`'s served method): shallow enough that a model
/// fits in one Kafka message.
pub fn forest_params(n_trees: usize, seed: u64) -> ForestParams {
    ForestParams {
        n_trees,
        max_depth: 8,
        min_samples_leaf: 10,
        seed,
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
        features: tweetoscope_messages::SERVED_FEATURES
            .iter()
            .map(|f| (*f).to_owned())
            .collect(),
        target: ModelTarget::LnOmega,
        forest: serde_json::to_value(&forest).map_err(|e| e.to_string())?,
        max_growth: crate::growth_cap(job.growths.iter().copied()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tweetoscope_messages::to_payload;

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
            growths: vec![1.5, 4.0, 2.0],
        };
        let model = train(&job, &forest_params(100, 1)).unwrap();
        let bytes = to_payload(&model).len();
        assert!(bytes < MAX_MODEL_BYTES, "{bytes} bytes");
        assert_eq!(model.max_growth, Some(4.0), "the largest growth trained on");
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
