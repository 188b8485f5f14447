//! Power-law (Pareto) distribution of the marks (follower counts).

use crate::HawkesError;
use rand::Rng;

/// Pareto distribution of the marks: density ∝ m^(−alpha) for m ≥ mu.
///
/// Its mean is `mu·(alpha − 1)/(alpha − 2)`, finite only for `alpha > 2` (its variance is
/// infinite for `alpha ≤ 3`, as with the default `alpha = 2.4`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MarkDistribution {
    /// Exponent of the density (must be > 2).
    pub alpha: f64,
    /// Minimum mark (must be > 0).
    pub mu: f64,
}

impl Default for MarkDistribution {
    /// `alpha = 2.4`, `mu = 10` (mean 35).
    fn default() -> Self {
        Self {
            alpha: 2.4,
            mu: 10.0,
        }
    }
}

impl MarkDistribution {
    /// A validated distribution: `alpha` finite and > 2, `mu` finite and > 0.
    pub fn new(alpha: f64, mu: f64) -> Result<Self, HawkesError> {
        let d = Self { alpha, mu };
        d.validate()?;
        Ok(d)
    }

    /// Checks the invariants of [`MarkDistribution::new`] (the fields are public).
    pub fn validate(&self) -> Result<(), HawkesError> {
        if self.alpha.is_finite() && self.alpha > 2.0 && self.mu.is_finite() && self.mu > 0.0 {
            Ok(())
        } else {
            Err(HawkesError::InvalidMarkDistribution {
                alpha: self.alpha,
                mu: self.mu,
            })
        }
    }

    /// Mean mark `E[m] = mu·(alpha − 1)/(alpha − 2)`.
    pub fn mean(&self) -> f64 {
        self.mu * (self.alpha - 1.0) / (self.alpha - 2.0)
    }

    /// Median mark `mu·2^(1/(alpha − 1))`.
    pub fn median(&self) -> f64 {
        self.mu * 2f64.powf(1.0 / (self.alpha - 1.0))
    }

    /// `E[max(m, 1)^beta]`: the mean excitation factor `m^beta` of the power-law kernel (marks
    /// below 1 count as 1, as everywhere in the crate). For `mu ≥ 1` it is
    /// `mu^beta·(alpha − 1)/(alpha − 1 − beta)`. Infinite for `beta ≥ alpha − 1`; NaN if `beta`
    /// is NaN or negative.
    pub fn excitation_moment(&self, beta: f64) -> f64 {
        self.excitation_moment_with_log_derivative(beta).0
    }

    /// [`MarkDistribution::excitation_moment`] and `d ln E[max(m, 1)^beta]/d beta`.
    pub(crate) fn excitation_moment_with_log_derivative(&self, beta: f64) -> (f64, f64) {
        if beta.is_nan() || beta < 0.0 {
            return (f64::NAN, f64::NAN);
        }
        let a = self.alpha - 1.0;
        if beta >= a {
            return (f64::INFINITY, f64::INFINITY);
        }
        if self.mu >= 1.0 {
            let moment = (beta * self.mu.ln()).exp() * a / (a - beta);
            (moment, self.mu.ln() + 1.0 / (a - beta))
        } else {
            // P(m ≥ 1) = mu^a; below 1 the factor is 1.
            let tail = self.mu.powf(a);
            let moment = 1.0 - tail + tail * a / (a - beta);
            (moment, tail * a / ((a - beta) * (a - beta)) / moment)
        }
    }

    /// Draws one mark by inversion: `mu·U^(−1/(alpha − 1))` with `U` uniform in (0, 1].
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        // gen::<f64>() is in [0, 1); 1 − u is in (0, 1], so the power is finite.
        let u = 1.0 - rng.gen::<f64>();
        self.mu * u.powf(-1.0 / (self.alpha - 1.0))
    }
}
