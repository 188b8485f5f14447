//! `tweetoscope eval`: the collector → estimator → predictor → learner logic run offline over a
//! data set as fast as the CPU allows, reporting per window the error of every prediction method
//! on held-out cascades: the Hawkes prediction alone, Hawkes corrected by random forests (the
//! pipeline's features, which the pipeline serves, and extended features), and two baselines that
//! need no model of the process (median ratio, log-linear). Beside the ARE distribution: the
//! share predicted within 10 % and 25 %, popularity-alert precision and recall, the share of
//! failed fits and, on synthetic data, how well the estimator recovers the generating
//! parameters.
//!
//! Splits follow the data set's own order (a cascade's index in its data set: file order for
//! `tideh` and `csv`, index order for `news`, simulation order for `synthetic`): the first
//! `--train-fraction` for training, or `--folds K` contiguous blocks each held out once, or a
//! whole other data set (`--test-data`).

mod svg;
mod text;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;
use tweetoscope_cascade::{Collector, Emission, Outcome};
use tweetoscope_hawkes::{Kernel, KernelFit};
use tweetoscope_messages::{CascadeSeries, SourceRecord};
use tweetoscope_replay::synthetic::SyntheticCascades;
use tweetoscope_replay::{source_name, Replay};
use tweetoscope_stats::{AlertScores, LogLinear, Spread};

use crate::config::{CascadeArgs, ConfigError, DataSource, EstimatorArgs, GeneratorArgs};

/// Options of `eval`.
#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// Data set (same options as the generator).
    #[command(flatten)]
    pub generator: GeneratorArgs,
    /// Windows, termination, minimum size.
    #[command(flatten)]
    pub cascade: CascadeArgs,
    /// Estimator options.
    #[command(flatten)]
    pub estimator: EstimatorArgs,
    /// A separate test data set (models are trained on the whole of --data).
    #[command(flatten)]
    pub test: TestDataArgs,
    /// Share of the cascades, in data set order, used for training; the rest is the test set.
    #[arg(
        long,
        env = "TWEETOSCOPE_TRAIN_FRACTION",
        default_value_t = 0.5,
        help_heading = "Evaluation"
    )]
    pub train_fraction: f64,
    /// K-fold cross-validation: the cascades, in data set order, cut into K contiguous blocks,
    /// each tested once with models trained on the others (instead of --train-fraction).
    #[arg(long, env = "TWEETOSCOPE_FOLDS", value_name = "K", value_parser = clap::value_parser!(u64).range(2..=100), help_heading = "Evaluation")]
    pub folds: Option<u64>,
    /// Popularity alert threshold, in tweets, for alert precision and recall (default: the 90th
    /// percentile of the final sizes of the training cascades).
    #[arg(
        long,
        env = "TWEETOSCOPE_ALERT_SIZE",
        value_name = "TWEETS",
        help_heading = "Evaluation"
    )]
    pub alert_size: Option<f64>,
    /// Trees per forest.
    #[arg(
        long,
        env = "TWEETOSCOPE_TREES",
        default_value_t = 100,
        help_heading = "Evaluation"
    )]
    pub trees: u64,
    /// Seed of the forests.
    #[arg(
        long,
        env = "TWEETOSCOPE_FOREST_SEED",
        default_value_t = 1,
        help_heading = "Evaluation"
    )]
    pub forest_seed: u64,
    /// Directory for report.json, report.svg and, per window, model-<T_obs>.json: the model
    /// the learner would publish, trained on every cascade of `--data` (none: text report only).
    #[arg(long, value_name = "DIR", help_heading = "Evaluation")]
    pub out: Option<PathBuf>,
}

/// A test data set other than the training one.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Test data")]
pub struct TestDataArgs {
    /// Kind of the test data set (as --data); the generator's other options apply to it too.
    #[arg(long, env = "TWEETOSCOPE_TEST_DATA", value_enum, value_name = "KIND")]
    pub test_data: Option<DataSource>,
    /// Directory of the test cascades, with --test-data tideh or csv.
    #[arg(long, env = "TWEETOSCOPE_TEST_DATA_DIR", value_name = "DIR")]
    pub test_data_dir: Option<PathBuf>,
    /// NEWS index of the test data, with --test-data news.
    #[arg(long, env = "TWEETOSCOPE_TEST_NEWS_INDEX", value_name = "FILE")]
    pub test_news_index: Option<PathBuf>,
    /// NEWS data of the test data, with --test-data news.
    #[arg(long, env = "TWEETOSCOPE_TEST_NEWS_DATA", value_name = "FILE")]
    pub test_news_data: Option<PathBuf>,
    /// Seed of the test replay (default: --seed + 1, so synthetic test cascades differ).
    #[arg(long, env = "TWEETOSCOPE_TEST_SEED")]
    pub test_seed: Option<u64>,
}

impl EvalArgs {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.generator.validate()?;
        self.cascade.validate()?;
        self.estimator.validate()?;
        if !(self.train_fraction > 0.0 && self.train_fraction < 1.0) {
            return Err(ConfigError(format!(
                "invalid value {} for --train-fraction: a share strictly between 0 and 1, e.g. 0.5",
                self.train_fraction
            )));
        }
        if let Some(size) = self.alert_size {
            if !(size.is_finite() && size >= 1.0) {
                return Err(ConfigError(format!(
                    "invalid value {size} for --alert-size: a number of tweets >= 1, e.g. 500"
                )));
            }
        }
        if self.trees == 0 {
            return Err(ConfigError(
                "invalid value 0 for --trees: at least 1 tree per forest".into(),
            ));
        }
        match self.test_generator() {
            Some(test) => {
                if self.folds.is_some() {
                    return Err(ConfigError(
                        "--folds and --test-data exclude each other: with a test data set, \
                         models are trained on the whole of --data"
                            .into(),
                    ));
                }
                test.validate().map_err(|e| {
                    ConfigError(format!(
                        "test data set: {}",
                        e.0.replace("--data-dir", "--test-data-dir")
                            .replace("--news-", "--test-news-")
                            .replace("--data ", "--test-data ")
                    ))
                })?;
            }
            None => {
                let stray = [
                    ("--test-data-dir", self.test.test_data_dir.is_some()),
                    ("--test-news-index", self.test.test_news_index.is_some()),
                    ("--test-news-data", self.test.test_news_data.is_some()),
                    ("--test-seed", self.test.test_seed.is_some()),
                ];
                if let Some((flag, _)) = stray.iter().find(|(_, given)| *given) {
                    return Err(ConfigError(format!(
                        "{flag} needs --test-data KIND (synthetic, news, tideh or csv)"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The generator options of the test data set, if one is given.
    pub fn test_generator(&self) -> Option<GeneratorArgs> {
        let kind = self.test.test_data?;
        Some(GeneratorArgs {
            data: kind,
            data_dir: self.test.test_data_dir.clone(),
            news_index: self.test.test_news_index.clone(),
            news_data: self.test.test_news_data.clone(),
            seed: self
                .test
                .test_seed
                .unwrap_or_else(|| self.generator.seed.wrapping_add(1)),
            replay_id: None,
            ..self.generator.clone()
        })
    }
}

/// The prediction methods, in report order.
pub const METHODS: [Method; 6] = [
    Method::Hawkes,
    Method::HawkesForest,
    Method::HawkesForestExtended,
    Method::MedianRatio,
    Method::LogLinear,
    Method::Tideh,
];

/// A way of predicting the final size from a partial cascade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The Hawkes prediction alone (ω = 1).
    Hawkes,
    /// What the pipeline serves: the growth model alone, or blended with the Hawkes size
    /// corrected by a forest on the pipeline's features (β or θ, n*, G1), as the learner
    /// chooses (see [`tweetoscope_predict::train`]).
    HawkesForest,
    /// Hawkes corrected by a forest on [`extended_features`].
    HawkesForestExtended,
    /// Observed size × the median final/observed ratio of the training pairs.
    MedianRatio,
    /// ln final size regressed on ln observed size over the training pairs.
    LogLinear,
    /// The time-dependent Hawkes process of TiDeH (daily rhythm and ageing, the paper's shared
    /// settings, `p₀` fitted per cascade), on data sets that give the time of day of each tweet.
    Tideh,
}

impl Method {
    /// The name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Hawkes => "hawkes",
            Method::HawkesForest => "hawkes+rf",
            Method::HawkesForestExtended => "hawkes+rf-extended",
            Method::MedianRatio => "median-ratio",
            Method::LogLinear => "log-linear",
            Method::Tideh => "tideh",
        }
    }

    /// Whether this is the prediction the pipeline serves.
    pub fn served(&self) -> bool {
        *self == Method::HawkesForest
    }
}

/// Fold-to-fold spread of a method's figures (cross-validation only).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FoldFigures {
    /// Median ARE of each fold: mean and standard deviation over the folds.
    pub median_are: Spread,
    /// Mean ARE over the folds.
    pub mean_are: Spread,
    /// Share within 10 % over the folds.
    pub within_10: Spread,
    /// Share within 25 % over the folds.
    pub within_25: Spread,
    /// Alert precision over the folds (folds without alerts left out).
    pub alert_precision: Spread,
    /// Alert recall over the folds (folds without popular cascades left out).
    pub alert_recall: Spread,
}

/// Figures of one prediction method on one window's test pairs (with folds: every test pair of
/// every fold, each cascade tested once).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MethodReport {
    /// `hawkes`, `hawkes+rf`, `hawkes+rf-extended`, `median-ratio` or `log-linear`.
    pub method: String,
    /// Whether the pipeline serves this method's prediction.
    pub served: bool,
    /// Test predictions.
    pub predictions: usize,
    /// Median ARE.
    pub median_are: f64,
    /// Mean ARE.
    pub mean_are: f64,
    /// ARE at the 10th, 25th, 50th, 75th and 90th percentiles.
    pub quantiles: [f64; 5],
    /// Share of test pairs predicted within 10 % of the truth (ARE ≤ 0.1).
    pub within_10: f64,
    /// Share predicted within 25 %.
    pub within_25: f64,
    /// Popularity alerts (predicted at least the alert size) against the cascades that reached
    /// it; with folds, counts summed over the folds.
    pub alerts: AlertScores,
    /// How often the 80 % prediction interval held the truth (forest methods only).
    pub interval: Option<IntervalReport>,
    /// Spread over the folds, with --folds.
    pub folds: Option<FoldFigures>,
    /// Sorted AREs (for plots).
    #[serde(skip)]
    pub sorted: Vec<f64>,
    /// `(predicted, true)` sizes of the test pairs (for plots).
    #[serde(skip)]
    pub points: Vec<(f64, f64)>,
}

/// Calibration of a method's prediction intervals on the test pairs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IntervalReport {
    /// Nominal coverage of the central interval (0.8: from the 10th to the 90th percentile).
    pub level: f64,
    /// Share of test pairs whose true size lies in the interval.
    pub coverage: f64,
    /// Median of (upper − lower) / predicted size.
    pub median_relative_width: f64,
    /// Alerts raised when the interval's lower bound reaches the alert size (the dashboard's
    /// `--alert-on lower-bound`), against the cascades that reached it.
    pub lower_bound_alerts: AlertScores,
    /// Alerts raised when the interval's upper bound reaches the alert size (the dashboard's
    /// `--alert-on upper-bound`: "possibly popular"), against the cascades that reached it.
    pub upper_bound_alerts: AlertScores,
}

/// Nominal coverage of the intervals `eval` checks: those the pipeline serves.
pub const INTERVAL_LEVEL: f64 = tweetoscope_messages::PREDICTION_INTERVAL_COVERAGE;

/// Parameter recovery on synthetic data.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecoveryReport {
    /// Median |p̂ − p| / p.
    pub median_rel_error_p: f64,
    /// Median |β̂ − β| / β.
    pub median_rel_error_beta: f64,
    /// Median |n̂* − n*| / n*.
    pub median_rel_error_n_star: f64,
}

/// Results of one window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowReport {
    /// Observation window in seconds.
    pub window: u64,
    /// Training (cascade, window) pairs with a successful fit (with folds: per fold, on average).
    pub train_pairs: usize,
    /// Test pairs with a successful fit (with folds: all folds together).
    pub test_pairs: usize,
    /// Share of all pairs of this window whose fit failed.
    pub fit_failure_share: f64,
    /// Alert size used (with folds: the mean of the folds' thresholds).
    pub alert_size: f64,
    /// One entry per method, in [`METHODS`] order.
    pub methods: Vec<MethodReport>,
    /// In how many splits (folds, or the one split) the served model blended the growth model
    /// with the ω-corrected Hawkes size rather than serving it alone, and in how many it had a
    /// growth model at all (see [`tweetoscope_predict::train`]).
    pub served_blended: (usize, usize),
    /// Parameter recovery over all pairs of the training data set (synthetic data only).
    pub recovery: Option<RecoveryReport>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvalReport {
    /// What was evaluated.
    pub dataset: String,
    /// The separate test data set, if any.
    pub test_dataset: Option<String>,
    /// How training and test cascades were chosen.
    pub split: String,
    /// Number of folds (cross-validation only).
    pub folds: Option<usize>,
    /// Cascades replayed (both data sets).
    pub cascades: usize,
    /// Cascades in the training part (with folds: per fold, on average).
    pub train_cascades: usize,
    /// Cascades tested (with folds: all folds together).
    pub test_cascades: usize,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Fits per second.
    pub fits_per_second: f64,
    /// Per window.
    pub windows: Vec<WindowReport>,
    /// With `--out`, per window, the model the learner would publish trained on every cascade
    /// of `--data` (what to deploy, or to give to `fit --model`); not part of report.json.
    #[serde(skip)]
    pub models: Vec<tweetoscope_messages::ModelMessage>,
}

/// One (cascade, window) pair.
struct Pair {
    cid: String,
    /// Position of the cascade in its data set.
    index: usize,
    series: CascadeSeries,
    n_tot: u64,
    fit: Option<KernelFit>,
    /// The TiDeH prediction, when the data set gives the time of day of the tweet.
    tideh: Option<f64>,
}

impl Pair {
    fn fit(&self) -> &KernelFit {
        self.fit.as_ref().expect("fitted pairs only")
    }

    fn n_obs(&self) -> f64 {
        self.series.tweets.len() as f64
    }
}

/// The kernel's time-scale parameter: β (exponential) or θ (power law).
fn time_feature(fit: &KernelFit) -> f64 {
    match fit.kernel {
        Kernel::Exponential => fit.params[1],
        Kernel::PowerLaw => fit.params[3],
    }
}

/// The pipeline's random-forest features: time scale (β or θ), n*, G1.
pub fn base_features(fit: &KernelFit) -> Vec<f64> {
    vec![time_feature(fit), fit.n_star, fit.g1]
}

/// Extended features: the base ones plus the observed size, the first mark, the share of the
/// observed tweets in the last fifth of the window, and the Hawkes expected remainder.
pub fn extended_features(fit: &KernelFit, series: &CascadeSeries) -> Vec<f64> {
    let n = series.tweets.len() as f64;
    let t0 = series.tweets[0].0;
    let late = series
        .tweets
        .iter()
        .filter(|(t, _)| t - t0 >= 0.8 * series.t_obs as f64)
        .count() as f64;
    vec![
        time_feature(fit),
        fit.n_star,
        fit.g1,
        n.ln(),
        (1.0 + series.tweets[0].1).ln(),
        late / n,
        (fit.g1 / (1.0 - fit.n_star)).ln_1p(),
    ]
}

/// Runs `f` over `items` on every core, keeping the order.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker panicked"))
            .collect()
    })
}

/// What the collector logic emits over a whole replay, offline.
#[derive(Debug)]
pub struct Collected {
    /// Series and sizes, in emission order.
    pub emitted: Vec<Emission>,
    /// Start rank of each cascade in the replay (0 for the first to start).
    pub rank: HashMap<String, usize>,
}

impl Collected {
    /// The (cascade, window) pairs that got a series: what the pipeline must predict.
    pub fn series_pairs(&self) -> BTreeSet<(String, u64)> {
        self.emitted
            .iter()
            .filter_map(|e| match e {
                Emission::Series(s) => Some((s.cid.0.clone(), s.t_obs)),
                Emission::Size(_) => None,
            })
            .collect()
    }
}

/// Runs the generator's seeded replay through the pure collector, without any broker: the
/// reference of what a run of the pipeline on the same options must emit.
pub fn collect_offline(
    generator: &GeneratorArgs,
    config: tweetoscope_cascade::CollectorConfig,
) -> anyhow::Result<Collected> {
    let mut collector = Collector::new(config);
    let mut emitted = Vec::new();
    let mut rank: HashMap<String, usize> = HashMap::new();
    let cascades = generator.cascade_events()?;
    for event in Replay::new(generator.replay_config(), cascades) {
        let source = source_name(event.source);
        match event.record {
            SourceRecord::Tweet(t) => {
                if collector.on_tweet(&source, &t, &mut emitted) == Outcome::Started {
                    let next = rank.len();
                    rank.insert(t.tweet_id.0.clone(), next);
                }
            }
            SourceRecord::End(e) => collector.on_end_of_source(&source, e.t, &mut emitted),
        }
    }
    Ok(Collected { emitted, rank })
}

/// One data set, collected and fitted.
struct Prepared {
    pairs: Vec<Pair>,
    cascades: usize,
    fits: usize,
    /// Generating (p, β, n*) by cascade id, on synthetic data.
    truth: HashMap<String, (f64, f64, f64)>,
    description: String,
}

fn describe(generator: &GeneratorArgs, estimator: &EstimatorArgs) -> String {
    let kernel = estimator.kernel;
    let what = match generator.data {
        DataSource::Synthetic => format!(
            "synthetic (seed {}, sizes from the NEWS index)",
            generator.seed
        ),
        DataSource::News => "NEWS data files".to_owned(),
        DataSource::Tideh | DataSource::Csv => format!(
            "{} files of {}",
            generator.data.name(),
            generator
                .data_dir
                .as_deref()
                .map_or_else(String::new, |d| d.display().to_string())
        ),
    };
    let marks = if estimator.mark_exponent == 1.0 {
        String::new()
    } else {
        format!(", marks^{}", estimator.mark_exponent)
    };
    format!("{what}, {kernel} kernel{marks}")
}

/// The time of day of each cascade's original tweet, in data set order, where the data set
/// gives it (TiDeH files).
fn day_phases(generator: &GeneratorArgs) -> anyhow::Result<Vec<Option<f64>>> {
    Ok(match (generator.data, generator.data_dir.as_deref()) {
        (DataSource::Tideh, Some(dir)) => tweetoscope_replay::files::tideh::read_dir(dir)?
            .into_iter()
            .map(|c| c.day_phase)
            .collect(),
        _ => Vec::new(),
    })
}

/// The TiDeH prediction of a partial series whose original tweet was posted at time of day
/// `phase`, with follower counts raised to `mark_exponent`.
fn tideh_prediction(
    s: &CascadeSeries,
    phase: f64,
    mark_exponent: f64,
    params: &tweetoscope_hawkes::tideh::TidehParams,
) -> Option<f64> {
    let t0 = s.tweets.first()?.0;
    let times: Vec<f64> = s.tweets.iter().map(|e| e.0 - t0).collect();
    let marks: Vec<f64> = s
        .tweets
        .iter()
        .map(|e| e.1.max(1.0).powf(mark_exponent))
        .collect();
    // The window's end, strictly after its last tweet.
    let t_obs = (s.t_obs as f64).max(times[times.len() - 1] + 1e-6);
    let fit = tweetoscope_hawkes::tideh::fit(&times, &marks, t_obs, phase, params).ok()?;
    fit.predicted_size(&times, &marks, t_obs, phase, params)
        .ok()
}

/// Replays, collects and fits one data set.
fn prepare(
    generator: &GeneratorArgs,
    cascade: &CascadeArgs,
    estimator: &EstimatorArgs,
) -> anyhow::Result<Prepared> {
    let collected = collect_offline(generator, cascade.collector_config())?;
    let first_id = generator.replay_config().first_tweet_id;
    let mut sizes: HashMap<(String, u64), u64> = HashMap::new();
    let mut series = Vec::new();
    for e in collected.emitted {
        match e {
            Emission::Series(s) => series.push(s),
            Emission::Size(s) => {
                sizes.insert((s.cid.0, s.t_obs.unwrap_or_default()), s.n_tot);
            }
        }
    }
    let config = estimator.fit_config()?;
    let kernel = estimator.kernel;
    let fits = parallel_map(&series, |s| {
        let times: Vec<f64> = s.tweets.iter().map(|e| e.0).collect();
        let marks = tweetoscope_predict::fit_marks(s, estimator.mark_exponent);
        tweetoscope_hawkes::fit_kernel(kernel, &times, &marks, s.t_obs as f64, &config).ok()
    });
    let fitted = fits.iter().filter(|f| f.is_some()).count();
    // The replay numbers cascades in data set order from its first id.
    let index_of = |s: &CascadeSeries| {
        s.cid.0.parse::<u64>().map_or(usize::MAX, |id| {
            usize::try_from(id.saturating_sub(first_id)).unwrap_or(usize::MAX)
        })
    };
    let phases = day_phases(generator)?;
    let tideh_params = tweetoscope_hawkes::tideh::TidehParams::default();
    let tideh = parallel_map(&series, |s| {
        let phase = phases.get(index_of(s)).copied().flatten()?;
        tideh_prediction(s, phase, estimator.mark_exponent, &tideh_params)
    });
    let pairs = series
        .into_iter()
        .zip(fits)
        .zip(tideh)
        .map(|((s, fit), tideh)| Pair {
            cid: s.cid.0.clone(),
            index: index_of(&s),
            n_tot: sizes.get(&(s.cid.0.clone(), s.t_obs)).copied().unwrap_or(0),
            series: s,
            fit,
            tideh,
        })
        .collect();
    let truth = match generator.data {
        DataSource::Synthetic => {
            let mut source = SyntheticCascades::new(generator.synthetic_config()?);
            let mut truth = HashMap::new();
            let mut id = first_id;
            while let Some(c) = source.next_with_truth() {
                truth.insert(id.to_string(), (c.p, c.beta, c.n_star));
                id += 1;
            }
            truth
        }
        _ => HashMap::new(),
    };
    Ok(Prepared {
        pairs,
        cascades: collected.rank.len(),
        fits: fitted,
        truth,
        description: describe(generator, estimator),
    })
}

/// Training and test pairs (every window) of one split.
struct Split<'a> {
    train: Vec<&'a Pair>,
    test: Vec<&'a Pair>,
}

/// Predictions of every method for one window's test pairs of one split.
struct SplitOutcome {
    /// `(predicted, true)` per method, aligned with [`METHODS`].
    predictions: Vec<Vec<(f64, f64)>>,
    /// `(lower, upper)` per test pair for the methods with intervals.
    intervals: Vec<Option<Vec<(f64, f64)>>>,
    alert_size: f64,
    train_pairs: usize,
    /// How the served model serves: `Some(true)` blended with the Hawkes size, `Some(false)`
    /// the growth model alone, `None` without a growth model.
    served_blend: Option<bool>,
}

fn usable(p: &Pair, window: u64) -> bool {
    p.series.t_obs == window && p.fit.is_some() && p.n_tot > 0
}

/// ω of one test pair and its [`INTERVAL_LEVEL`] interval.
type Omega = (f64, Option<(f64, f64)>);

/// Trains a forest on the training pairs and returns ω for the test pairs (1 without usable
/// training data or for a test pair whose features are not finite), with its interval.
fn forest_omegas(
    train: &[&Pair],
    test: &[&Pair],
    features: &dyn Fn(&Pair) -> Vec<f64>,
    params: &tweetoscope_forest::ForestParams,
) -> anyhow::Result<Vec<Omega>> {
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for p in train {
        let fit = p.fit();
        let w = tweetoscope_hawkes::random_forest_target(fit.n_obs, p.n_tot, fit.g1, fit.n_star);
        let x = features(p);
        if w.is_finite() && x.iter().all(|v| v.is_finite()) {
            rows.push(x);
            targets.push(tweetoscope_predict::target_from_omega(w));
        }
    }
    if rows.is_empty() {
        return Ok(vec![(1.0, None); test.len()]);
    }
    let forest = tweetoscope_forest::fit_rows(&rows, &targets, params)?;
    Ok(test
        .iter()
        .map(|p| {
            tweetoscope_predict::omega_with_interval(&forest, &features(p)).unwrap_or((1.0, None))
        })
        .collect())
}

/// A served size and its [`INTERVAL_LEVEL`] interval, if any.
type SizeWithInterval = (f64, Option<(f64, f64)>);

/// What the pipeline serves for the test pairs: a model trained by the learner's own
/// [`tweetoscope_predict::train`] on the training pairs' samples, installed in a model store and
/// applied by the predictor's [`tweetoscope_predict::predict`] to each test pair's parameters
/// message. Sizes and intervals, aligned with `test`; without training samples, the Hawkes
/// prediction alone.
fn served_predictions(
    window: u64,
    train: &[&Pair],
    test: &[&Pair],
    params: &tweetoscope_forest::ForestParams,
) -> anyhow::Result<(Vec<SizeWithInterval>, Option<bool>)> {
    let mut store = tweetoscope_predict::ModelStore::default();
    let model = served_model(window, train, params)?;
    if let Some(model) = &model {
        store.install(model).map_err(anyhow::Error::msg)?;
    }
    let blend = model.and_then(|m| m.growth.map(|g| g.blend));
    // A prediction the predictor refuses (n* ≥ 1) counts as an infinite error, as in `hawkes`.
    let served = test
        .iter()
        .map(|p| {
            let parameters = tweetoscope_predict::parameters_message(&p.series, p.fit());
            tweetoscope_predict::predict(window, &parameters, &store)
                .map_or((f64::INFINITY, None), |(_, prediction)| {
                    (prediction.size(), prediction.interval())
                })
        })
        .collect();
    Ok((served, blend))
}

/// The model the learner trains for `window` from the samples the predictor makes of the
/// training pairs (a prediction from each pair's parameters message, joined with its final
/// size); `None` without a usable sample.
fn served_model(
    window: u64,
    train: &[&Pair],
    params: &tweetoscope_forest::ForestParams,
) -> anyhow::Result<Option<tweetoscope_messages::ModelMessage>> {
    let no_model = tweetoscope_predict::ModelStore::default();
    let samples: Vec<tweetoscope_messages::Sample> = train
        .iter()
        .filter_map(|p| {
            let parameters = tweetoscope_predict::parameters_message(&p.series, p.fit());
            let (_, prediction) =
                tweetoscope_predict::predict(window, &parameters, &no_model).ok()?;
            let sample = prediction.sample(&parameters.cid, window, p.n_tot);
            (sample.w.is_finite() && sample.x.iter().all(|v| v.is_finite())).then_some(sample)
        })
        .collect();
    if samples.is_empty() {
        return Ok(None);
    }
    let mut trainer = tweetoscope_predict::Trainer::new(samples.len() as u64, samples.len());
    let job = samples
        .iter()
        .filter_map(|s| trainer.add(s))
        .last()
        .expect("a job after every sample");
    tweetoscope_predict::train(&job, params)
        .map(Some)
        .map_err(anyhow::Error::msg)
}

/// Every method's predictions on one window of one split.
fn predict_window(
    split: &Split<'_>,
    window: u64,
    alert_size: Option<f64>,
    params: &tweetoscope_forest::ForestParams,
) -> anyhow::Result<SplitOutcome> {
    let train: Vec<&Pair> = split
        .train
        .iter()
        .copied()
        .filter(|p| usable(p, window))
        .collect();
    let test: Vec<&Pair> = split
        .test
        .iter()
        .copied()
        .filter(|p| usable(p, window))
        .collect();
    let alert_size = alert_size.unwrap_or_else(|| {
        // One final size per training cascade (a cascade has the same size in every window).
        let finals: HashMap<&str, f64> = split
            .train
            .iter()
            .filter(|p| p.n_tot > 0)
            .map(|p| (p.cid.as_str(), p.n_tot as f64))
            .collect();
        tweetoscope_stats::quantile(&finals.into_values().collect::<Vec<_>>(), 0.9)
    });
    let truth: Vec<f64> = test.iter().map(|p| p.n_tot as f64).collect();
    let history: Vec<(f64, f64)> = train.iter().map(|p| (p.n_obs(), p.n_tot as f64)).collect();
    let size = |p: &Pair, omega: f64| p.fit().predicted_size(omega).unwrap_or(f64::INFINITY);
    let hawkes = |omegas: &[f64]| -> Vec<f64> {
        test.iter()
            .zip(omegas)
            .map(|(p, &omega)| size(p, omega))
            .collect()
    };
    // The guard rail of the served prediction: no cascade grows more, relative to what was
    // observed, than the most any training cascade grew.
    let growth_cap = tweetoscope_predict::growth_cap(
        history
            .iter()
            .filter(|(observed, _)| *observed > 0.0)
            .map(|(observed, truth)| truth / observed),
    );
    let capped = |p: &Pair, n: f64| tweetoscope_predict::cap_growth(n, p.n_obs(), growth_cap);
    // Sizes grow with ω, so an interval of ω maps to one of the size.
    let sizes_of = |omegas: &[Omega]| -> (Vec<f64>, Option<Vec<(f64, f64)>>) {
        let point = test
            .iter()
            .zip(omegas)
            .map(|(p, o)| capped(p, size(p, o.0)))
            .collect();
        let bounds = test
            .iter()
            .zip(omegas)
            .map(|(p, o)| {
                o.1.map(|(lo, hi)| (capped(p, size(p, lo)), capped(p, size(p, hi))))
            })
            .collect();
        (point, bounds)
    };
    let extended = |p: &Pair| extended_features(p.fit(), &p.series);
    let mut predictions = Vec::new();
    let mut intervals = Vec::new();
    let mut served_blend = None;
    for method in METHODS {
        let mut bounds = None;
        let predicted: Vec<f64> = match method {
            Method::Hawkes => hawkes(&vec![1.0; test.len()]),
            Method::HawkesForest => {
                let (served, blend) = served_predictions(window, &train, &test, params)?;
                served_blend = blend;
                bounds = served.iter().map(|s| s.1).collect();
                served.into_iter().map(|s| s.0).collect()
            }
            Method::HawkesForestExtended => {
                let (point, b) = sizes_of(&forest_omegas(&train, &test, &extended, params)?);
                bounds = b;
                point
            }
            Method::MedianRatio => {
                let ratio = tweetoscope_stats::median_ratio(&history);
                test.iter().map(|p| p.n_obs() * ratio).collect()
            }
            Method::LogLinear => {
                let line = LogLinear::fit(&history);
                test.iter()
                    .map(|p| line.map_or(f64::NAN, |l| l.predict(p.n_obs())))
                    .collect()
            }
            Method::Tideh => test.iter().map(|p| p.tideh.unwrap_or(f64::NAN)).collect(),
        };
        predictions.push(predicted.into_iter().zip(truth.iter().copied()).collect());
        intervals.push(bounds);
    }
    Ok(SplitOutcome {
        predictions,
        intervals,
        alert_size,
        train_pairs: train.len(),
        served_blend,
    })
}

/// The error figures of `(predicted, true)` pairs.
struct Figures {
    sorted: Vec<f64>,
    median: f64,
    mean: f64,
    within_10: f64,
    within_25: f64,
}

impl Figures {
    fn of(points: &[(f64, f64)]) -> Self {
        let errors: Vec<f64> = points
            .iter()
            .map(|&(p, t)| tweetoscope_stats::absolute_relative_error(p, t))
            .collect();
        let sorted = tweetoscope_stats::sorted(&errors);
        Self {
            median: tweetoscope_stats::quantile_sorted(&sorted, 0.5),
            mean: tweetoscope_stats::mean(&sorted),
            within_10: tweetoscope_stats::share_within(&sorted, 0.1),
            within_25: tweetoscope_stats::share_within(&sorted, 0.25),
            sorted,
        }
    }
}

/// Pools the outcomes of every split for one method.
fn method_report(method: Method, index: usize, outcomes: &[SplitOutcome]) -> MethodReport {
    let points: Vec<(f64, f64)> = outcomes
        .iter()
        .flat_map(|o| o.predictions[index].iter().copied())
        .collect();
    let pooled = Figures::of(&points);
    let per_split: Vec<(Figures, AlertScores)> = outcomes
        .iter()
        .map(|o| {
            let pts = &o.predictions[index];
            (Figures::of(pts), AlertScores::of(pts, o.alert_size))
        })
        .collect();
    let alerts = AlertScores::combine(&per_split.iter().map(|s| s.1).collect::<Vec<_>>());
    let folds = (outcomes.len() > 1).then(|| {
        let spread = |f: &dyn Fn(&(Figures, AlertScores)) -> f64| {
            Spread::of(&per_split.iter().map(f).collect::<Vec<_>>())
        };
        FoldFigures {
            median_are: spread(&|s| s.0.median),
            mean_are: spread(&|s| s.0.mean),
            within_10: spread(&|s| s.0.within_10),
            within_25: spread(&|s| s.0.within_25),
            alert_precision: spread(&|s| s.1.precision),
            alert_recall: spread(&|s| s.1.recall),
        }
    });
    let q = |p: f64| tweetoscope_stats::quantile_sorted(&pooled.sorted, p);
    // Alerts judged by one bound of the interval (`pick` chooses it), pooled over the splits.
    let bound_alerts = |pick: fn(&(f64, f64)) -> f64| {
        outcomes
            .iter()
            .map(|o| {
                o.intervals[index].as_ref().map(|b| {
                    let pairs: Vec<(f64, f64)> = b
                        .iter()
                        .zip(&o.predictions[index])
                        .map(|(bounds, (_, truth))| (pick(bounds), *truth))
                        .collect();
                    AlertScores::of(&pairs, o.alert_size)
                })
            })
            .collect::<Option<Vec<_>>>()
            .map(|parts| AlertScores::combine(&parts))
    };
    let lower_bound_alerts = bound_alerts(|b| b.0);
    let upper_bound_alerts = bound_alerts(|b| b.1);
    let interval = outcomes
        .iter()
        .map(|o| {
            o.intervals[index]
                .as_ref()
                .map(|b| b.iter().zip(&o.predictions[index]).collect::<Vec<_>>())
        })
        .collect::<Option<Vec<_>>>()
        .map(|parts| {
            let all: Vec<_> = parts.into_iter().flatten().collect();
            let inside = all
                .iter()
                .filter(|((lo, hi), (_, truth))| (*lo..=*hi).contains(truth))
                .count();
            let widths: Vec<f64> = all
                .iter()
                .map(|((lo, hi), (predicted, _))| (hi - lo) / predicted)
                .collect();
            IntervalReport {
                level: INTERVAL_LEVEL,
                coverage: if all.is_empty() {
                    f64::NAN
                } else {
                    inside as f64 / all.len() as f64
                },
                median_relative_width: tweetoscope_stats::median(&widths),
                lower_bound_alerts: lower_bound_alerts.expect("intervals in every split"),
                upper_bound_alerts: upper_bound_alerts.expect("intervals in every split"),
            }
        });
    MethodReport {
        method: method.name().into(),
        served: method.served(),
        predictions: points.len(),
        median_are: pooled.median,
        mean_are: pooled.mean,
        quantiles: [q(0.1), q(0.25), q(0.5), q(0.75), q(0.9)],
        within_10: pooled.within_10,
        within_25: pooled.within_25,
        alerts,
        interval,
        folds,
        sorted: pooled.sorted,
        points,
    }
}

fn recovery(pairs: &[&Pair], truth: &HashMap<String, (f64, f64, f64)>) -> Option<RecoveryReport> {
    if truth.is_empty() {
        return None;
    }
    let (mut ep, mut eb, mut en) = (Vec::new(), Vec::new(), Vec::new());
    for p in pairs {
        if let (Some(f), Some(&(tp, tb, tn))) = (&p.fit, truth.get(&p.cid)) {
            en.push(tweetoscope_stats::relative_error(f.n_star, tn));
            // p and β are the exponential kernel's own parameters.
            if f.kernel == Kernel::Exponential {
                ep.push(tweetoscope_stats::relative_error(f.params[0], tp));
                eb.push(tweetoscope_stats::relative_error(f.params[1], tb));
            }
        }
    }
    Some(RecoveryReport {
        median_rel_error_p: tweetoscope_stats::median(&ep),
        median_rel_error_beta: tweetoscope_stats::median(&eb),
        median_rel_error_n_star: tweetoscope_stats::median(&en),
    })
}

/// Runs the evaluation.
pub fn evaluate(args: &EvalArgs) -> anyhow::Result<EvalReport> {
    let started = std::time::Instant::now();
    let windows = args.cascade.collector_config().windows;
    let main = prepare(&args.generator, &args.cascade, &args.estimator)?;
    let other = args
        .test_generator()
        .map(|g| prepare(&g, &args.cascade, &args.estimator))
        .transpose()?;
    let n = main.cascades;
    let (splits, split, train_cascades, test_cascades): (Vec<Split>, String, usize, usize) =
        match (&other, args.folds) {
            (Some(test), _) => (
                vec![Split {
                    train: main.pairs.iter().collect(),
                    test: test.pairs.iter().collect(),
                }],
                "trained on the whole training data set, tested on the test data set".into(),
                n,
                test.cascades,
            ),
            (None, Some(k)) => {
                let k = k as usize;
                let splits = (0..k)
                    .map(|f| {
                        let (lo, hi) = (f * n / k, (f + 1) * n / k);
                        let held_out = |p: &&Pair| (lo..hi).contains(&p.index);
                        Split {
                            train: main.pairs.iter().filter(|p| !held_out(p)).collect(),
                            test: main.pairs.iter().filter(held_out).collect(),
                        }
                    })
                    .collect();
                (
                    splits,
                    format!(
                        "{k}-fold cross-validation over contiguous blocks in data set order; \
                         figures pooled over the folds, with the fold-to-fold spread"
                    ),
                    n - n / k,
                    n,
                )
            }
            (None, None) => {
                let cut = ((n as f64 * args.train_fraction).round() as usize).min(n);
                (
                    vec![Split {
                        train: main.pairs.iter().filter(|p| p.index < cut).collect(),
                        test: main.pairs.iter().filter(|p| p.index >= cut).collect(),
                    }],
                    format!(
                        "first {} of the cascades in data set order for training",
                        args.train_fraction
                    ),
                    cut,
                    n - cut,
                )
            }
        };
    let params = tweetoscope_predict::forest_params(args.trees as usize, args.forest_seed);
    let all_pairs: Vec<&Pair> = main
        .pairs
        .iter()
        .chain(other.iter().flat_map(|o| o.pairs.iter()))
        .collect();
    let mut reports = Vec::new();
    for &window in &windows {
        let outcomes = splits
            .iter()
            .map(|s| predict_window(s, window, args.alert_size, &params))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let in_window: Vec<&Pair> = all_pairs
            .iter()
            .copied()
            .filter(|p| p.series.t_obs == window)
            .collect();
        let failed = in_window.iter().filter(|p| p.fit.is_none()).count();
        let main_ok: Vec<&Pair> = main.pairs.iter().filter(|p| usable(p, window)).collect();
        reports.push(WindowReport {
            window,
            train_pairs: outcomes.iter().map(|o| o.train_pairs).sum::<usize>()
                / outcomes.len().max(1),
            test_pairs: outcomes.iter().map(|o| o.predictions[0].len()).sum(),
            fit_failure_share: if in_window.is_empty() {
                0.0
            } else {
                failed as f64 / in_window.len() as f64
            },
            alert_size: tweetoscope_stats::mean(
                &outcomes.iter().map(|o| o.alert_size).collect::<Vec<_>>(),
            ),
            served_blended: (
                outcomes
                    .iter()
                    .filter(|o| o.served_blend == Some(true))
                    .count(),
                outcomes.iter().filter(|o| o.served_blend.is_some()).count(),
            ),
            methods: METHODS
                .iter()
                .enumerate()
                // TiDeH only where the data set gives the time of day of the tweets.
                .filter(|&(i, &m)| {
                    m != Method::Tideh
                        || outcomes
                            .iter()
                            .any(|o| o.predictions[i].iter().any(|(p, _)| p.is_finite()))
                })
                .map(|(i, &m)| method_report(m, i, &outcomes))
                .collect(),
            recovery: recovery(&main_ok, &main.truth),
        });
    }
    let models = if args.out.is_some() {
        let mut models = Vec::new();
        for &window in &windows {
            let usable: Vec<&Pair> = main.pairs.iter().filter(|p| usable(p, window)).collect();
            models.extend(served_model(window, &usable, &params)?);
        }
        models
    } else {
        Vec::new()
    };
    let seconds = started.elapsed().as_secs_f64();
    let fits = main.fits + other.as_ref().map_or(0, |o| o.fits);
    Ok(EvalReport {
        dataset: main.description.clone(),
        test_dataset: other.as_ref().map(|o| o.description.clone()),
        split,
        folds: args.folds.map(|k| k as usize),
        cascades: n + other.as_ref().map_or(0, |o| o.cascades),
        train_cascades,
        test_cascades,
        seconds,
        fits_per_second: fits as f64 / seconds,
        windows: reports,
        models,
    })
}

impl EvalReport {
    /// The served method's report of each window.
    pub fn served(&self) -> impl Iterator<Item = (u64, &MethodReport)> {
        self.windows
            .iter()
            .filter_map(|w| w.methods.iter().find(|m| m.served).map(|m| (w.window, m)))
    }

    /// Writes report.json, report.svg and each window's `model-<T_obs>.json` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join("report.svg"), self.to_svg())?;
        for model in &self.models {
            std::fs::write(
                dir.join(format!("model-{}.json", model.t_obs)),
                serde_json::to_string(model)?,
            )?;
        }
        Ok(())
    }
}
