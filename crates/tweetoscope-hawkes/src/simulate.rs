//! Synthetic cascades with known parameters, by Ogata thinning.
//!
//! The simulated intensity is the fitted model's: `λ(t) = Σ_{t_i<t} p·m_i·β·e^{−β(t−t_i)}`,
//! with marks below 1 counted as 1 in the intensity (the returned marks are the raw draws).

use rand::Rng;

use crate::MarkDistribution;

/// A cascade is considered extinct once the expected number of further direct children,
/// `λ(t)/β`, falls below this.
pub const EXTINCTION_THRESHOLD: f64 = 1e-9;

/// Simulates one cascade from an initial event at `t = 0` whose mark is drawn from `marks`.
///
/// See [`simulate_cascade_from`] for the stopping rules and the output.
pub fn simulate_cascade<R: Rng + ?Sized>(
    p: f64,
    beta: f64,
    marks: &MarkDistribution,
    horizon: f64,
    max_events: usize,
    rng: &mut R,
) -> Vec<(f64, f64)> {
    let first_mark = marks.sample(rng);
    simulate_cascade_from(first_mark, p, beta, marks, horizon, max_events, rng)
}

/// Simulates one cascade from an initial event at `t = 0` with the given mark.
///
/// Ogata thinning: between events the intensity only decays, so its current value bounds it
/// until the next event; a candidate `w ~ Exp(λ̄)` later is accepted with probability
/// `λ(t + w)/λ̄ = e^{−βw}`. Stops at the first candidate at or after `horizon` (which may be
/// infinite), once `max_events` events (the initial one included) exist, or at extinction
/// (see [`EXTINCTION_THRESHOLD`]). Returns `(time, mark)` pairs sorted by time, starting with
/// `(0, first_mark)`; empty if `max_events == 0` or `horizon` is not positive. If `p` or `beta`
/// is not finite and positive, only the initial event is returned. A supercritical `p`
/// (`p·E[m] ≥ 1`) only stops at the horizon or at `max_events`.
pub fn simulate_cascade_from<R: Rng + ?Sized>(
    first_mark: f64,
    p: f64,
    beta: f64,
    marks: &MarkDistribution,
    horizon: f64,
    max_events: usize,
    rng: &mut R,
) -> Vec<(f64, f64)> {
    let mut events = Vec::new();
    if max_events == 0 || horizon.is_nan() || horizon <= 0.0 {
        return events;
    }
    events.push((0.0, first_mark));
    if !(p.is_finite() && p > 0.0 && beta.is_finite() && beta > 0.0) {
        return events;
    }
    let jump = |m: f64| p * m.max(1.0) * beta;
    let mut t = 0.0;
    let mut lambda = jump(first_mark);
    while events.len() < max_events && lambda / beta >= EXTINCTION_THRESHOLD {
        let u = 1.0 - rng.gen::<f64>();
        let w = -u.ln() / lambda;
        t += w;
        if t >= horizon {
            break;
        }
        let keep = (-beta * w).exp();
        lambda *= keep;
        if rng.gen::<f64>() < keep {
            let m = marks.sample(rng);
            events.push((t, m));
            lambda += jump(m);
        }
    }
    events
}

/// The `p` whose cascades started by a mark `first_mark` have expected final size `target`
/// (infinite horizon): solves `1 + p·m0/(1 − p·E[m]) = target`, i.e.
/// `p = (target − 1)/(m0 + (target − 1)·E[m])`, then caps it so `p·E[m] ≤ max_branching`.
///
/// Returns 0 for `target ≤ 1` (or NaN); `first_mark` below 1 counts as 1. `marks` is assumed
/// valid (see [`MarkDistribution::new`]).
pub fn p_for_expected_size(
    target: f64,
    first_mark: f64,
    marks: &MarkDistribution,
    max_branching: f64,
) -> f64 {
    let mean = marks.mean();
    let cap = max_branching.max(0.0) / mean;
    if target.is_nan() || target <= 1.0 {
        return 0.0;
    }
    if target.is_infinite() {
        return cap;
    }
    let k = target - 1.0;
    (k / (first_mark.max(1.0) + k * mean)).min(cap)
}
