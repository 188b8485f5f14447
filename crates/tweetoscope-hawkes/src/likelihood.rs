//! Log-likelihood of a marked Hawkes process with exponential kernel, in O(n).
//!
//! Conventions shared by every function here:
//! - times may be absolute or relative: only differences to the first event are used;
//! - `horizon` is measured in seconds **after the first event** and must be strictly after the
//!   last event (events at or after the horizon are rejected, never silently dropped);
//! - marks below 1 (including 0 and negative values) are treated as 1, so every event excites.

use crate::HawkesError;

/// Flush threshold of the running product of `ln` arguments (see [`pass`]).
const FLUSH: f64 = 1e150;

/// A validated cascade: borrowed event times and marks plus the observation horizon.
///
/// Construction checks the inputs once, so the likelihood methods run without checks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cascade<'a> {
    times: &'a [f64],
    marks: &'a [f64],
    horizon: f64,
}

/// Sums from one pass over a cascade for a given `beta`. Given them, the log-likelihood is
/// `(n−1)·ln(p·beta) + log_excitation − p·compensator`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pass {
    /// `Σ_{i≥2} ln A_i`.
    pub log_excitation: f64,
    /// `Σ m_i (1 − e^{−β(T−t_i)})`.
    pub compensator: f64,
    /// `Σ m_i e^{−β(T−t_i)}` (so `G1 = p·residual`).
    pub residual: f64,
    /// `∂ log_excitation / ∂β` (gradient passes only).
    pub d_log_excitation: f64,
    /// `∂ compensator / ∂β = Σ m_i (T−t_i) e^{−β(T−t_i)}` (gradient passes only).
    pub d_compensator: f64,
}

/// One O(n) pass: one `exp` per event, no allocation.
///
/// With `S_i = A_{i−1} + m_{i−1}` (excitation just after event `i−1`, always ≥ 1 since marks
/// are clamped to ≥ 1), `A_i = e^{−βΔ_i}·S_i`, so `ln A_i = −βΔ_i + ln S_i` never underflows
/// even when `e^{−βΔ_i}` does. The `ln S_i` are accumulated as a running product (every
/// factor is ≥ 1, so it cannot underflow) flushed through `ln` before it can overflow.
/// Likewise `∂ ln A_i/∂β = −B_i/A_i = −Δ_i − B_{i−1}/S_i`, where the decay cancels.
#[inline(always)]
fn pass<const GRAD: bool>(times: &[f64], marks: &[f64], horizon: f64, beta: f64) -> Pass {
    debug_assert!(!times.is_empty() && times.len() == marks.len());
    let t_first = times[0];
    let mut t_prev = t_first;
    let mut s = marks[0].max(1.0);
    let mut total_mark = s;
    let mut b = 0.0;
    let mut ratio_sum = 0.0;
    let mut log_sum = 0.0;
    let mut prod = 1.0;
    for (&t, &m) in times[1..].iter().zip(&marks[1..]) {
        let delta = t - t_prev;
        t_prev = t;
        let decay = (-beta * delta).exp();
        if s < FLUSH {
            prod *= s;
            if prod > FLUSH {
                log_sum += prod.ln();
                prod = 1.0;
            }
        } else {
            log_sum += s.ln();
        }
        if GRAD {
            ratio_sum += b / s;
            b = decay * (b + delta * s);
        }
        let m = m.max(1.0);
        total_mark += m;
        s = decay * s + m;
    }
    log_sum += prod.ln();
    let span = t_prev - t_first;
    let tail = horizon - span;
    let tail_decay = (-beta * tail).exp();
    let residual = tail_decay * s;
    Pass {
        log_excitation: log_sum - beta * span,
        compensator: total_mark - residual,
        residual,
        d_log_excitation: if GRAD { -span - ratio_sum } else { 0.0 },
        d_compensator: if GRAD {
            tail_decay * (b + tail * s)
        } else {
            0.0
        },
    }
}

fn valid_params(p: f64, beta: f64) -> bool {
    p.is_finite() && p > 0.0 && beta.is_finite() && beta > 0.0
}

impl<'a> Cascade<'a> {
    /// Validates and wraps a cascade.
    ///
    /// Errors: [`HawkesError::LengthMismatch`], [`HawkesError::TooFewEvents`] (empty),
    /// [`HawkesError::NonFiniteTime`], [`HawkesError::NonFiniteMark`],
    /// [`HawkesError::NonFiniteHorizon`], [`HawkesError::UnsortedTimes`] (ties are allowed) and
    /// [`HawkesError::HorizonNotAfterLastEvent`] (`horizon` is relative to the first event).
    pub fn new(times: &'a [f64], marks: &'a [f64], horizon: f64) -> Result<Self, HawkesError> {
        if times.len() != marks.len() {
            return Err(HawkesError::LengthMismatch {
                times: times.len(),
                marks: marks.len(),
            });
        }
        if times.is_empty() {
            return Err(HawkesError::TooFewEvents { n: 0, needed: 1 });
        }
        if let Some(index) = times.iter().position(|t| !t.is_finite()) {
            return Err(HawkesError::NonFiniteTime { index });
        }
        if let Some(index) = marks.iter().position(|m| !m.is_finite()) {
            return Err(HawkesError::NonFiniteMark { index });
        }
        if !horizon.is_finite() {
            return Err(HawkesError::NonFiniteHorizon { horizon });
        }
        if let Some(i) = times.windows(2).position(|w| w[1] < w[0]) {
            return Err(HawkesError::UnsortedTimes {
                index: i + 1,
                previous: times[i],
                time: times[i + 1],
            });
        }
        let last = times[times.len() - 1] - times[0];
        if horizon <= last {
            return Err(HawkesError::HorizonNotAfterLastEvent { horizon, last });
        }
        Ok(Self {
            times,
            marks,
            horizon,
        })
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Always `false`: a validated cascade has at least one event.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Event times as given.
    pub fn times(&self) -> &'a [f64] {
        self.times
    }

    /// Marks as given (not clamped).
    pub fn marks(&self) -> &'a [f64] {
        self.marks
    }

    /// Observation horizon, seconds after the first event.
    pub fn horizon(&self) -> f64 {
        self.horizon
    }

    pub(crate) fn pass(&self, beta: f64) -> Pass {
        pass::<false>(self.times, self.marks, self.horizon, beta)
    }

    pub(crate) fn pass_with_gradient(&self, beta: f64) -> Pass {
        pass::<true>(self.times, self.marks, self.horizon, beta)
    }

    pub(crate) fn events_after_first(&self) -> f64 {
        (self.times.len() - 1) as f64
    }

    /// Log-likelihood at `(p, beta)`; NaN unless both are finite and positive.
    pub fn log_likelihood(&self, p: f64, beta: f64) -> f64 {
        if !valid_params(p, beta) {
            return f64::NAN;
        }
        let k = self.events_after_first();
        let s = self.pass(beta);
        k * (p.ln() + beta.ln()) + s.log_excitation - p * s.compensator
    }

    /// Log-likelihood and its gradient `[∂/∂p, ∂/∂beta]`; NaNs unless `p`, `beta` are finite
    /// and positive.
    pub fn log_likelihood_with_gradient(&self, p: f64, beta: f64) -> (f64, [f64; 2]) {
        if !valid_params(p, beta) {
            return (f64::NAN, [f64::NAN; 2]);
        }
        let k = self.events_after_first();
        let s = self.pass_with_gradient(beta);
        let ll = k * (p.ln() + beta.ln()) + s.log_excitation - p * s.compensator;
        let dp = k / p - s.compensator;
        let dbeta = k / beta + s.d_log_excitation - p * s.d_compensator;
        (ll, [dp, dbeta])
    }

    /// `G1 = p·Σ m_i e^{−beta(T − t_i)}`: expected number of direct children still to come
    /// after the horizon. NaN unless `p`, `beta` are finite and positive.
    pub fn g1(&self, p: f64, beta: f64) -> f64 {
        if !valid_params(p, beta) {
            return f64::NAN;
        }
        p * self.pass(beta).residual
    }
}

/// Log-likelihood on `[t_1, T]` in O(n) (see the module docs for the conventions).
///
/// `LL = (n−1)·ln(p·beta) + Σ_{i≥2} ln A_i − p·Σ m_i (1 − e^{−beta(T−t_i)})`. Returns NaN if
/// the inputs fail [`Cascade::new`] or `p`, `beta` are not finite and positive.
pub fn log_likelihood(times: &[f64], marks: &[f64], horizon: f64, p: f64, beta: f64) -> f64 {
    Cascade::new(times, marks, horizon).map_or(f64::NAN, |c| c.log_likelihood(p, beta))
}

/// [`log_likelihood`] and its analytic gradient `[∂/∂p, ∂/∂beta]`, in one O(n) pass.
pub fn log_likelihood_with_gradient(
    times: &[f64],
    marks: &[f64],
    horizon: f64,
    p: f64,
    beta: f64,
) -> (f64, [f64; 2]) {
    Cascade::new(times, marks, horizon).map_or((f64::NAN, [f64::NAN; 2]), |c| {
        c.log_likelihood_with_gradient(p, beta)
    })
}

/// Reference O(n²) log-likelihood: the direct double sum `Σ_{i≥2} ln λ(t_i) − ∫ λ`, for tests
/// and benchmarks. Same conventions and NaN cases as [`log_likelihood`]; unlike it, it gives
/// `−∞` when an intensity underflows.
pub fn log_likelihood_naive(times: &[f64], marks: &[f64], horizon: f64, p: f64, beta: f64) -> f64 {
    if Cascade::new(times, marks, horizon).is_err() || !valid_params(p, beta) {
        return f64::NAN;
    }
    let t0 = times[0];
    let mut ll = 0.0;
    for (i, &ti) in times.iter().enumerate().skip(1) {
        let intensity: f64 = times[..i]
            .iter()
            .zip(&marks[..i])
            .map(|(&tj, &mj)| p * mj.max(1.0) * beta * (-beta * (ti - tj)).exp())
            .sum();
        ll += intensity.ln();
    }
    for (&ti, &mi) in times.iter().zip(marks) {
        ll -= p * mi.max(1.0) * (1.0 - (-beta * (horizon - (ti - t0))).exp());
    }
    ll
}

/// `G1 = p·Σ m_i e^{−beta(T − t_i)}` (see [`Cascade::g1`]); NaN on invalid inputs.
pub fn g1(times: &[f64], marks: &[f64], horizon: f64, p: f64, beta: f64) -> f64 {
    Cascade::new(times, marks, horizon).map_or(f64::NAN, |c| c.g1(p, beta))
}
