//! The learner's side: the ω ↔ target transforms, the samples of each window and when to retrain,
//! and the training of one forest into a model message.

use std::collections::{HashMap, VecDeque};

use tweetoscope_forest::{ForestParams, RandomForest};
use tweetoscope_messages::{
    GrowthModel, ModelMessage, ModelTag, ModelTarget, Sample, SeriesShape,
    PREDICTION_INTERVAL_COVERAGE,
};

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
/// [`PREDICTION_INTERVAL_COVERAGE`] interval
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

/// The [`GROWTH_FEATURES`](tweetoscope_messages::GROWTH_FEATURES) of a cascade of `n_obs`
/// tweets whose series has this shape: `ln n_obs`, `ln late_share` (at least `0.5 / n_obs`, so a
/// window whose tweets all came early stays finite) and `ln sqrt_followers`.
pub fn growth_features(n_obs: f64, shape: &SeriesShape) -> [f64; 3] {
    let n = n_obs.max(1.0);
    [
        n.ln(),
        shape.late_share.max(0.5 / n).ln(),
        shape.sqrt_followers.max(1.0).ln(),
    ]
}

/// The blended served size: the geometric mean of the Hawkes size corrected by ω and `n_obs`
/// times the growth model's `exp(ln growth)`. The first tracks the model (best when the Hawkes
/// process describes the data, as on synthetic cascades), the second the observed count and
/// shape (best on real tweets, where the Hawkes remainder is often far off). The learner serves
/// it when it predicts its training samples better than the growth model alone.
pub fn blend_sizes(hawkes_size: f64, n_obs: f64, ln_growth: f64) -> f64 {
    ((hawkes_size.ln() + n_obs.ln() + ln_growth) / 2.0).exp()
}

/// One sample as a window keeps it.
#[derive(Debug, Clone, Copy)]
struct Row {
    /// Features `[β, n*, G1]`.
    x: [f64; 3],
    /// ω.
    w: f64,
    /// `(n_obs, n_tot)`, when the sample carries them.
    sizes: Option<(u64, u64)>,
    /// [`Sample::growth`].
    growth: Option<f64>,
    /// The series' shape, when the sample carries it.
    shape: Option<SeriesShape>,
}

/// Training data of one observation window.
#[derive(Debug, Default)]
pub struct WindowSamples {
    /// The newest samples, oldest first.
    rows: VecDeque<Row>,
    /// Samples of this window ever received.
    total: u64,
    /// Trainings so far: the version of the last model asked for.
    version: u64,
    /// The `total` at which the next training is due.
    next_training: u64,
}

/// One training per tenth of the samples a model learns from, at most: once a window holds
/// more than `10 × retrain_every` samples, the next training waits for a tenth of them to be new
/// (in steps of `retrain_every`), so a full training window of 5,000 samples retrains every 500
/// instead of every 100. Each model then differs from the last by a tenth of its data at most,
/// and training no longer takes a whole core at full speed.
pub const RETRAIN_SHARE_DIVISOR: u64 = 10;

/// See [`Trainer::training_gap`].
fn training_gap(retrain_every: u64, capacity: usize, total: u64) -> u64 {
    let held = total.min(capacity as u64);
    retrain_every * (held / (RETRAIN_SHARE_DIVISOR * retrain_every)).max(1)
}

/// Samples per window and when to retrain. Versions and training points depend only on how many
/// samples a window has received, so a learner rebuilt after a crash continues the same sequence:
/// the first training after `retrain_every` samples, each next one [`Trainer::training_gap`]
/// samples later.
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
    /// The samples that carry their sizes and shape, for the growth model.
    pub growth_rows: Vec<GrowthRow>,
}

/// A training sample of the growth model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrowthRow {
    /// Position of the sample in [`TrainingJob::rows`].
    pub index: usize,
    /// Tweets observed in the window.
    pub n_obs: u64,
    /// Final size.
    pub n_tot: u64,
    /// Its [`growth_features`].
    pub x: [f64; 3],
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

    /// Samples from a training at `total` samples received to the next: `retrain_every`, or a
    /// tenth of the samples held ([`RETRAIN_SHARE_DIVISOR`]) rounded down to a multiple of it.
    pub fn training_gap(&self, total: u64) -> u64 {
        training_gap(self.retrain_every, self.capacity, total)
    }

    /// The trainings due by `total` samples received and the total at which the next is due.
    fn schedule(&self, total: u64) -> (u64, u64) {
        let (mut version, mut next) = (0, self.retrain_every);
        while next <= total {
            version += 1;
            next += self.training_gap(next);
        }
        (version, next)
    }

    fn push(&mut self, window: u64, sample: &Sample) -> &mut WindowSamples {
        let capacity = self.capacity;
        let first_training = self.retrain_every;
        let samples = self.windows.entry(window).or_insert_with(|| WindowSamples {
            next_training: first_training,
            ..WindowSamples::default()
        });
        if samples.rows.len() == capacity {
            samples.rows.pop_front();
        }
        samples.rows.push_back(Row {
            x: sample.x,
            w: sample.w,
            sizes: sample.n_obs.zip(sample.n_tot),
            growth: sample.growth(),
            shape: sample.shape,
        });
        samples
    }

    /// Adds a sample; returns a training job when the window is due.
    pub fn add(&mut self, sample: &Sample) -> Option<TrainingJob> {
        let window = sample.window();
        let (every, capacity) = (self.retrain_every, self.capacity);
        let w = self.push(window, sample);
        w.total += 1;
        if w.total < w.next_training {
            return None;
        }
        w.version += 1;
        w.next_training = w.total + training_gap(every, capacity, w.total);
        Some(TrainingJob {
            window,
            version: w.version,
            rows: w.rows.iter().map(|r| r.x).collect(),
            targets: w.rows.iter().map(|r| r.w).collect(),
            growths: w.rows.iter().filter_map(|r| r.growth).collect(),
            growth_rows: w
                .rows
                .iter()
                .enumerate()
                .filter_map(|(index, r)| {
                    let (n_obs, n_tot) =
                        r.sizes.filter(|(n_obs, n_tot)| *n_obs > 0 && *n_tot > 0)?;
                    Some(GrowthRow {
                        index,
                        n_obs,
                        n_tot,
                        x: growth_features(n_obs as f64, &r.shape?),
                    })
                })
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
        let (version, next_training) = self.schedule(total);
        if let Some(w) = self.windows.get_mut(&window) {
            w.total = total;
            w.version = version;
            w.next_training = next_training;
        } else {
            self.windows.insert(
                window,
                WindowSamples {
                    rows: VecDeque::new(),
                    total,
                    version,
                    next_training,
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

/// Folds of the growth model's cross-fitting (fewer with fewer than 20 samples).
const GROWTH_FOLDS: usize = 10;

/// Growth samples needed for a growth model: two per fold of the smallest cross-fitting.
const MIN_GROWTH_ROWS: usize = 8;

/// Fits the forest and the growth model of a job and wraps them in a model message.
///
/// The ω forest learns ln ω on every sample. The growth model, a median regression of
/// `ln(n_tot / n_obs)` on [`growth_features`], learns from the samples that carry their sizes
/// and shape (at least 8). Each of those samples is then predicted by models
/// that did not learn from it (the forest's out-of-bag prediction, the regression fitted
/// without its fold) in the two ways the predictor can serve: the growth model alone, and
/// [`blend_sizes`] of it with the ω-corrected Hawkes size. The way with the smaller median
/// absolute log error is served, with the split-conformal bounds of its log errors
/// ([`tweetoscope_stats::conformal_bounds`]) as those of an 80 % interval.
pub fn train(job: &TrainingJob, params: &ForestParams) -> Result<ModelMessage, String> {
    let targets: Vec<f64> = job.targets.iter().map(|&w| target_from_omega(w)).collect();
    let (forest, out_of_bag) = tweetoscope_forest::fit_rows_out_of_bag(&job.rows, &targets, params)
        .map_err(|e| e.to_string())?;
    let growth = growth_model(job, &out_of_bag);
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

/// The growth model of a job (see [`train`]), given the ω forest's out-of-bag predictions of
/// ln ω for [`TrainingJob::rows`]; `None` with too few growth samples.
fn growth_model(job: &TrainingJob, out_of_bag: &[Option<f64>]) -> Option<GrowthModel> {
    let rows: Vec<&GrowthRow> = job
        .growth_rows
        .iter()
        .filter(|r| r.x.iter().all(|v| v.is_finite()))
        .collect();
    if rows.len() < MIN_GROWTH_ROWS {
        return None;
    }
    let x: Vec<Vec<f64>> = rows.iter().map(|r| r.x.to_vec()).collect();
    let y: Vec<f64> = rows
        .iter()
        .map(|r| (r.n_tot as f64 / r.n_obs as f64).ln())
        .collect();
    let line = tweetoscope_stats::MedianRegression::fit(&x, &y)?;
    let folds = GROWTH_FOLDS.min(rows.len() / 2);
    let held_out = tweetoscope_stats::cross_fitted_residuals(&x, &y, folds)?;
    // Log errors ln(n_tot / served) of each way of serving, on samples none of its models saw.
    let mut alone = Vec::with_capacity(rows.len());
    let mut blended = Vec::with_capacity(rows.len());
    for ((r, y), residual) in rows.iter().zip(&y).zip(&held_out) {
        let ln_growth = y - residual;
        let (n_obs, n_tot) = (r.n_obs as f64, r.n_tot as f64);
        alone.push(*residual);
        let [_, n_star, g1] = job.rows[r.index];
        let hawkes = out_of_bag[r.index].and_then(|ln_omega| {
            tweetoscope_hawkes::predict_final_size(
                r.n_obs as usize,
                g1,
                n_star,
                omega_from_target(ln_omega),
            )
            .ok()
        });
        if let Some(hawkes) = hawkes {
            blended.push((n_tot / blend_sizes(hawkes, n_obs, ln_growth)).ln());
        }
    }
    let typical = |errors: &[f64]| {
        tweetoscope_stats::median(&errors.iter().map(|e| e.abs()).collect::<Vec<_>>())
    };
    // Blending is judged on the samples that have an out-of-bag ω (all but a few).
    let blend = blended.len() * 2 > alone.len()
        && blended.iter().all(|e| e.is_finite())
        && typical(&blended) < typical(&alone);
    let errors = if blend { &blended } else { &alone };
    Some(GrowthModel {
        features: tweetoscope_messages::GROWTH_FEATURES
            .iter()
            .map(|f| (*f).to_owned())
            .collect(),
        intercept: line.intercept,
        coefficients: line.coefficients,
        blend,
        log_error_bounds: tweetoscope_stats::conformal_bounds(errors, PREDICTION_INTERVAL_COVERAGE),
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
    fn a_full_training_window_retrains_once_a_tenth_of_it_is_new() {
        let sample = |i: u64| Sample::new("c".into(), 600, [i as f64, 0.5, 1.0], 1.0);
        let mut t = Trainer::new(10, 1000);
        let mut trained_at = Vec::new();
        for i in 1..=3000 {
            if let Some(job) = t.add(&sample(i)) {
                assert_eq!(job.version, trained_at.len() as u64 + 1);
                trained_at.push(i);
            }
        }
        let gaps: Vec<u64> = trained_at.windows(2).map(|w| w[1] - w[0]).collect();
        // Every 10 samples while fewer than 200 are held, then a tenth of those held (rounded
        // down to a multiple of 10), every 100 once the 1,000 of the training window are full.
        assert_eq!(&trained_at[..3], &[10, 20, 30]);
        assert!(gaps.iter().all(|g| g % 10 == 0), "{gaps:?}");
        for (at, gap) in trained_at.iter().zip(&gaps) {
            assert_eq!(
                *gap,
                10 * ((*at).min(1000) / 100).max(1),
                "after {at}: {gaps:?}"
            );
        }
        assert_eq!(gaps.last(), Some(&100));
        assert!(
            trained_at.len() < 3000 / 10 / 2,
            "{} trainings",
            trained_at.len()
        );

        // A trainer rebuilt from any total continues the same sequence of versions.
        for restart in [5, 10, 199, 200, 201, 777, 1000, 2050] {
            let mut rebuilt = Trainer::new(10, 1000);
            rebuilt.restore(600, &[], restart);
            let continued: Vec<(u64, u64)> = (restart + 1..=3000)
                .filter_map(|i| rebuilt.add(&sample(i)).map(|j| (i, j.version)))
                .collect();
            let expected: Vec<(u64, u64)> = trained_at
                .iter()
                .enumerate()
                .filter(|(_, &at)| at > restart)
                .map(|(k, &at)| (at, k as u64 + 1))
                .collect();
            assert_eq!(continued, expected, "restarted after {restart} samples");
        }
    }

    #[test]
    fn samples_with_sizes_and_shape_give_aligned_growth_rows() {
        let mut t = Trainer::new(3, 10);
        let shape = SeriesShape {
            late_share: 0.25,
            sqrt_followers: 3.0,
        };
        let old = Sample::new("a".into(), 600, [0.01, 0.5, 10.0], 1.0);
        let sized = Sample::new("b".into(), 600, [0.02, 0.5, 10.0], 1.0).with_sizes(20, 50);
        let shaped = Sample::new("c".into(), 600, [0.03, 0.5, 10.0], 1.0)
            .with_sizes(20, 50)
            .with_shape(Some(shape));
        assert!(t.add(&old).is_none());
        assert!(t.add(&sized).is_none());
        let job = t.add(&shaped).expect("due");
        assert_eq!(job.rows.len(), 3);
        assert_eq!(job.growths, vec![2.5, 2.5], "every sample with its sizes");
        // Only the sample with its shape is a growth row, pointing at its own features.
        assert_eq!(
            job.growth_rows,
            vec![GrowthRow {
                index: 2,
                n_obs: 20,
                n_tot: 50,
                x: [20f64.ln(), 0.25f64.ln(), 3f64.ln()]
            }]
        );
        // Too few growth rows for a growth model.
        assert_eq!(train(&job, &forest_params(5, 1)).unwrap().growth, None);
    }

    /// The shape of the `i`-th sample of [`job_with_truth`]: the same for `2k` and `2k + 1`.
    fn shape_of(i: usize) -> SeriesShape {
        SeriesShape {
            late_share: 0.1 + 0.8 * ((i / 2 * 7) % 10) as f64 / 10.0,
            sqrt_followers: 1.0 + (i / 2 % 9) as f64,
        }
    }

    /// A job of `n` samples of 20 observed tweets whose final size is `truth(i)`, with ω exact
    /// and G1 = `g1(n_tot)` (n* = 0.5).
    fn job_with_truth(n: usize, truth: impl Fn(usize) -> u64, g1: fn(u64) -> f64) -> TrainingJob {
        let mut t = Trainer::new(n as u64, n);
        let mut job = None;
        for i in 0..n {
            let n_tot = truth(i);
            let g1 = g1(n_tot);
            // ω that makes the Hawkes size exact: 20 + ω · G1 / 0.5 = n_tot.
            let w = (n_tot as f64 - 20.0) * 0.5 / g1;
            let sample = Sample::new(format!("c{i}").as_str().into(), 600, [0.01, 0.5, g1], w)
                .with_sizes(20, n_tot)
                .with_shape(Some(shape_of(i)));
            job = t.add(&sample);
        }
        job.expect("due after n samples")
    }

    #[test]
    fn the_growth_model_is_served_alone_when_it_explains_the_growth_and_blended_when_not() {
        // The final size follows the series' shape (growth 1 + 4 · late share, which the line
        // in ln late share fits roughly) and the Hawkes features say nothing (G1 is always 10):
        // the growth model alone is served, with a narrow interval around it.
        let by_shape = job_with_truth(
            80,
            |i| (20.0 * (1.0 + 4.0 * shape_of(i).late_share)) as u64,
            |_| 10.0,
        );
        let model = train(&by_shape, &forest_params(20, 1)).unwrap();
        let growth = model.growth.expect("80 growth rows");
        assert!(!growth.blend, "{growth:?}");
        let (lo, hi) = growth.log_error_bounds.expect("bounds");
        assert!(lo <= 0.0 && hi >= 0.0 && hi - lo < 0.5, "{growth:?}");
        // Cascades of the same shape end at 30 or 90 tweets, which only G1 tells apart: the
        // blend with the ω-corrected Hawkes size is served.
        let by_hawkes = job_with_truth(80, |i| if i % 2 == 0 { 30 } else { 90 }, |n| n as f64);
        let model = train(&by_hawkes, &forest_params(20, 1)).unwrap();
        let growth = model.growth.expect("80 growth rows");
        assert!(growth.blend, "{growth:?}");
        assert_eq!(model.max_growth, Some(4.5));
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
        // Without sizes (older samples) there is no growth model.
        assert_eq!(train(&job, &forest_params(5, 1)).unwrap().growth, None);
        // With them, the forest and the growth model still fit in one message.
        let growths: Vec<f64> = (0..5000).map(|i| 1.0 + (i % 13) as f64).collect();
        let job = TrainingJob {
            growth_rows: (0..5000)
                .map(|i| GrowthRow {
                    index: i,
                    n_obs: 20,
                    n_tot: 20 * (1 + (i % 13) as u64),
                    x: growth_features(
                        20.0,
                        &SeriesShape {
                            late_share: (i % 10) as f64 / 10.0,
                            sqrt_followers: 1.0 + (i % 7) as f64,
                        },
                    ),
                })
                .collect(),
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
        let growth = model.growth.as_ref().expect("a growth model");
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
