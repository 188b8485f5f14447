//! Marked Hawkes process maths for Tweetoscope: log-likelihood, MAP/MLE fit of `(p, beta)`,
//! final-size prediction and synthetic cascades.
//!
//! Model: events `(t_i, m_i)` (time, follower count) with intensity
//! `λ(t) = Σ_{t_i<t} p·m_i·β·e^{−β(t−t_i)}`, power-law marks of mean `E[m]`, branching factor
//! `n* = p·E[m]`. After observing `n` events up to the horizon `T`, the expected final size is
//! `n + G1/(1 − n*)` with `G1 = p·Σ m_i e^{−β(T−t_i)}`.
//!
//! A second time kernel, the power law `φ(m, τ) = K·m^β·(τ + c)^{−(1+θ)}` of Mishra et al.
//! (CIKM 2016), lives in [`power_law`]; [`fit_kernel`] fits either one, as chosen by a
//! [`Kernel`] (a per-deployment setting), into a [`KernelFit`].
//!
//! Conventions: times are used relative to the first event; the horizon is in seconds after the
//! first event and must be strictly after the last event (later events are rejected with an
//! error, not ignored); marks below 1 count as 1. The crate does no I/O.
//!
//! ```
//! use rand::{rngs::StdRng, SeedableRng};
//! use tweetoscope_hawkes::{fit, simulate::simulate_cascade_from, FitConfig, MarkDistribution};
//!
//! // A synthetic cascade observed for its first 10 minutes.
//! let marks = MarkDistribution::default();
//! let mut rng = StdRng::seed_from_u64(1);
//! let events = simulate_cascade_from(1e4, 0.02, 1.0 / 600.0, &marks, 600.0, 10_000, &mut rng);
//! let (times, followers): (Vec<f64>, Vec<f64>) = events.into_iter().unzip();
//!
//! let estimate = fit(&times, &followers, 600.0, &FitConfig::default())?;
//! let final_size = estimate.predicted_size(1.0)?;
//! assert!(final_size >= times.len() as f64);
//! # Ok::<(), tweetoscope_hawkes::HawkesError>(())
//! ```

mod error;
mod fit;
mod kernel;
mod likelihood;
mod marks;
pub mod power_law;
mod predict;
mod prior;
pub mod simulate;
mod special;
pub mod tideh;

pub use error::HawkesError;
pub use fit::{fit, fit_cascade, Bounds, FitConfig, HawkesFit, BETA_MAX, BETA_MIN, P_MIN};
pub use kernel::{fit_kernel, Kernel, KernelFit};
pub use likelihood::{
    g1, log_likelihood, log_likelihood_naive, log_likelihood_with_gradient, Cascade,
};
pub use marks::{power_marks, MarkDistribution};
pub use predict::{predict_final_size, random_forest_target};
pub use prior::{LogNormalParams, Prior};
