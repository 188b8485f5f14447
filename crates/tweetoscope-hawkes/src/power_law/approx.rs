//! Sum-of-exponentials approximation of the power-law time kernel.
//!
//! From `x^{−(1+θ)} = (1/Γ(1+θ)) ∫₀^∞ s^θ e^{−s·x} ds` with `x = τ + c`, the substitution
//! `s = e^u` and the trapezoidal rule on a fixed grid `u_k = ln s₀ + k·h` give
//!
//! `(τ + c)^{−(1+θ)} ≈ Σ_k w_k(θ, c)·e^{−s_k τ}`, `w_k = h·s_k^{1+θ}·e^{−s_k c}/Γ(1+θ)`.
//!
//! The rates `s_k` are fixed; only the weights depend on `(θ, c)`. The integrand is analytic in
//! a strip around the real `u` axis, so the trapezoidal rule converges geometrically: by
//! Poisson summation its relative error is about `2|Γ(1+θ+2πi/h)|/Γ(1+θ)`, which grows with
//! `θ` and shrinks like `e^{−π²/h}`. With `h = ln(3)/2` that is ≈ 7e−5 at `θ = 3` and far less
//! for small `θ`. The grid covers `s ∈ [1e−8, 20.1]`/s. At its top the integrand is already
//! below `e^{−20}` of its scale for `x ≥ 1 s` (the smallest `c` of the fit), and the mass below
//! its bottom (only relevant for `x` beyond a few days) is folded into the first weight as
//! `∫₀^{edge} s^θ ds/Γ(1+θ)` (the factor `e^{−s·x}` is close to 1 there). Measured over `θ ∈ [0.05, 3]` and
//! `τ + c ∈ [1 s, 10 days + 1 h]` the largest relative error is 7e−5 (see the tests).
//!
//! The ratio of consecutive rates is `√3`, so `e^{−s_{k+2}Δ} = (e^{−s_kΔ})³`: a gap needs only
//! a few `exp` calls, the rest are cubes (re-anchored every 10 rates to bound rounding).

use crate::special::{digamma, ln_gamma};

/// Number of exponentials approximating the power-law kernel.
pub const RATES: usize = 40;
/// Smallest decay rate of the grid (1/s); the largest is `RATE_MIN·3^{19.5}` ≈ 20.1/s.
pub const RATE_MIN: f64 = 1e-8;
/// Step of the grid in `ln s`: `ln(3)/2`.
const LN_STEP: f64 = 0.549_306_144_334_054_8;
/// Exact `exp` every this many rates (for each parity); cubes in between.
const ANCHOR_EVERY: usize = 10;
/// Decay factors below this are set to 0 (keeps the recursion free of subnormal numbers; a
/// contribution this small is far below the precision of the sum).
const TINY_DECAY: f64 = 1e-100;
/// Weights below this are set to 0 (products of weights and excitations stay normal).
const TINY_WEIGHT: f64 = 1e-200;

/// The decay rates `s_k = RATE_MIN·3^{k/2}` (1/s), `k = 0..RATES`.
pub fn rates() -> [f64; RATES] {
    let mut r = [0.0; RATES];
    for (k, v) in r.iter_mut().enumerate() {
        *v = (RATE_MIN.ln() + LN_STEP * k as f64).exp();
    }
    r
}

/// Weights of the approximation for one `(θ, c)`, with their partial derivatives.
#[derive(Debug, Clone)]
pub(crate) struct Weights {
    /// `w_k`.
    pub w: [f64; RATES],
    /// `∂w_k/∂c`.
    pub dc: [f64; RATES],
    /// `∂w_k/∂θ`.
    pub dtheta: [f64; RATES],
}

impl Weights {
    /// Weights for `(theta, c)`; both must be finite and positive.
    pub(super) fn new(rates: &[f64; RATES], theta: f64, c: f64) -> Self {
        let lg = ln_gamma(1.0 + theta);
        let psi = digamma(1.0 + theta);
        let ln_h = LN_STEP.ln();
        let mut w = [0.0; RATES];
        let mut dc = [0.0; RATES];
        let mut dtheta = [0.0; RATES];
        for k in 0..RATES {
            let s = rates[k];
            let ln_s = s.ln();
            let value = (ln_h + (1.0 + theta) * ln_s - s * c - lg).exp();
            if value >= TINY_WEIGHT {
                w[k] = value;
                dc[k] = -s * value;
                dtheta[k] = (ln_s - psi) * value;
            }
        }
        // The part of the integral below the first cell, ∫₀^edge s^θ ds / Γ(1+θ)
        // = edge^{1+θ}/Γ(2+θ), carried by the slowest exponential.
        let ln_edge = rates[0].ln() - 0.5 * LN_STEP;
        let tail = ((1.0 + theta) * ln_edge - lg - (1.0 + theta).ln()).exp();
        if tail >= TINY_WEIGHT {
            w[0] += tail;
            dtheta[0] += (ln_edge - psi - 1.0 / (1.0 + theta)) * tail;
        }
        Self { w, dc, dtheta }
    }
}

/// Decay factors `e^{−s_k·delta}` for one gap `delta ≥ 0`.
#[inline]
pub(crate) fn decays(rates: &[f64; RATES], delta: f64) -> [f64; RATES] {
    let mut d = [0.0; RATES];
    for k in 0..RATES {
        d[k] = if k % ANCHOR_EVERY < 2 {
            (-rates[k] * delta).exp()
        } else {
            let p = d[k - 2];
            p * p * p
        };
        if d[k] < TINY_DECAY {
            d[k] = 0.0;
        }
    }
    d
}

/// The approximation `Σ_k w_k(θ, c)·e^{−s_k τ}` of `(τ + c)^{−(1+θ)}` used by the fast
/// likelihood (exposed to test and document its accuracy): relative error below 1e−4 for
/// `c ≥ 1 s`, `θ ≤ 3` and `τ` up to 10 days; it degrades for `c` below 1 s. NaN unless
/// `tau ≥ 0` and `c`, `theta` are finite and positive.
pub fn kernel_approximation(tau: f64, c: f64, theta: f64) -> f64 {
    let ok = |v: f64| v.is_finite() && v > 0.0;
    if !(tau.is_finite() && tau >= 0.0 && ok(c) && ok(theta)) {
        return f64::NAN;
    }
    let rates = rates();
    let weights = Weights::new(&rates, theta, c);
    let d = decays(&rates, tau);
    weights.w.iter().zip(&d).map(|(w, d)| w * d).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cubed_decays_match_direct_exponentials() {
        let rates = rates();
        for delta in [0.0, 1e-3, 0.7, 13.0, 600.0, 86_400.0, 9e5] {
            let d = decays(&rates, delta);
            for k in 0..RATES {
                let want = (-rates[k] * delta).exp();
                let want = if want < TINY_DECAY { 0.0 } else { want };
                assert!(
                    (d[k] - want).abs() <= 1e-12 * want + 1e-99,
                    "delta {delta}, k {k}: {} vs {want}",
                    d[k]
                );
            }
        }
    }

    #[test]
    fn weight_derivatives_match_finite_differences() {
        let rates = rates();
        for (theta, c) in [(0.05, 1.0), (0.4, 30.0), (1.5, 600.0), (3.0, 3600.0)] {
            let w = Weights::new(&rates, theta, c);
            let hc = 1e-6 * c;
            let ht = 1e-6 * theta;
            let (cp, cm) = (
                Weights::new(&rates, theta, c + hc),
                Weights::new(&rates, theta, c - hc),
            );
            let (tp, tm) = (
                Weights::new(&rates, theta + ht, c),
                Weights::new(&rates, theta - ht, c),
            );
            for (k, rate) in rates.iter().enumerate() {
                let fd_c = (cp.w[k] - cm.w[k]) / (2.0 * hc);
                let fd_t = (tp.w[k] - tm.w[k]) / (2.0 * ht);
                let scale = w.w[k] * (1.0 + rate * c) / c.min(theta) + 1e-290;
                assert!((fd_c - w.dc[k]).abs() <= 1e-5 * scale, "dc k={k}");
                assert!((fd_t - w.dtheta[k]).abs() <= 1e-5 * scale, "dθ k={k}");
            }
        }
    }
}
