//! The estimator's side: the marks a fit uses, the check of a series before fitting, and the
//! parameters message of a fit.

use tweetoscope_messages::{CascadeParameters, CascadeSeries, KernelKind, Malformed, SeriesShape};

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
        shape: Some(series_shape(series)),
    }
}

/// The [`SeriesShape`] of a non-empty series: the share of its tweets in the second half of the
/// window and the mean square root of their follower counts (each at least 1).
pub fn series_shape(series: &CascadeSeries) -> SeriesShape {
    let n = series.tweets.len().max(1) as f64;
    let start = series.tweets.first().map_or(0.0, |e| e.0);
    let half = series.t_obs as f64 / 2.0;
    let late = series.tweets.iter().filter(|e| e.0 - start >= half).count() as f64;
    let sqrt_followers = series
        .tweets
        .iter()
        .map(|e| e.1.max(1.0).sqrt())
        .sum::<f64>()
        / n;
    SeriesShape {
        late_share: late / n,
        sqrt_followers: sqrt_followers.max(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shape_says_how_late_and_how_far_reaching_the_tweets_are() {
        // Window of 600 s starting at t = 100: tweets at +0, +100, +300 and +599 s, two of them
        // in the second half; followers 0 (counted as 1), 4, 9 and 16.
        let series = CascadeSeries::parse(
            br#"{"type":"serie","cid":"c","msg":"","T_obs":600,
                 "tweets":[[100,0],[200,4],[400,9],[699,16]]}"#,
        )
        .unwrap();
        let shape = series_shape(&series);
        assert_eq!(shape.late_share, 0.5);
        assert!((shape.sqrt_followers - (1.0 + 2.0 + 3.0 + 4.0) / 4.0).abs() < 1e-12);
    }
}
