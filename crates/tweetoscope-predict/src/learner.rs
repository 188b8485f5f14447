//! The learner's side: the ω ↔ target transforms, the samples of each window and when to retrain,
//! and the training of one forest into a model message.

use std::collections::{HashMap, VecDeque};

use tweetoscope_forest::{ForestParams, RandomForest};
use tweetoscope_messages::{GrowthModel, ModelMessage, ModelTag, ModelTarget, Sample};

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

/// The [`GROWTH_FEATURES`](tweetoscope_messages::GROWTH_FEATURES) of a cascade: its served
/// features `[time scale, n*, G1]`, `ln n_obs` and `ln(1 + n_supp/n_obs)` with
/// `n_supp = G1/(1 − n*)`, the log-growth the Hawkes fit alone predicts.
pub fn growth_features(x: [f64; 3], n_obs: f64) -> [f64; 5] {
    let [scale, n_star, g1] = x;
    [
        scale,
        n_star,
        g1,
        n_obs.ln(),
        (g1 / (1.0 - n_star) / n_obs).ln_1p(),
    ]
}

/// The served size from the two forests: the geometric mean of the Hawkes size corrected by ω
/// and `n_obs` times the growth forest's `exp(ln growth)`. The first tracks the model (best when
/// the Hawkes process describes the data, as on synthetic cascades), the second the observed
/// count (best on real tweets, where the Hawkes remainder is often far off); averaging their
/// logs is the one-parameter-free compromise `eval` measured.
pub fn blend_sizes(hawkes_size: f64, n_obs: f64, ln_growth: f64) -> f64 {
    ((hawkes_size.ln() + n_obs.ln() + ln_growth) / 2.0).exp()
}

/// One sample as a window keeps it: features, ω, and growth with `n_obs` when known.
type Row = ([f64; 3], f64, Option<(f64, u64)>);

/// Training data of one observation window.
#[derive(Debug, Default)]
pub struct WindowSamples {
    /// Features, ω, growth (`n_tot / n_obs`) and `n_obs` (when the sample carries them).
    rows: VecDeque<Row>,
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
    /// The [`growth_features`] of the samples that carry their sizes, for the growth forest.
    pub growth_rows: Vec<[f64; 5]>,
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
            .push_back((sample.x, sample.w, sample.growth().zip(sample.n_obs)));
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
            growths: w.rows.iter().filter_map(|r| r.2.map(|g| g.0)).collect(),
            growth_rows: w
                .rows
                .iter()
                .filter_map(|r| r.2.map(|(_, n_obs)| growth_features(r.0, n_obs as f64)))
                .collect(),
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

/// Settings of the growth forest: those of the ω forest, at most 4 levels deep (16 leaves), so
/// that both forests fit in one message: the default ω forest (100 trees, 8 levels, 5,000
/// samples) alone takes about 850 kB of the [`MAX_MODEL_BYTES`], a 6-level growth forest
/// another 116 kB, a 4-level one about 30 kB.
pub fn growth_forest_params(params: &ForestParams) -> ForestParams {
    ForestParams {
        max_depth: params.max_depth.min(4),
        ..params.clone()
    }
}

/// Fits the forests of a job and wraps them in a model message.
pub fn train(job: &TrainingJob, params: &ForestParams) -> Result<ModelMessage, String> {
    let targets: Vec<f64> = job.targets.iter().map(|&w| target_from_omega(w)).collect();
    let forest =
        tweetoscope_forest::fit_rows(&job.rows, &targets, params).map_err(|e| e.to_string())?;
    // The growth forest learns ln(n_tot / n_obs) on the samples that carry their sizes.
    let (growth_rows, growth_targets): (Vec<[f64; 5]>, Vec<f64>) = job
        .growth_rows
        .iter()
        .zip(&job.growths)
        .map(|(x, g)| (*x, g.ln()))
        .filter(|(x, y)| y.is_finite() && x.iter().all(|v| v.is_finite()))
        .unzip();
    let growth = if growth_rows.is_empty() {
        None
    } else {
        let forest = tweetoscope_forest::fit_rows(
            &growth_rows,
            &growth_targets,
            &growth_forest_params(params),
        )
        .map_err(|e| e.to_string())?;
        Some(GrowthModel {
            features: tweetoscope_messages::GROWTH_FEATURES
                .iter()
                .map(|f| (*f).to_owned())
                .collect(),
            forest: serde_json::to_value(&forest).map_err(|e| e.to_string())?,
        })
    };
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
        growth,
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
        assert!(
            jobs.iter().all(|j| j.growth_rows.is_empty()),
            "no sizes, no growth rows"
        );
    }

    #[test]
    fn samples_with_sizes_give_aligned_growth_rows() {
        let mut t = Trainer::new(2, 10);
        let old = Sample::new("a".into(), 600, [0.01, 0.5, 10.0], 1.0);
        let new = Sample::new("b".into(), 600, [0.01, 0.5, 10.0], 1.0).with_sizes(20, 50);
        assert!(t.add(&old).is_none());
        let job = t.add(&new).expect("due");
        assert_eq!(job.rows.len(), 2);
        assert_eq!(job.growths, vec![2.5]);
        // ln 20 and ln(1 + (10 / 0.5) / 20) = ln 2.
        let x = job.growth_rows[0];
        assert_eq!(job.growth_rows.len(), 1);
        assert_eq!(&x[..3], &[0.01, 0.5, 10.0]);
        assert!((x[3] - 20f64.ln()).abs() < 1e-12 && (x[4] - 2f64.ln()).abs() < 1e-12);
        // The growth forest learns ln 2.5 from it.
        let model = train(&job, &forest_params(5, 1)).unwrap();
        let forest: RandomForest = serde_json::from_value(model.growth.unwrap().forest).unwrap();
        assert!((forest.predict_one(&x) - 2.5f64.ln()).abs() < 1e-9);
    }

    #[test]
    fn blended_size_is_the_geometric_mean() {
        // Hawkes+ω says 40, the growth forest 20 × e^{ln 5} = 100: √(40 · 100) = 63.2…
        let n = blend_sizes(40.0, 20.0, 5f64.ln());
        assert!((n - 4000f64.sqrt()).abs() < 1e-9, "{n}");
        assert!((blend_sizes(30.0, 30.0, 0.0) - 30.0).abs() < 1e-12);
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
            growth_rows: Vec::new(),
        };
        // Without sizes (older samples) there is no growth forest.
        assert_eq!(train(&job, &forest_params(5, 1)).unwrap().growth, None);
        // With them, both forests together still fit in one message.
        let growths: Vec<f64> = (0..5000).map(|i| 1.0 + (i % 13) as f64).collect();
        let job = TrainingJob {
            growth_rows: job.rows.iter().map(|r| growth_features(*r, 20.0)).collect(),
            growths,
            ..job
        };
        let model = train(&job, &forest_params(100, 1)).unwrap();
        let bytes = to_payload(&model).len();
        assert!(bytes < MAX_MODEL_BYTES, "{bytes} bytes");
        assert_eq!(
            model.max_growth,
            Some(13.0),
            "the largest growth trained on"
        );
        let growth = model.growth.as_ref().expect("a growth forest");
        assert_eq!(growth.features, tweetoscope_messages::GROWTH_FEATURES);
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
