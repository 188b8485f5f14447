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

    /// The distribution of `m^exponent` for `exponent` in (0, 1]: if `m` is Pareto(`alpha`,
    /// `mu`), `m^g` is Pareto(`1 + (alpha − 1)/g`, `mu^g`), whose mean is
    /// [`MarkDistribution::excitation_moment`]`(g)` (exact for `mu ≥ 1`). Fitting the exponential
    /// kernel on marks raised to `g` with this distribution keeps `n* = p·E[m^g]` consistent.
    pub fn powered(&self, exponent: f64) -> Result<Self, HawkesError> {
        if !(exponent > 0.0 && exponent <= 1.0) {
            return Err(HawkesError::InvalidArgument {
                name: "mark exponent",
                value: exponent,
            });
        }
        Self::new(1.0 + (self.alpha - 1.0) / exponent, self.mu.powf(exponent))
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

/// Raises marks to `exponent` in place (marks below 1 count as 1, as in the likelihood): the
/// sublinear excitation `m^g` of [`MarkDistribution::powered`]. `exponent = 1` leaves them as
/// they are.
pub fn power_marks(marks: &mut [f64], exponent: f64) {
    if exponent != 1.0 {
        for m in marks {
            *m = m.max(1.0).powf(exponent);
        }
    }
}

#[cfg(test)]
mod powered_tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn powered_marks_follow_the_powered_distribution() {
        let d = MarkDistribution::default();
        assert_eq!(d.powered(1.0).unwrap(), d);
        // Exponents with a finite-variance powered distribution (alpha' > 3), so the sample
        // mean settles.
        for g in [0.3, 0.5] {
            let p = d.powered(g).unwrap();
            assert!(
                (p.mean() - d.excitation_moment(g)).abs() < 1e-9 * p.mean(),
                "{g}"
            );
            // Sampled m^g has that mean and that minimum.
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let mut sample: Vec<f64> = (0..200_000).map(|_| d.sample(&mut rng)).collect();
            power_marks(&mut sample, g);
            let mean = sample.iter().sum::<f64>() / sample.len() as f64;
            assert!(
                (mean / p.mean() - 1.0).abs() < 0.02,
                "g = {g}: {mean} vs {}",
                p.mean()
            );
            let min = sample.iter().copied().fold(f64::INFINITY, f64::min);
            assert!(min >= p.mu - 1e-9, "{min} below {}", p.mu);
        }
        for bad in [0.0, -0.5, 1.5, f64::NAN] {
            assert!(d.powered(bad).is_err(), "{bad}");
        }
        let mut marks = [0.5, 4.0, 100.0];
        power_marks(&mut marks, 0.5);
        assert_eq!(marks, [1.0, 2.0, 10.0]);
    }
}
