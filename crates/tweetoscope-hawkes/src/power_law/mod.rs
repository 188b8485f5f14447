//! Marked Hawkes process with a power-law time kernel (Mishra et al., CIKM 2016).
//!
//! Intensity `λ(t) = Σ_{t_i<t} K·m_i^β·(t − t_i + c)^{−(1+θ)}`, marks below 1 counted as 1, with
//! `K > 0`, a mark exponent `β ≥ 0` (not a decay rate here), `c > 0` (seconds) and `θ > 0`. An
//! event of mark `m` has `K·m^β·c^{−θ}/θ` direct children on average, so the branching factor
//! is `n* = K·E[m^β]·c^{−θ}/θ`, finite for the Pareto marks of [`MarkDistribution`] when
//! `β < alpha − 1`.
//!
//! The log-likelihood on `[t₁, T]` is `Σ_{i≥2} ln λ(t_i) − ∫ λ`. The compensator is exact in
//! O(n): `Σ_i K·m_i^β·[c^{−θ} − (T − t_i + c)^{−θ}]/θ`. The `ln λ(t_i)` terms use the
//! sum-of-exponentials approximation of [`kernel_approximation`] on a fixed grid of
//! [`RATES`] decay rates, so one evaluation costs O(n·[`RATES`]) multiply-adds and `n`
//! logarithms instead of the O(n²) of [`log_likelihood_naive`]. Its relative accuracy is about
//! 1e−4 of the kernel, which moves the log-likelihood by far less than its statistical noise
//! (see `tests/power_law.rs` for the measured figures).
//!
//! The fit ([`fit`]) maximises the likelihood (no prior: the [`FitConfig`] prior is on the
//! exponential kernel's parameters and is not used here) over `(β, c, θ)`, each mapped into
//! its box by a logistic function, with the branching factor profiled out in closed form and
//! clamped into `[N_STAR_MIN, max_branching]`, so the cap holds by construction; `K` follows as
//! `n*·θ·c^θ/E[m^β]`. Prediction is the same as for the exponential kernel:
//! `N̂ = n + ω·G1/(1 − n*)` with `G1 = Σ_i K·m_i^β·(T − t_i + c)^{−θ}/θ`, the expected number of
//! direct children still to come from the observed events.
//!
//! ```
//! use rand::{rngs::StdRng, SeedableRng};
//! use tweetoscope_hawkes::power_law::{self, PowerLawParams};
//! use tweetoscope_hawkes::{FitConfig, MarkDistribution};
//!
//! let marks = MarkDistribution::default();
//! let truth = PowerLawParams::from_branching(0.5, 0.8, 60.0, 0.6, &marks)?;
//! let mut rng = StdRng::seed_from_u64(7);
//! let events = power_law::simulate_cascade_from(2e4, &truth, &marks, 3600.0, 10_000, &mut rng);
//! let (times, followers): (Vec<f64>, Vec<f64>) = events.into_iter().unzip();
//!
//! let estimate = power_law::fit(&times, &followers, 3600.0, &FitConfig::default())?;
//! assert!(estimate.n_star < 0.99);
//! assert!(estimate.predicted_size(1.0)? >= times.len() as f64);
//! # Ok::<(), tweetoscope_hawkes::HawkesError>(())
//! ```
//!
//! [`FitConfig`]: crate::FitConfig

mod approx;
mod fit;
mod likelihood;
mod simulate;

pub use approx::{kernel_approximation, rates, RATES, RATE_MIN};
pub use fit::{fit, fit_cascade, fit_with_bounds, PowerLawBounds, PowerLawFit, N_STAR_MIN};
pub use likelihood::{
    g1, log_likelihood, log_likelihood_naive, log_likelihood_with_gradient, PowerLawCascade,
};
pub use simulate::{simulate_cascade, simulate_cascade_from};

use crate::{HawkesError, MarkDistribution};

/// Parameters `(K, β, c, θ)` of the power-law kernel `φ(m, τ) = K·m^β·(τ + c)^{−(1+θ)}`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PowerLawParams {
    /// Scale `K > 0`.
    pub k: f64,
    /// Mark exponent `β ≥ 0`.
    pub beta: f64,
    /// Time offset `c > 0` (seconds): the kernel is flat for delays below about `c`.
    pub c: f64,
    /// Tail exponent `θ > 0`: the kernel decays like `τ^{−(1+θ)}`.
    pub theta: f64,
}

impl PowerLawParams {
    /// Validated parameters (see [`PowerLawParams::validate`]).
    pub fn new(k: f64, beta: f64, c: f64, theta: f64) -> Result<Self, HawkesError> {
        let params = Self { k, beta, c, theta };
        params.validate()?;
        Ok(params)
    }

    /// The parameters with branching factor `n_star` under `marks`:
    /// `K = n_star·θ·c^θ/E[m^β]`. Errors if `n_star` is not finite and positive, if the other
    /// parameters are invalid, or if `E[m^β]` is infinite (`beta ≥ alpha − 1`).
    pub fn from_branching(
        n_star: f64,
        beta: f64,
        c: f64,
        theta: f64,
        marks: &MarkDistribution,
    ) -> Result<Self, HawkesError> {
        marks.validate()?;
        if !(n_star.is_finite() && n_star > 0.0) {
            return Err(HawkesError::InvalidArgument {
                name: "n_star",
                value: n_star,
            });
        }
        // Validates beta, c and theta (K = 1 is a placeholder).
        Self::new(1.0, beta, c, theta)?;
        let moment = marks.excitation_moment(beta);
        if !moment.is_finite() {
            return Err(HawkesError::InvalidArgument {
                name: "beta",
                value: beta,
            });
        }
        Self::new(
            n_star * theta * (theta * c.ln()).exp() / moment,
            beta,
            c,
            theta,
        )
    }

    /// Checks `k`, `c`, `theta` finite and positive and `beta` finite and non-negative
    /// ([`HawkesError::InvalidArgument`] names the first offending field).
    pub fn validate(&self) -> Result<(), HawkesError> {
        let fields = [
            ("k", self.k, false),
            ("beta", self.beta, true),
            ("c", self.c, false),
            ("theta", self.theta, false),
        ];
        for (name, value, zero_ok) in fields {
            let ok = value.is_finite() && (value > 0.0 || (zero_ok && value == 0.0));
            if !ok {
                return Err(HawkesError::InvalidArgument { name, value });
            }
        }
        Ok(())
    }

    pub(crate) fn is_valid(&self) -> bool {
        self.validate().is_ok()
    }

    /// Branching factor `n* = K·E[m^β]·c^{−θ}/θ` (infinite if `beta ≥ alpha − 1`).
    pub fn n_star(&self, marks: &MarkDistribution) -> f64 {
        marks.excitation_moment(self.beta) * self.expected_children(1.0)
    }

    /// Expected number of direct children of an event of mark `mark`:
    /// `K·max(mark, 1)^β·c^{−θ}/θ`.
    pub fn expected_children(&self, mark: f64) -> f64 {
        self.k * (self.beta * mark.max(1.0).ln() - self.theta * self.c.ln()).exp() / self.theta
    }

    /// The kernel `φ(m, τ) = K·max(m, 1)^β·(τ + c)^{−(1+θ)}`.
    pub fn kernel(&self, mark: f64, tau: f64) -> f64 {
        self.k * (self.beta * mark.max(1.0).ln() - (1.0 + self.theta) * (tau + self.c).ln()).exp()
    }
}
