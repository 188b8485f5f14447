//! Final-size prediction and the random-forest training target.

use crate::HawkesError;

/// Predicted final size `N∞ = n + omega·G1/(1 − n*)`.
///
/// `omega` is the random-forest correction (1 without a model). Errors:
/// [`HawkesError::Supercritical`] if `n_star ≥ 1` (the expected size is infinite),
/// [`HawkesError::InvalidArgument`] if `n_star` is NaN or negative, `g1` is not finite or is
/// negative, or `omega` is not finite.
pub fn predict_final_size(
    n_obs: usize,
    g1: f64,
    n_star: f64,
    omega: f64,
) -> Result<f64, HawkesError> {
    if n_star.is_nan() || n_star < 0.0 {
        return Err(HawkesError::InvalidArgument {
            name: "n_star",
            value: n_star,
        });
    }
    if n_star >= 1.0 {
        return Err(HawkesError::Supercritical { n_star });
    }
    if !g1.is_finite() || g1 < 0.0 {
        return Err(HawkesError::InvalidArgument {
            name: "g1",
            value: g1,
        });
    }
    if !omega.is_finite() {
        return Err(HawkesError::InvalidArgument {
            name: "omega",
            value: omega,
        });
    }
    Ok(n_obs as f64 + omega * g1 / (1.0 - n_star))
}

/// Random-forest target `W = (n_tot − n)(1 − n*)/G1`: the `omega` for which
/// [`predict_final_size`] returns exactly `n_tot`.
///
/// No validation: the result is infinite or NaN when `g1 == 0`, so callers should drop such
/// samples (`W.is_finite()`).
pub fn random_forest_target(n_obs: usize, n_tot: u64, g1: f64, n_star: f64) -> f64 {
    (n_tot as f64 - n_obs as f64) * (1.0 - n_star) / g1
}
