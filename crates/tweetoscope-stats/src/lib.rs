//! Statistics shared by every Tweetoscope report, so that a "median" means the same thing in
//! `eval`, `bench`, `run`'s summary and the monitor's pushes.
//!
//! - Quantiles interpolate linearly between order statistics (Hyndman & Fan type 7, the default
//!   of R and NumPy): the median of an even number of values is the mean of the two middle ones.
//!   Empty input gives NaN.
//! - The error of a prediction is the absolute relative error, ARE = |N̂ − N| / N.
//! - Two baselines of popularity prediction need no model of the process: the median ratio of
//!   final to observed size, and the log-linear regression of final size on observed size
//!   (Szabo & Huberman 2010).
//! - Popularity alerts are scored by precision and recall at a size threshold.
//! - [`MedianRegression`]: a linear model of the conditional median (least absolute deviations).

mod median_regression;

use serde::Serialize;

pub use median_regression::{conformal_bounds, cross_fitted_residuals, MedianRegression};

/// The `q` quantile (`q` clamped to [0, 1]) of values sorted in increasing order; NaN when empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    let h = last as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    let (a, b) = (sorted[lo], sorted[hi]);
    if lo == hi || a == b {
        a
    } else {
        a + (h - lo as f64) * (b - a)
    }
}

/// The values sorted in increasing order (NaN last).
pub fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// The `q` quantile of values in any order; NaN when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    quantile_sorted(&sorted(values), q)
}

/// The median (the mean of the two middle values for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

/// The arithmetic mean; NaN when empty.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// The sample standard deviation (divisor n − 1); NaN with fewer than 2 values.
pub fn std_dev(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return f64::NAN;
    }
    let m = mean(values);
    let ss: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    (ss / (values.len() - 1) as f64).sqrt()
}

/// Mean and sample standard deviation of one figure over repetitions (e.g. cross-validation
/// folds). NaN values (a figure undefined in some fold) are left out of both.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// Mean over the repetitions where the figure is defined.
    pub mean: f64,
    /// Sample standard deviation over the same repetitions.
    pub sd: f64,
}

impl Spread {
    /// The spread of `values`, skipping NaN.
    pub fn of(values: &[f64]) -> Self {
        let defined: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        Self {
            mean: mean(&defined),
            sd: std_dev(&defined),
        }
    }
}

/// Absolute relative error |predicted − truth| / truth; a truth below 1 counts as 1, and a
/// prediction that is not finite has an infinite error.
pub fn absolute_relative_error(predicted: f64, truth: f64) -> f64 {
    if !predicted.is_finite() {
        return f64::INFINITY;
    }
    relative_error(predicted, truth.max(1.0))
}

/// Relative error |estimate − truth| / truth, with no floor on the truth: how far an estimated
/// parameter lies from the one that generated the data.
pub fn relative_error(estimate: f64, truth: f64) -> f64 {
    (estimate - truth).abs() / truth
}

/// Share of the errors at most `tolerance` (e.g. 0.1: predicted within 10 %); NaN when empty.
pub fn share_within(errors: &[f64], tolerance: f64) -> f64 {
    if errors.is_empty() {
        return f64::NAN;
    }
    errors.iter().filter(|&&e| e <= tolerance).count() as f64 / errors.len() as f64
}

/// The median-ratio baseline: final size = observed size × the median of final/observed over
/// the training pairs `(observed, final)`. NaN ratio when there is no usable pair.
pub fn median_ratio(training: &[(f64, f64)]) -> f64 {
    let ratios: Vec<f64> = training
        .iter()
        .filter(|(n, _)| *n > 0.0)
        .map(|(n, total)| total / n)
        .filter(|r| r.is_finite())
        .collect();
    median(&ratios)
}

/// Least-squares line `ln final = intercept + slope·ln observed` (Szabo & Huberman's log-linear
/// model with a free slope).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LogLinear {
    /// Intercept of the line in log space.
    pub intercept: f64,
    /// Slope of the line in log space.
    pub slope: f64,
}

impl LogLinear {
    /// Fits the line to training pairs `(observed, final)` with both sizes > 0. With fewer than
    /// two distinct observed sizes the slope is 1 and the intercept the mean log ratio; with no
    /// usable pair, `None`.
    pub fn fit(training: &[(f64, f64)]) -> Option<Self> {
        let logs: Vec<(f64, f64)> = training
            .iter()
            .filter(|(n, total)| *n > 0.0 && *total > 0.0)
            .map(|(n, total)| (n.ln(), total.ln()))
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        if logs.is_empty() {
            return None;
        }
        let k = logs.len() as f64;
        let mx = logs.iter().map(|p| p.0).sum::<f64>() / k;
        let my = logs.iter().map(|p| p.1).sum::<f64>() / k;
        let sxx: f64 = logs.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
        let sxy: f64 = logs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let slope = if sxx > 1e-12 * k { sxy / sxx } else { 1.0 };
        Some(Self {
            intercept: my - slope * mx,
            slope,
        })
    }

    /// The predicted final size for `observed` tweets.
    pub fn predict(&self, observed: f64) -> f64 {
        (self.intercept + self.slope * observed.max(1.0).ln()).exp()
    }
}

/// How well popularity alerts ("predicted to reach `threshold`") match the cascades that did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AlertScores {
    /// The size threshold.
    pub threshold: f64,
    /// Cascades predicted at or above the threshold (alerts raised).
    pub alerts: usize,
    /// Cascades whose true size is at or above the threshold.
    pub popular: usize,
    /// Alerts whose cascade was popular.
    pub true_alerts: usize,
    /// `true_alerts / alerts` (NaN without alerts).
    pub precision: f64,
    /// `true_alerts / popular` (NaN without popular cascades).
    pub recall: f64,
}

impl AlertScores {
    /// Scores `(predicted, truth)` pairs at `threshold`.
    pub fn of(pairs: &[(f64, f64)], threshold: f64) -> Self {
        let alerts = pairs.iter().filter(|(p, _)| *p >= threshold).count();
        let popular = pairs.iter().filter(|(_, t)| *t >= threshold).count();
        let true_alerts = pairs
            .iter()
            .filter(|(p, t)| *p >= threshold && *t >= threshold)
            .count();
        Self::from_counts(threshold, alerts, popular, true_alerts)
    }

    fn from_counts(threshold: f64, alerts: usize, popular: usize, true_alerts: usize) -> Self {
        let ratio = |a: usize, b: usize| {
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        Self {
            threshold,
            alerts,
            popular,
            true_alerts,
            precision: ratio(true_alerts, alerts),
            recall: ratio(true_alerts, popular),
        }
    }

    /// Scores of disjoint test sets (e.g. folds) taken together: counts summed, ratios
    /// recomputed; the threshold is the mean of theirs.
    pub fn combine(parts: &[AlertScores]) -> Self {
        let sum = |f: fn(&AlertScores) -> usize| parts.iter().map(f).sum::<usize>();
        let thresholds: Vec<f64> = parts.iter().map(|p| p.threshold).collect();
        Self::from_counts(
            mean(&thresholds),
            sum(|p| p.alerts),
            sum(|p| p.popular),
            sum(|p| p.true_alerts),
        )
    }
}

/// The first [`FirstValues::capacity`] values of a stream, kept exactly for quantiles (e.g. the
/// latencies of a benchmark run); shared between threads.
#[derive(Debug)]
pub struct FirstValues {
    values: std::sync::Mutex<Vec<f64>>,
    capacity: usize,
}

impl FirstValues {
    /// Keeps at most `capacity` values.
    pub fn new(capacity: usize) -> Self {
        Self {
            values: std::sync::Mutex::new(Vec::new()),
            capacity,
        }
    }

    /// Most values kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keeps `value` while fewer than the capacity are kept.
    pub fn record(&self, value: f64) {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        if values.len() < self.capacity {
            values.push(value);
        }
    }

    /// The values kept so far, in the order they came.
    pub fn snapshot(&self) -> Vec<f64> {
        self.values
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_odd_even_and_empty_inputs() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert!(quantile(&[], 0.9).is_nan());
        assert_eq!(median(&[7.0]), 7.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        let v = [10.0, 20.0, 30.0, 40.0, 50.0];
        assert_eq!(quantile(&v, 0.0), 10.0);
        assert_eq!(quantile(&v, 1.0), 50.0);
        assert_eq!(quantile(&v, 0.25), 20.0);
        assert!((quantile(&v, 0.1) - 14.0).abs() < 1e-12);
        assert!((quantile(&v, 0.9) - 46.0).abs() < 1e-12);
        // Out-of-range q is clamped; infinities stay at their end.
        assert_eq!(quantile(&v, 2.0), 50.0);
        assert_eq!(quantile(&[1.0, f64::INFINITY], 0.0), 1.0);
        assert_eq!(median(&[1.0, 2.0, f64::INFINITY]), 2.0);
    }

    #[test]
    fn median_and_p50_agree() {
        let v = [0.9, 0.1, 0.5, 0.7, 0.3, 0.2];
        assert_eq!(median(&v), quantile_sorted(&sorted(&v), 0.5));
        assert!((median(&v) - 0.4).abs() < 1e-12);
    }

    #[test]
    fn mean_spread_and_errors() {
        assert!(mean(&[]).is_nan());
        assert_eq!(mean(&[1.0, 2.0, 6.0]), 3.0);
        assert!(std_dev(&[1.0]).is_nan());
        assert!((std_dev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]) - 2.138_089_935).abs() < 1e-9);
        let s = Spread::of(&[1.0, f64::NAN, 3.0]);
        assert_eq!(s.mean, 2.0);
        assert!((s.sd - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(absolute_relative_error(150.0, 100.0), 0.5);
        assert_eq!(absolute_relative_error(50.0, 100.0), 0.5);
        assert_eq!(absolute_relative_error(f64::NAN, 100.0), f64::INFINITY);
        assert_eq!(absolute_relative_error(2.0, 0.0), 1.0);
        // Without the floor: a branching factor of 0.25 recovered as 0.375.
        assert_eq!(relative_error(0.375, 0.25), 0.5);
        assert_eq!(share_within(&[0.05, 0.1, 0.2, 0.5], 0.1), 0.5);
        assert!(share_within(&[], 0.1).is_nan());
    }

    #[test]
    fn baselines_on_a_known_answer() {
        // Final = 3 × observed for three cascades, 5 × for one: the median ratio is 3.
        let train = [(10.0, 30.0), (20.0, 60.0), (5.0, 15.0), (8.0, 40.0)];
        assert_eq!(median_ratio(&train), 3.0);
        assert!(median_ratio(&[]).is_nan());
        // final = e² · observed^0.5 exactly.
        let train: Vec<(f64, f64)> = [4.0, 16.0, 100.0, 400.0]
            .iter()
            .map(|&n: &f64| (n, (2.0 + 0.5 * n.ln()).exp()))
            .collect();
        let line = LogLinear::fit(&train).unwrap();
        assert!((line.slope - 0.5).abs() < 1e-12, "{line:?}");
        assert!((line.intercept - 2.0).abs() < 1e-12, "{line:?}");
        assert!((line.predict(25.0) - 5.0 * 2f64.exp()).abs() < 1e-9);
        // One observed size only: slope 1, the mean log ratio.
        let line = LogLinear::fit(&[(10.0, 20.0), (10.0, 80.0)]).unwrap();
        assert_eq!(line.slope, 1.0);
        assert!((line.predict(10.0) - 40.0).abs() < 1e-9);
        assert!(LogLinear::fit(&[(0.0, 5.0)]).is_none());
    }

    #[test]
    fn alert_precision_and_recall() {
        // (predicted, truth) at threshold 100: alerts on 3 cascades, 2 of them popular; 4
        // popular cascades in all.
        let pairs = [
            (150.0, 120.0),
            (110.0, 90.0),
            (100.0, 100.0),
            (50.0, 300.0),
            (20.0, 200.0),
            (10.0, 5.0),
        ];
        let s = AlertScores::of(&pairs, 100.0);
        assert_eq!((s.alerts, s.popular, s.true_alerts), (3, 4, 2));
        assert!((s.precision - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.recall, 0.5);
        let none = AlertScores::of(&[(1.0, 500.0)], 100.0);
        assert!(none.precision.is_nan());
        assert_eq!(none.recall, 0.0);
        let both = AlertScores::combine(&[s, none, AlertScores::of(&[(300.0, 10.0)], 200.0)]);
        assert_eq!((both.alerts, both.popular, both.true_alerts), (4, 5, 2));
        assert_eq!(both.precision, 0.5);
        assert!((both.threshold - 400.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn first_values_keeps_the_first_ones_up_to_its_capacity() {
        let kept = FirstValues::new(3);
        for v in [5.0, 1.0, 4.0, 2.0] {
            kept.record(v);
        }
        assert_eq!(kept.snapshot(), [5.0, 1.0, 4.0]);
        assert_eq!(kept.capacity(), 3);
    }
}
