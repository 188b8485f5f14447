//! `tweetoscope eval`: the collector → estimator → predictor → learner logic run offline over a
//! data set as fast as the CPU allows, with a train/test split in time, reporting per window the
//! ARE of the Hawkes prediction alone and corrected by random forests (with the pipeline's three
//! features and with extended features), the share of failed fits, and, on synthetic data, how well
//! the estimator recovers the generating parameters.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;
use tweetoscope_cascade::{Collector, Emission, Outcome};
use tweetoscope_hawkes::{Kernel, KernelFit};
use tweetoscope_messages::{CascadeSeries, SourceRecord};
use tweetoscope_replay::synthetic::SyntheticCascades;
use tweetoscope_replay::{source_name, Replay};

use crate::config::{CascadeArgs, ConfigError, DataSource, EstimatorArgs, GeneratorArgs};
use crate::stages::monitor::{mean, median};
use crate::stages::{estimator, generator};

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
    /// Share of the cascades, in order of start, used for training; the rest is the test set.
    #[arg(long, default_value_t = 0.5)]
    pub train_fraction: f64,
    /// Trees per forest.
    #[arg(long, default_value_t = 100)]
    pub trees: u64,
    /// Seed of the forests.
    #[arg(long, default_value_t = 1)]
    pub forest_seed: u64,
    /// Directory for report.json and report.svg (none: text report only).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
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
        Ok(())
    }
}

/// ARE figures of one prediction method on one window's test set.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MethodReport {
    /// `hawkes`, `hawkes+rf` or `hawkes+rf-extended`.
    pub method: String,
    /// Test predictions.
    pub predictions: usize,
    /// Median ARE.
    pub median_are: f64,
    /// Mean ARE.
    pub mean_are: f64,
    /// ARE at the 10th, 25th, 50th, 75th and 90th percentiles.
    pub quantiles: [f64; 5],
    /// Sorted AREs (for plots).
    #[serde(skip)]
    pub sorted: Vec<f64>,
}

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
    /// Training (cascade, window) pairs with a successful fit.
    pub train_pairs: usize,
    /// Test pairs with a successful fit.
    pub test_pairs: usize,
    /// Share of all pairs of this window whose fit failed.
    pub fit_failure_share: f64,
    /// One entry per method.
    pub methods: Vec<MethodReport>,
    /// Parameter recovery over all pairs (synthetic data only).
    pub recovery: Option<RecoveryReport>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvalReport {
    /// What was evaluated.
    pub dataset: String,
    /// Cascades replayed.
    pub cascades: usize,
    /// Cascades in the training part.
    pub train_cascades: usize,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Fits per second.
    pub fits_per_second: f64,
    /// Per window.
    pub windows: Vec<WindowReport>,
}

/// One (cascade, window) pair.
struct Pair {
    cid: String,
    rank: usize,
    series: CascadeSeries,
    n_tot: u64,
    fit: Option<KernelFit>,
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

fn are(predicted: f64, truth: u64) -> f64 {
    let truth = truth.max(1) as f64;
    (predicted - truth).abs() / truth
}

fn method_report(method: &str, mut values: Vec<f64>) -> MethodReport {
    values.sort_by(f64::total_cmp);
    let q = |p: f64| {
        if values.is_empty() {
            f64::NAN
        } else {
            values[((values.len() - 1) as f64 * p).round() as usize]
        }
    };
    MethodReport {
        method: method.into(),
        predictions: values.len(),
        median_are: median(&values),
        mean_are: mean(&values),
        quantiles: [q(0.1), q(0.25), q(0.5), q(0.75), q(0.9)],
        sorted: values,
    }
}

fn tweetoscope_forest_target(w: f64) -> f64 {
    crate::stages::learner::target_from_omega(w)
}

fn omega_from_target(y: f64) -> f64 {
    crate::stages::learner::omega_from_target(y)
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

/// Trains a forest on the training pairs and returns ω for the test pairs.
fn forest_omegas(
    train: &[&Pair],
    test: &[&Pair],
    features: &dyn Fn(&Pair) -> Vec<f64>,
    params: &tweetoscope_forest::ForestParams,
) -> anyhow::Result<Vec<f64>> {
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for p in train {
        let fit = p.fit.as_ref().expect("fitted pairs only");
        let w = tweetoscope_hawkes::random_forest_target(fit.n_obs, p.n_tot, fit.g1, fit.n_star);
        let x = features(p);
        if w.is_finite() && x.iter().all(|v| v.is_finite()) {
            rows.push(x);
            targets.push(tweetoscope_forest_target(w));
        }
    }
    if rows.is_empty() {
        return Ok(vec![1.0; test.len()]);
    }
    let forest = tweetoscope_forest::fit_rows(&rows, &targets, params)?;
    Ok(test
        .iter()
        .map(|p| {
            forest
                .try_predict_one(&features(p))
                .map_or(1.0, omega_from_target)
        })
        .collect())
}

/// What the collector logic emits over a whole replay, offline.
pub struct Collected {
    /// Series and sizes, in emission order.
    pub emitted: Vec<Emission>,
    /// Start rank of each cascade (0 for the first to start).
    pub rank: HashMap<String, usize>,
}

impl Collected {
    /// The (cascade, window) pairs that got a series: what the pipeline must predict.
    pub fn series_pairs(&self) -> std::collections::BTreeSet<(String, u64)> {
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
    let cascades = generator::cascades(generator)?;
    for event in Replay::new(generator::replay_config(generator), cascades) {
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

/// Runs the evaluation.
pub fn evaluate(args: &EvalArgs) -> anyhow::Result<EvalReport> {
    let started = std::time::Instant::now();
    let collector_config = args.cascade.collector_config();
    let windows = collector_config.windows.clone();
    let collected = collect_offline(&args.generator, collector_config)?;
    let (emitted, rank) = (collected.emitted, collected.rank);
    let mut sizes: HashMap<(String, u64), u64> = HashMap::new();
    let mut series = Vec::new();
    for e in emitted {
        match e {
            Emission::Series(s) => series.push(s),
            Emission::Size(s) => {
                sizes.insert((s.cid.0, s.t_obs.unwrap_or_default()), s.n_tot);
            }
        }
    }
    let config = estimator::fit_config(&args.estimator)?;
    let kernel = args.estimator.kernel;
    let fits = parallel_map(&series, |s| {
        let times: Vec<f64> = s.tweets.iter().map(|e| e.0).collect();
        let marks: Vec<f64> = s.tweets.iter().map(|e| e.1).collect();
        tweetoscope_hawkes::fit_kernel(kernel, &times, &marks, s.t_obs as f64, &config).ok()
    });
    let fitted = fits.iter().filter(|f| f.is_some()).count();
    let pairs: Vec<Pair> = series
        .into_iter()
        .zip(fits)
        .map(|(s, fit)| Pair {
            cid: s.cid.0.clone(),
            rank: rank.get(&s.cid.0).copied().unwrap_or(usize::MAX),
            n_tot: sizes.get(&(s.cid.0.clone(), s.t_obs)).copied().unwrap_or(0),
            series: s,
            fit,
        })
        .collect();
    // Truth of synthetic cascades, by cascade id (ids are given in replay order from 1).
    let truth: HashMap<String, (f64, f64, f64)> = match args.generator.data {
        DataSource::Synthetic => {
            let mut source = SyntheticCascades::new(generator::synthetic_config(&args.generator)?);
            let mut truth = HashMap::new();
            let mut id = generator::replay_config(&args.generator).first_tweet_id;
            while let Some(c) = source.next_with_truth() {
                truth.insert(id.to_string(), (c.p, c.beta, c.n_star));
                id += 1;
            }
            truth
        }
        DataSource::News => HashMap::new(),
    };
    let cut = (rank.len() as f64 * args.train_fraction).round() as usize;
    let params = tweetoscope_forest::ForestParams {
        n_trees: args.trees as usize,
        max_depth: 8,
        min_samples_leaf: 10,
        seed: args.forest_seed,
        ..Default::default()
    };
    let mut reports = Vec::new();
    for &window in &windows {
        let all: Vec<&Pair> = pairs.iter().filter(|p| p.series.t_obs == window).collect();
        let failed = all.iter().filter(|p| p.fit.is_none()).count();
        let ok: Vec<&Pair> = all
            .iter()
            .copied()
            .filter(|p| p.fit.is_some() && p.n_tot > 0)
            .collect();
        let train: Vec<&Pair> = ok.iter().copied().filter(|p| p.rank < cut).collect();
        let test: Vec<&Pair> = ok.iter().copied().filter(|p| p.rank >= cut).collect();
        let hawkes: Vec<f64> = test
            .iter()
            .map(|p| {
                let f = p.fit.as_ref().expect("fitted");
                are(f.predicted_size(1.0).unwrap_or(f64::INFINITY), p.n_tot)
            })
            .collect();
        let mut methods = vec![method_report("hawkes", hawkes)];
        let base = |p: &Pair| base_features(p.fit.as_ref().expect("fitted"));
        let extended = |p: &Pair| extended_features(p.fit.as_ref().expect("fitted"), &p.series);
        type Features<'a> = &'a dyn Fn(&Pair) -> Vec<f64>;
        let feature_sets: [(&str, Features); 2] =
            [("hawkes+rf", &base), ("hawkes+rf-extended", &extended)];
        for (name, features) in feature_sets {
            let omegas = forest_omegas(&train, &test, features, &params)?;
            let values = test
                .iter()
                .zip(omegas)
                .map(|(p, omega)| {
                    let f = p.fit.as_ref().expect("fitted");
                    are(f.predicted_size(omega).unwrap_or(f64::INFINITY), p.n_tot)
                })
                .collect();
            methods.push(method_report(name, values));
        }
        let recovery = if truth.is_empty() {
            None
        } else {
            let mut ep = Vec::new();
            let mut eb = Vec::new();
            let mut en = Vec::new();
            for p in &ok {
                if let (Some(f), Some(&(tp, tb, tn))) = (&p.fit, truth.get(&p.cid)) {
                    en.push((f.n_star - tn).abs() / tn);
                    // p and β are the exponential kernel's own parameters.
                    if f.kernel == Kernel::Exponential {
                        ep.push((f.params[0] - tp).abs() / tp);
                        eb.push((f.params[1] - tb).abs() / tb);
                    }
                }
            }
            Some(RecoveryReport {
                median_rel_error_p: median(&ep),
                median_rel_error_beta: median(&eb),
                median_rel_error_n_star: median(&en),
            })
        };
        reports.push(WindowReport {
            window,
            train_pairs: train.len(),
            test_pairs: test.len(),
            fit_failure_share: if all.is_empty() {
                0.0
            } else {
                failed as f64 / all.len() as f64
            },
            methods,
            recovery,
        });
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(EvalReport {
        dataset: match args.generator.data {
            DataSource::Synthetic => format!(
                "synthetic (seed {}, sizes from the NEWS index), {} kernel",
                args.generator.seed, args.estimator.kernel
            ),
            DataSource::News => format!("NEWS data files, {} kernel", args.estimator.kernel),
        },
        cascades: rank.len(),
        train_cascades: cut.min(rank.len()),
        seconds,
        fits_per_second: fitted as f64 / seconds,
        windows: reports,
    })
}

impl EvalReport {
    /// The report as a text table.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Evaluation on {}: {} cascades ({} for training, the rest for testing), {:.1} s, {:.0} fits/s",
            self.dataset, self.cascades, self.train_cascades, self.seconds, self.fits_per_second
        );
        for w in &self.windows {
            let _ = writeln!(
                out,
                "\nwindow {} s: {} training pairs, {} test pairs, fit failures {:.1}%",
                w.window,
                w.train_pairs,
                w.test_pairs,
                100.0 * w.fit_failure_share
            );
            let _ = writeln!(
                out,
                "{:<20} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
                "method", "median ARE", "mean ARE", "p10", "p25", "p50", "p75", "p90"
            );
            for m in &w.methods {
                let [a, b, c, d, e] = m.quantiles;
                let _ = writeln!(
                    out,
                    "{:<20} {:>10.3} {:>9.3} {a:>8.3} {b:>8.3} {c:>8.3} {d:>8.3} {e:>8.3}",
                    m.method, m.median_are, m.mean_are
                );
            }
            if let Some(r) = &w.recovery {
                let _ = writeln!(
                    out,
                    "parameter recovery (median relative error): p {:.3}, beta {:.3}, n* {:.3}",
                    r.median_rel_error_p, r.median_rel_error_beta, r.median_rel_error_n_star
                );
            }
        }
        out
    }

    /// Cumulative distributions of the ARE per window and method, as an SVG document.
    pub fn to_svg(&self) -> String {
        let (panel_w, panel_h, margin) = (360.0, 260.0, 50.0);
        let width = margin + self.windows.len().max(1) as f64 * (panel_w + margin);
        let height = panel_h + 2.0 * margin + 40.0;
        let colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"];
        let max_are = 2.0;
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        for (i, w) in self.windows.iter().enumerate() {
            let x0 = margin + i as f64 * (panel_w + margin);
            let y0 = margin;
            let _ = write!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle" font-size="14">ARE CDF, window {} s (test set)</text>"#,
                x0 + panel_w / 2.0,
                y0 - 15.0,
                w.window
            );
            let _ = write!(
                svg,
                r#"<rect x="{x0}" y="{y0}" width="{panel_w}" height="{panel_h}" fill="none" stroke="black"/>"#
            );
            for tick in 0..=4 {
                let v = tick as f64 * max_are / 4.0;
                let x = x0 + panel_w * v / max_are;
                let _ = write!(
                    svg,
                    r#"<text x="{x}" y="{}" text-anchor="middle">{v:.1}</text>"#,
                    y0 + panel_h + 15.0
                );
                let share = tick as f64 / 4.0;
                let y = y0 + panel_h * (1.0 - share);
                let _ = write!(
                    svg,
                    r#"<text x="{}" y="{}" text-anchor="end">{share:.2}</text>"#,
                    x0 - 5.0,
                    y + 4.0
                );
            }
            for (k, m) in w.methods.iter().enumerate() {
                if m.sorted.is_empty() {
                    continue;
                }
                let n = m.sorted.len() as f64;
                let mut points = String::new();
                for (j, v) in m.sorted.iter().enumerate() {
                    let x = x0 + panel_w * v.min(max_are) / max_are;
                    let y = y0 + panel_h * (1.0 - (j + 1) as f64 / n);
                    let _ = write!(points, "{x:.1},{y:.1} ");
                }
                let color = colors[k % colors.len()];
                let _ = write!(
                    svg,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>"#
                );
                let ly = y0 + panel_h + 35.0 + 0.0 * k as f64;
                let lx = x0 + k as f64 * 120.0;
                let _ = write!(
                    svg,
                    r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{} ({:.3})</text>"#,
                    lx + 15.0,
                    lx + 18.0,
                    ly + 4.0,
                    m.method,
                    m.median_are
                );
            }
        }
        svg.push_str("</svg>\n");
        svg
    }

    /// Writes report.json and report.svg into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join("report.svg"), self.to_svg())?;
        Ok(())
    }
}
