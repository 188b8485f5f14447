//! The estimator's side: the marks a fit uses, the check of a series before fitting, and the
//! parameters message of a fit.

use tweetoscope_messages::{CascadeParameters, CascadeSeries, KernelKind, Malformed};

/// The marks a fit uses: the follower counts raised to `--mark-exponent`.
pub fn fit_marks(series: &CascadeSeries, exponent: f64) -> Vec<f64> {
    let mut marks: Vec<f64> = series.tweets.iter().map(|e| e.1).collect();
    tweetoscope_hawkes::power_marks(&mut marks, exponent);
    marks
}

/// Checks a series before fitting: it must lie inside its window.
pub fn check_series(series: &CascadeSeries) -> Result<(), Malformed> {
    let first = series.tweets[0].0;
    let last = series.tweets[series.tweets.len() - 1].0;
    if last - first >= series.t_obs as f64 {
        return Err(Malformed::new(format!(
            "`tweets` span {} s, not inside the window T_obs = {} s",
            last - first,
            series.t_obs
        )));
    }
    Ok(())
}

/// The parameters message of a fitted series.
pub fn parameters_message(
    series: &CascadeSeries,
    fit: &tweetoscope_hawkes::KernelFit,
) -> CascadeParameters {
    CascadeParameters {
        cid: series.cid.clone(),
        msg: series.msg.clone(),
        t_obs: Some(series.t_obs),
        n_obs: fit.n_obs as u64,
        n_supp: fit.g1 / (1.0 - fit.n_star),
        params: fit.params.clone(),
        kernel: match fit.kernel {
            tweetoscope_hawkes::Kernel::Exponential => KernelKind::Exponential,
            tweetoscope_hawkes::Kernel::PowerLaw => KernelKind::PowerLaw,
        },
        n_star: fit.n_star,
        g1: fit.g1,
    }
}
