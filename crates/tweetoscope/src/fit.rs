//! `tweetoscope fit FILE.csv`: fits one cascade and prints the result as one JSON object.

use std::path::Path;

use serde::Serialize;
use tweetoscope_hawkes::{FitConfig, MarkDistribution, Prior};

use crate::config::FitArgs;

/// The printed fit.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FitOutput {
    /// Excitation parameter.
    pub p: f64,
    /// Decay rate in 1/s.
    pub beta: f64,
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
    /// "MAP" or "MLE".
    pub method: &'static str,
}

/// Reads a `t,m` CSV (header allowed; blank lines and `#` comments skipped), sorted by time.
pub fn read_events(path: &Path) -> anyhow::Result<Vec<(f64, f64)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed = match fields[..] {
            [t, m] => t.parse::<f64>().ok().zip(m.parse::<f64>().ok()),
            _ => None,
        };
        match parsed {
            Some((t, m)) if t.is_finite() && m.is_finite() && m >= 0.0 => events.push((t, m)),
            None if i == 0 => continue, // header
            _ => anyhow::bail!(
                "{}:{}: expected `t,m` with a finite time and a magnitude >= 0, found {line:?}",
                path.display(),
                i + 1
            ),
        }
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(events)
}

/// Fits the events of `args.file`.
pub fn fit_file(args: &FitArgs) -> anyhow::Result<FitOutput> {
    args.marks.validate()?;
    let mut events = read_events(&args.file)?;
    let Some(&(t0, _)) = events.first() else {
        anyhow::bail!("{} holds no tweet", args.file.display());
    };
    for e in &mut events {
        e.0 -= t0;
    }
    let horizon = match args.until {
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
    let config = FitConfig {
        marks: MarkDistribution::new(args.marks.mark_alpha, args.marks.mark_mu)?,
        prior: if args.mle {
            None
        } else {
            Some(Prior::default())
        },
        max_branching: args.marks.max_branching,
        ..FitConfig::default()
    };
    let times: Vec<f64> = events.iter().map(|e| e.0).collect();
    let marks: Vec<f64> = events.iter().map(|e| e.1).collect();
    let fit = tweetoscope_hawkes::fit(&times, &marks, horizon, &config)?;
    Ok(FitOutput {
        p: fit.p,
        beta: fit.beta,
        n_star: fit.n_star,
        g1: fit.g1,
        n_obs: fit.n_obs,
        n_pred: fit.predicted_size(1.0)?,
        horizon,
        method: if args.mle { "MLE" } else { "MAP" },
    })
}
