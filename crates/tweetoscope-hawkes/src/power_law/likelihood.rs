//! Log-likelihood of the power-law kernel: fast O(n·RATES) and exact O(n²) reference.
//!
//! Same conventions as the exponential kernel: times may be absolute or relative, `horizon` is
//! in seconds after the first event and strictly after the last one, marks below 1 count as 1.

use super::approx::{decays, rates, Weights, RATES};
use super::PowerLawParams;
use crate::{Cascade, HawkesError};

/// Cascades with more events than this do not store the decay table (it takes
/// `8·RATES` bytes per event); each evaluation recomputes the decays instead.
const TABLE_MAX_EVENTS: usize = 200_000;
/// Flush bounds of the running product of the intensities (see [`LogSum`]).
const FLUSH_HIGH: f64 = 1e150;
const FLUSH_LOW: f64 = 1e-150;
/// Events with less than this fraction of `c` left before the horizon take the accurate
/// (slower) path in the compensator.
const NEAR_HORIZON: f64 = 0.01;
/// Factors outside this range bypass the running product.
const FACTOR_HIGH: f64 = 1e100;
const FACTOR_LOW: f64 = 1e-100;

/// A validated cascade prepared for repeated power-law likelihood evaluations: it stores
/// `ln max(m_i, 1)`, the time left to the horizon for each event, and the table of decay
/// factors `e^{−s_k(t_i − t_{i−1})}` (for cascades of at most 200,000 events), so one
/// evaluation is O(n·[`RATES`]) multiply-adds plus a few transcendental functions per event.
#[derive(Debug, Clone)]
pub struct PowerLawCascade<'a> {
    cascade: Cascade<'a>,
    ln_marks: Vec<f64>,
    /// `T − (t_i − t_1)`, positive.
    tails: Vec<f64>,
    rates: [f64; RATES],
    /// Row `i − 1` holds the decays over the gap `t_i − t_{i−1}`.
    table: Option<Vec<[f64; RATES]>>,
}

/// Sums from one pass over a cascade for given `(β, c, θ)`. With `q = K·c^{−θ}/θ`, the
/// log-likelihood is `(n−1)·ln K + log_intensity − q·compensator`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sums {
    /// `Σ_{i≥2} ln S_i` with `S_i ≈ Σ_{j<i} m_j^β (t_i − t_j + c)^{−(1+θ)}`.
    pub log_intensity: f64,
    /// `Σ_i (∂S_i/∂β)/S_i` (gradient passes only).
    pub d_beta: f64,
    /// `Σ_i (∂S_i/∂c)/S_i` (gradient passes only).
    pub d_c: f64,
    /// `Σ_i (∂S_i/∂θ)/S_i` (gradient passes only).
    pub d_theta: f64,
    /// `R = Σ_j m_j^β (1 − (c/x_j)^θ)` with `x_j = T − t_j + c`.
    pub compensator: f64,
    /// `∂R/∂β` (gradient passes only).
    pub d_compensator_beta: f64,
    /// `∂R/∂c` (gradient passes only).
    pub d_compensator_c: f64,
    /// `∂R/∂θ` (gradient passes only).
    pub d_compensator_theta: f64,
    /// `Σ_j m_j^β (c/x_j)^θ` (so `G1 = q·residual`).
    pub residual: f64,
}

/// `Σ ln v` over positive factors, as a running product flushed through `ln` before it leaves
/// `[1e−150, 1e150]` (factors outside `[1e−100, 1e100]` go straight through `ln`), so there is
/// one `ln` every few events instead of one per event.
struct LogSum {
    sum: f64,
    product: f64,
}

impl LogSum {
    fn new() -> Self {
        Self {
            sum: 0.0,
            product: 1.0,
        }
    }

    #[inline(always)]
    fn add(&mut self, v: f64) {
        if !(FACTOR_LOW..=FACTOR_HIGH).contains(&v) {
            // Only for extreme inputs (gaps of years, huge marks): no product, no underflow.
            self.sum += v.ln();
            return;
        }
        self.product *= v;
        if !(FLUSH_LOW..=FLUSH_HIGH).contains(&self.product) {
            self.sum += self.product.ln();
            self.product = 1.0;
        }
    }

    fn total(&self) -> f64 {
        self.sum + self.product.ln()
    }
}

/// `Σ_k a_k·b_k` with four independent accumulators (lets the compiler vectorise).
#[inline(always)]
fn dot(a: &[f64; RATES], b: &[f64; RATES]) -> f64 {
    let mut acc = [0.0; 4];
    for (ca, cb) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for l in 0..4 {
            acc[l] += ca[l] * cb[l];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

impl<'a> PowerLawCascade<'a> {
    /// Validates and prepares a cascade (see [`Cascade::new`] for the errors).
    pub fn new(times: &'a [f64], marks: &'a [f64], horizon: f64) -> Result<Self, HawkesError> {
        Ok(Self::from_cascade(Cascade::new(times, marks, horizon)?))
    }

    /// Prepares an already validated cascade.
    pub fn from_cascade(cascade: Cascade<'a>) -> Self {
        let table = cascade.len() <= TABLE_MAX_EVENTS;
        Self::build(cascade, table)
    }

    pub(crate) fn build(cascade: Cascade<'a>, with_table: bool) -> Self {
        let times = cascade.times();
        let t0 = times[0];
        let horizon = cascade.horizon();
        let rates = rates();
        let table = with_table.then(|| {
            times
                .windows(2)
                .map(|w| decays(&rates, w[1] - w[0]))
                .collect()
        });
        Self {
            ln_marks: cascade.marks().iter().map(|m| m.max(1.0).ln()).collect(),
            tails: times.iter().map(|t| horizon - (t - t0)).collect(),
            cascade,
            rates,
            table,
        }
    }

    /// The validated cascade.
    pub fn cascade(&self) -> &Cascade<'a> {
        &self.cascade
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.cascade.len()
    }

    /// Always `false`: a validated cascade has at least one event.
    pub fn is_empty(&self) -> bool {
        self.cascade.is_empty()
    }

    pub(crate) fn events_after_first(&self) -> f64 {
        (self.len() - 1) as f64
    }

    /// One pass over the events: O(n·RATES), no allocation. `beta ≥ 0`, `c > 0`, `theta > 0`.
    pub(crate) fn pass<const GRAD: bool>(&self, beta: f64, c: f64, theta: f64) -> Sums {
        let weights = Weights::new(&self.rates, theta, c);
        let times = self.cascade.times();
        let ln_c = c.ln();
        let mut sums = Sums::default();
        let mut logs = LogSum::new();
        let mut a = [0.0; RATES];
        let mut b = [0.0; RATES];
        // m_{i−1}^β and ln(m_{i−1})·m_{i−1}^β, added to the excitation at the next event.
        let mut carry = 0.0;
        let mut carry_b = 0.0;
        let mut computed: [f64; RATES];
        for (i, (&lm, &tail)) in self.ln_marks.iter().zip(&self.tails).enumerate() {
            if i > 0 {
                let row = match &self.table {
                    Some(table) => &table[i - 1],
                    None => {
                        computed = decays(&self.rates, times[i] - times[i - 1]);
                        &computed
                    }
                };
                for k in 0..RATES {
                    a[k] = row[k] * (a[k] + carry);
                }
                let s = dot(&weights.w, &a);
                logs.add(s);
                if GRAD {
                    for k in 0..RATES {
                        b[k] = row[k] * (b[k] + carry_b);
                    }
                    let inv = 1.0 / s;
                    sums.d_beta += dot(&weights.w, &b) * inv;
                    sums.d_c += dot(&weights.dc, &a) * inv;
                    sums.d_theta += dot(&weights.dtheta, &a) * inv;
                }
            }
            let mb = (beta * lm).exp();
            carry = mb;
            if GRAD {
                carry_b = lm * mb;
            }
            // Compensator of event i: m^β (1 − (c/x)^θ), x = tail + c.
            let (ln_ratio, r, u) = if tail < NEAR_HORIZON * c {
                // Events just before the horizon: (c/x)^θ is close to 1, avoid cancellations.
                let ln_ratio = -(tail / c).ln_1p();
                let em = (theta * ln_ratio).exp_m1();
                (ln_ratio, 1.0 + em, -em)
            } else {
                // ln and exp are much faster than ln_1p and exp_m1 (which took half the time).
                let ln_ratio = ln_c - (tail + c).ln();
                let r = (theta * ln_ratio).exp();
                (ln_ratio, r, 1.0 - r)
            };
            sums.compensator += mb * u;
            sums.residual += mb * r;
            if GRAD {
                sums.d_compensator_beta += lm * mb * u;
                sums.d_compensator_c -= theta * mb * r * tail / (c * (tail + c));
                sums.d_compensator_theta -= mb * r * ln_ratio;
            }
        }
        sums.log_intensity = logs.total();
        sums
    }

    /// Approximate log-likelihood at `params` (sum-of-exponentials kernel for the
    /// `ln λ(t_i)` terms, exact compensator; see [`kernel_approximation`] for its accuracy,
    /// which holds for `c ≥ 1 s`). NaN if `params` fail [`PowerLawParams::validate`].
    ///
    /// [`kernel_approximation`]: super::kernel_approximation
    pub fn log_likelihood(&self, params: &PowerLawParams) -> f64 {
        if !params.is_valid() {
            return f64::NAN;
        }
        let s = self.pass::<false>(params.beta, params.c, params.theta);
        let q = scale(params);
        self.events_after_first() * params.k.ln() + s.log_intensity - q * s.compensator
    }

    /// [`PowerLawCascade::log_likelihood`] and its analytic gradient with respect to
    /// `(k, beta, c, theta)`, in one pass (about three times the cost of the value alone).
    /// NaNs if `params` are invalid.
    pub fn log_likelihood_with_gradient(&self, params: &PowerLawParams) -> (f64, [f64; 4]) {
        if !params.is_valid() {
            return (f64::NAN, [f64::NAN; 4]);
        }
        let PowerLawParams { k, beta, c, theta } = *params;
        let n1 = self.events_after_first();
        let s = self.pass::<true>(beta, c, theta);
        let q = scale(params);
        let r = s.compensator;
        let ll = n1 * k.ln() + s.log_intensity - q * r;
        // ∂q/∂K = q/K, ∂ln q/∂c = −θ/c, ∂ln q/∂θ = −ln c − 1/θ.
        let grad = [
            (n1 - q * r) / k,
            s.d_beta - q * s.d_compensator_beta,
            s.d_c - q * (s.d_compensator_c - theta * r / c),
            s.d_theta - q * (s.d_compensator_theta - r * (c.ln() + 1.0 / theta)),
        ];
        (ll, grad)
    }

    /// `G1 = Σ_i K·m_i^β·(T − t_i + c)^{−θ}/θ`: expected number of direct children of the
    /// observed events still to come after the horizon. NaN if `params` are invalid.
    pub fn g1(&self, params: &PowerLawParams) -> f64 {
        if !params.is_valid() {
            return f64::NAN;
        }
        scale(params) * self.residual(params.beta, params.c, params.theta)
    }

    /// `Σ_j m_j^β (c/x_j)^θ` alone, in O(n) (no kernel sums).
    pub(crate) fn residual(&self, beta: f64, c: f64, theta: f64) -> f64 {
        let ln_c = c.ln();
        self.ln_marks
            .iter()
            .zip(&self.tails)
            .map(|(&lm, &tail)| (beta * lm + theta * (ln_c - (tail + c).ln())).exp())
            .sum()
    }
}

/// `q = K·c^{−θ}/θ`: the compensator is `q·R`.
fn scale(p: &PowerLawParams) -> f64 {
    p.k * (-p.theta * p.c.ln()).exp() / p.theta
}

/// Prepares a cascade for a one-shot evaluation (no decay table: building it would cost as
/// much as the evaluation).
fn one_shot<'a>(times: &'a [f64], marks: &'a [f64], horizon: f64) -> Option<PowerLawCascade<'a>> {
    Cascade::new(times, marks, horizon)
        .ok()
        .map(|c| PowerLawCascade::build(c, false))
}

/// Approximate log-likelihood on `[t_1, T]` in O(n·[`RATES`]) (see [`PowerLawCascade`]; use it
/// to evaluate one cascade repeatedly). NaN if the inputs fail [`Cascade::new`] or `params`
/// fail [`PowerLawParams::validate`].
pub fn log_likelihood(times: &[f64], marks: &[f64], horizon: f64, params: &PowerLawParams) -> f64 {
    one_shot(times, marks, horizon).map_or(f64::NAN, |c| c.log_likelihood(params))
}

/// [`log_likelihood`] and its analytic gradient with respect to `(k, beta, c, theta)`.
pub fn log_likelihood_with_gradient(
    times: &[f64],
    marks: &[f64],
    horizon: f64,
    params: &PowerLawParams,
) -> (f64, [f64; 4]) {
    one_shot(times, marks, horizon).map_or((f64::NAN, [f64::NAN; 4]), |c| {
        c.log_likelihood_with_gradient(params)
    })
}

/// `G1` of [`PowerLawCascade::g1`]; NaN on invalid inputs.
pub fn g1(times: &[f64], marks: &[f64], horizon: f64, params: &PowerLawParams) -> f64 {
    Cascade::new(times, marks, horizon)
        .map_or(f64::NAN, |c| PowerLawCascade::build(c, false).g1(params))
}

/// Exact reference log-likelihood in O(n²): the direct double sum `Σ_{i≥2} ln λ(t_i)` with the
/// true power law, minus the compensator `Σ_i K·m_i^β·[c^{−θ} − (T − t_i + c)^{−θ}]/θ`. For
/// tests and benchmarks; same NaN cases as [`log_likelihood`].
pub fn log_likelihood_naive(
    times: &[f64],
    marks: &[f64],
    horizon: f64,
    params: &PowerLawParams,
) -> f64 {
    if Cascade::new(times, marks, horizon).is_err() || !params.is_valid() {
        return f64::NAN;
    }
    let PowerLawParams { k, beta, c, theta } = *params;
    let excitation: Vec<f64> = marks.iter().map(|m| m.max(1.0).powf(beta)).collect();
    let t0 = times[0];
    let mut ll = 0.0;
    for (i, &ti) in times.iter().enumerate().skip(1) {
        let intensity: f64 = times[..i]
            .iter()
            .zip(&excitation)
            .map(|(&tj, &e)| k * e * (ti - tj + c).powf(-(1.0 + theta)))
            .sum();
        ll += intensity.ln();
    }
    for (&ti, &e) in times.iter().zip(&excitation) {
        let x = horizon - (ti - t0) + c;
        ll -= k * e * (c.powf(-theta) - x.powf(-theta)) / theta;
    }
    ll
}
