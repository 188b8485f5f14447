//! The guard rail of a served prediction: a cascade is not predicted to grow, relative to what was
//! observed, more than the most any training cascade of the same window grew. Near n* = 1 the
//! Hawkes remaining size G1/(1 − n*) explodes (at the default cap n* = 0.99 it is 100·G1), and a
//! large G1 (accounts with millions of followers) does the same; the forest corrects what it has
//! seen, not what lies beyond its training data. Without a model's bound, the predictor uses the
//! largest growth among the cascades of the window whose truth it has joined
//! ([`crate::ModelStore::observe_growth`]).

/// The largest of the growths `n_tot / n_obs` (finite ones); `None` without any.
pub fn growth_cap(growths: impl IntoIterator<Item = f64>) -> Option<f64> {
    growths
        .into_iter()
        .filter(|g| g.is_finite())
        .fold(None, |max: Option<f64>, g| {
            Some(max.map_or(g, |m| m.max(g)))
        })
}

/// `predicted`, at most `n_obs × cap` (a cap below 1 counts as 1; a NaN prediction becomes the
/// bound, as `f64::min` gives); unchanged without a cap.
pub fn cap_growth(predicted: f64, n_obs: f64, cap: Option<f64>) -> f64 {
    cap.map_or(predicted, |cap| predicted.min(n_obs * cap.max(1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_the_largest_growth_seen() {
        assert_eq!(growth_cap([3.0, 2.5, f64::INFINITY]), Some(3.0));
        assert_eq!(growth_cap(std::iter::empty()), None);
    }

    #[test]
    fn an_exploding_prediction_is_held_at_the_cap_and_others_pass() {
        let cap = Some(3.0);
        assert_eq!(cap_growth(1e9, 20.0, cap), 60.0);
        assert_eq!(cap_growth(f64::INFINITY, 20.0, cap), 60.0);
        assert_eq!(cap_growth(f64::NAN, 20.0, cap), 60.0);
        assert_eq!(cap_growth(45.0, 20.0, cap), 45.0);
        assert_eq!(cap_growth(1e9, 20.0, None), 1e9);
    }
}
