//! `tweetoscope fit FILE.csv`: fits one cascade (either kernel) and prints the result as one JSON
//! object.

use serde::Serialize;
use tweetoscope_hawkes::Kernel;

use crate::config::FitArgs;

/// The printed fit. The kernel's own parameters are printed under their names: `p` and `beta`
/// for the exponential kernel, `K`, `beta` (the mark exponent), `c` and `theta` for the power law.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FitOutput {
    /// `exponential` or `power-law`.
    pub kernel: Kernel,
    /// Excitation parameter (exponential kernel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
    /// Scale `K` of the power-law kernel.
    #[serde(rename = "K", skip_serializing_if = "Option::is_none")]
    pub k: Option<f64>,
    /// Decay rate in 1/s (exponential kernel) or mark exponent (power law).
    pub beta: f64,
    /// Time offset `c` of the power-law kernel, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c: Option<f64>,
    /// Tail exponent `θ` of the power-law kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub theta: Option<f64>,
    /// Branching factor.
    pub n_star: f64,
    /// Expected direct children still to come.
    #[serde(rename = "G1")]
    pub g1: f64,
    /// Tweets used.
    pub n_obs: usize,
    /// Predicted final size (Hawkes alone, ω = 1).
    pub n_pred: f64,
    /// Horizon used, in seconds after the first tweet.
    pub horizon: f64,
    /// "MAP" or "MLE" (the power-law fit is always MLE).
    pub method: &'static str,
    /// With `--model`: the size the predictor serves with that model (what `alerts` and `stats`
    /// would carry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_served: Option<f64>,
    /// With `--model`: the lower bound of the served size's 80 % prediction interval (absent when
    /// the model has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_low: Option<f64>,
    /// With `--model`: the upper bound of that interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_high: Option<f64>,
    /// With `--model`: the model's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<u64>,
}

/// Reads a model as the learner publishes it on `models` (one JSON object).
fn read_model(path: &std::path::Path) -> anyhow::Result<tweetoscope_messages::ModelMessage> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("--model {}: cannot read it: {e}", path.display()))?;
    tweetoscope_messages::ModelMessage::parse(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "--model {}: not a model as the learner publishes it on `models` \
             (e.g. model-600.json written by `eval --out`): {e}",
            path.display()
        )
    })
}

/// Fits the events of `args.file`.
pub fn fit_file(args: &FitArgs) -> anyhow::Result<FitOutput> {
    args.marks.validate()?;
    crate::config::check_mark_exponent(args.marks.mark_exponent, args.kernel)?;
    let model = args.model.as_deref().map(read_model).transpose()?;
    let until =
        match (&model, args.until) {
            (Some(m), Some(t)) if t != m.t_obs as f64 => anyhow::bail!(
            "--until {t} with a model of the {w} s window ({}): give --until {w} or leave it out",
            args.model.as_ref().map_or(String::new(), |p| p.display().to_string()),
            w = m.t_obs
        ),
            (Some(m), _) => Some(m.t_obs as f64),
            (None, t) => t,
        };
    let mut events = tweetoscope_replay::files::csv::read(&args.file)?.events;
    let horizon = match until {
        Some(t) if t.is_finite() && t > 0.0 => {
            events.retain(|e| e.0 < t);
            t
        }
        Some(t) => anyhow::bail!("--until {t}: give a number of seconds > 0 after the first tweet"),
        None => {
            let last = events.last().map_or(0.0, |e| e.0);
            last + 1e-6 * last.max(1.0)
        }
    };
    let config = args.marks.fit_config(args.mle)?;
    let times: Vec<f64> = events.iter().map(|e| e.0).collect();
    let mut marks: Vec<f64> = events.iter().map(|e| e.1).collect();
    tweetoscope_hawkes::power_marks(&mut marks, args.marks.mark_exponent);
    let fit = tweetoscope_hawkes::fit_kernel(args.kernel, &times, &marks, horizon, &config)?;
    let param = |i: usize| fit.params.get(i).copied().unwrap_or(f64::NAN);
    let power_law = fit.kernel == Kernel::PowerLaw;
    let only = |yes: bool, i: usize| yes.then(|| param(i));
    let served = match &model {
        Some(model) => Some(served(model, &args.file, &events, &fit)?),
        None => None,
    };
    Ok(FitOutput {
        kernel: fit.kernel,
        p: only(!power_law, 0),
        k: only(power_law, 0),
        beta: param(1),
        c: only(power_law, 2),
        theta: only(power_law, 3),
        n_star: fit.n_star,
        g1: fit.g1,
        n_obs: fit.n_obs,
        n_pred: fit.predicted_size(1.0)?,
        horizon,
        method: if args.mle || power_law { "MLE" } else { "MAP" },
        n_served: served.as_ref().map(|s| s.size()),
        n_low: served.as_ref().and_then(|s| s.interval()).map(|i| i.0),
        n_high: served.as_ref().and_then(|s| s.interval()).map(|i| i.1),
        model_version: model.as_ref().map(|m| m.version),
    })
}

/// What the predictor serves with `model` for the series of `events` (all within the model's
/// window) and its fit: the estimator's parameters message, then the predictor's prediction.
fn served(
    model: &tweetoscope_messages::ModelMessage,
    file: &std::path::Path,
    events: &[(f64, f64)],
    fit: &tweetoscope_hawkes::KernelFit,
) -> anyhow::Result<tweetoscope_predict::Prediction> {
    let mut store = tweetoscope_predict::ModelStore::default();
    store
        .install(model)
        .map_err(|e| anyhow::anyhow!("--model: the predictor refuses this model: {e}"))?;
    let cid = file
        .file_stem()
        .map_or_else(|| "cascade".into(), |s| s.to_string_lossy().into_owned());
    let series = tweetoscope_messages::CascadeSeries::new(
        tweetoscope_messages::CascadeId(cid),
        String::new(),
        model.t_obs,
        events.to_vec(),
    );
    let parameters = tweetoscope_predict::parameters_message(&series, fit);
    let (_, prediction) = tweetoscope_predict::predict(model.t_obs, &parameters, &store)
        .map_err(|e| anyhow::anyhow!("the predictor refuses this fit: {e}"))?;
    Ok(prediction)
}
