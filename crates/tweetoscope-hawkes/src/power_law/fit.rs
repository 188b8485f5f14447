//! Maximum-likelihood fit of the power-law kernel: L-BFGS on a box-constrained
//! reparametrisation of `(β, c, θ)`, with the branching factor `n*` profiled out in closed form.

use std::cell::Cell;

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;

use super::likelihood::PowerLawCascade;
use super::PowerLawParams;
use crate::fit::{logit, sigmoid, MAX_RUNS, START_MARGIN};
use crate::{predict_final_size, Cascade, FitConfig, HawkesError, MarkDistribution};

/// Lower bound of the branching factor in the fit (the upper bound is
/// [`FitConfig::max_branching`]).
pub const N_STAR_MIN: f64 = 1e-6;
/// Smallest admissible `c` (seconds): the kernel approximation is accurate from there on.
const C_FLOOR: f64 = 1.0;
/// The mark exponent stays this far below `alpha − 1`, where `E[m^β]` diverges.
const BETA_MARGIN: f64 = 0.05;
/// Grid of the starting point: values of `c`, of `θ` (at a middle `β`), then of `β`.
const START_C: usize = 5;
const START_THETA: usize = 4;
const START_BETA: usize = 5;

/// Box of the shape parameters `(β, c, θ)` of the power-law fit.
///
/// The defaults are `β ∈ [0, 1]` (at most linear in the follower count, as the exponential
/// kernel is; the fit further caps it at `alpha − 1.05` so that `E[m^β]` stays finite),
/// `c ∈ [1 s, 1 h]` and `θ ∈ [0.05, 3]`. Equal lower and upper bounds fix a parameter.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PowerLawBounds {
    /// Upper bound of the mark exponent `β` (its lower bound is 0).
    pub beta_max: f64,
    /// Lower bound of `c` (seconds).
    pub c_min: f64,
    /// Upper bound of `c` (seconds).
    pub c_max: f64,
    /// Lower bound of `θ`.
    pub theta_min: f64,
    /// Upper bound of `θ`.
    pub theta_max: f64,
}

impl Default for PowerLawBounds {
    /// `β ≤ 1`, `c ∈ [1, 3600]` s, `θ ∈ [0.05, 3]`.
    fn default() -> Self {
        Self {
            beta_max: 1.0,
            c_min: 1.0,
            c_max: 3600.0,
            theta_min: 0.05,
            theta_max: 3.0,
        }
    }
}

impl PowerLawBounds {
    /// Checks `0 ≤ beta_max`, `1 s ≤ c_min ≤ c_max`, `0 < theta_min ≤ theta_max`, all finite
    /// ([`HawkesError::InvalidArgument`] names the offending field). Below `c = 1 s` the fixed
    /// rate grid of the kernel approximation no longer reaches the kernel's fastest decay (its
    /// error is 2e−4 at `c = 0.5 s`, 20% at `0.2 s`). `θ` is not capped, but the approximation
    /// error grows above `θ = 3` (2e−4 at `θ = 4`, 5e−4 at `θ = 5`).
    pub fn validate(&self) -> Result<(), HawkesError> {
        let bad = |name, value| Err(HawkesError::InvalidArgument { name, value });
        if !(self.beta_max.is_finite() && self.beta_max >= 0.0) {
            return bad("beta_max", self.beta_max);
        }
        if !(self.c_min.is_finite() && self.c_min >= C_FLOOR) {
            return bad("c_min", self.c_min);
        }
        if !(self.c_max.is_finite() && self.c_max >= self.c_min) {
            return bad("c_max", self.c_max);
        }
        if !(self.theta_min.is_finite() && self.theta_min > 0.0) {
            return bad("theta_min", self.theta_min);
        }
        if !(self.theta_max.is_finite() && self.theta_max >= self.theta_min) {
            return bad("theta_max", self.theta_max);
        }
        Ok(())
    }

    /// The upper bound of `β` used with `marks`: `min(beta_max, alpha − 1.05)`.
    pub fn effective_beta_max(&self, marks: &MarkDistribution) -> f64 {
        self.beta_max.min(marks.alpha - 1.0 - BETA_MARGIN)
    }
}

/// Result of a power-law fit.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PowerLawFit {
    /// Fitted scale `K`.
    pub k: f64,
    /// Fitted mark exponent `β`.
    pub beta: f64,
    /// Fitted time offset `c` (seconds).
    pub c: f64,
    /// Fitted tail exponent `θ`.
    pub theta: f64,
    /// Branching factor `n* = K·E[m^β]·c^{−θ}/θ` (at most `max_branching`).
    pub n_star: f64,
    /// `G1 = Σ_i K·m_i^β·(T − t_i + c)^{−θ}/θ`: expected direct children after the horizon.
    pub g1: f64,
    /// Number of observed events.
    pub n_obs: usize,
    /// Maximised (approximate) log-likelihood.
    pub log_objective: f64,
    /// L-BFGS iterations used (summed over restarts); 0 means the starting point was kept.
    pub iterations: u64,
}

impl PowerLawFit {
    /// The fitted `(K, β, c, θ)`.
    pub fn params(&self) -> PowerLawParams {
        PowerLawParams {
            k: self.k,
            beta: self.beta,
            c: self.c,
            theta: self.theta,
        }
    }

    /// Predicted final size `n + omega·G1/(1 − n*)` (see [`predict_final_size`]).
    pub fn predicted_size(&self, omega: f64) -> Result<f64, HawkesError> {
        predict_final_size(self.n_obs, self.g1, self.n_star, omega)
    }
}

/// Fits the power-law kernel to one cascade by maximum likelihood, with the default
/// [`PowerLawBounds`]. See [`fit_with_bounds`].
pub fn fit(
    times: &[f64],
    marks: &[f64],
    horizon: f64,
    config: &FitConfig,
) -> Result<PowerLawFit, HawkesError> {
    fit_with_bounds(times, marks, horizon, config, &PowerLawBounds::default())
}

/// Fits `(K, β, c, θ)` to one cascade by maximum likelihood within `bounds`, with
/// `n* ∈ [N_STAR_MIN, config.max_branching]`.
///
/// Inputs follow the crate's conventions (times absolute or relative, `horizon` in seconds
/// after the first event and strictly after the last, marks below 1 count as 1); at least 2
/// events. From `config` it uses the marks (for `E[m^β]`), `max_branching` and
/// `max_iterations`; `config.prior` concerns the exponential kernel and is ignored.
///
/// The branching factor is profiled out: for given `(β, c, θ)` the likelihood is maximal at
/// `n* = (n−1)·E[m^β]/R` (`R = Σ m_i^β (1 − (c/(T − t_i + c))^θ)`), clamped into
/// `[N_STAR_MIN, max_branching]`, so the cap holds by construction and the steep ridge between
/// `n*` and `β` that a huge first mark creates (`n*·m₀^β` nearly constant) disappears from
/// the search. The optimiser is L-BFGS with a More–Thuente line search on `x ∈ ℝ³`, mapped
/// into the box by logistic functions (`β` linear, `ln c` and `ln θ` in `σ(x)`), with the
/// analytic gradient of the approximate profile likelihood. It starts from the best point of
/// a grid (5 values of `c` × 4 of `θ` at a middle `β`, then 5 of `β`) and returns the best
/// point it evaluated.
pub fn fit_with_bounds(
    times: &[f64],
    marks: &[f64],
    horizon: f64,
    config: &FitConfig,
    bounds: &PowerLawBounds,
) -> Result<PowerLawFit, HawkesError> {
    if times.len() == marks.len() && times.len() < 2 {
        return Err(HawkesError::TooFewEvents {
            n: times.len(),
            needed: 2,
        });
    }
    let cascade = Cascade::new(times, marks, horizon)?;
    // Validate the configuration before building the decay table.
    BoxMap::new(config, bounds)?;
    fit_cascade(&PowerLawCascade::from_cascade(cascade), config, bounds)
}

/// [`fit_with_bounds`] on an already prepared cascade.
pub fn fit_cascade(
    cascade: &PowerLawCascade<'_>,
    config: &FitConfig,
    bounds: &PowerLawBounds,
) -> Result<PowerLawFit, HawkesError> {
    if cascade.len() < 2 {
        return Err(HawkesError::TooFewEvents {
            n: cascade.len(),
            needed: 2,
        });
    }
    let map = BoxMap::new(config, bounds)?;
    let objective = Objective::new(cascade, config.marks, map);
    let mut x0 = objective.start();
    objective.eval(x0);
    let mut iterations = 0;
    for _ in 0..MAX_RUNS {
        let budget = config.max_iterations - iterations;
        if budget == 0 {
            break;
        }
        let before = objective.best().cost;
        let (iters, reason) = run_lbfgs(&objective, x0, budget);
        iterations += iters;
        let improved = objective.best().cost < before;
        match reason {
            Some(TerminationReason::SolverExit(_)) | None if improved => {
                x0 = objective.best().x;
            }
            _ => break,
        }
    }

    let best = objective.best();
    let ([beta, c, theta], _) = objective.map.params(best.x);
    let moment = config.marks.excitation_moment(beta);
    let n_star = if best.n_star.is_nan() {
        // No finite evaluation at all (only for absurd inputs, e.g. gaps of centuries): the
        // profile n* of the starting point still gives a prediction.
        let s = cascade.pass::<false>(beta, c, theta);
        objective
            .map
            .n_star(cascade.events_after_first(), moment, s.compensator)
    } else {
        best.n_star
    };
    let params = PowerLawParams {
        k: n_star * theta * (theta * c.ln()).exp() / moment,
        beta,
        c,
        theta,
    };
    Ok(PowerLawFit {
        k: params.k,
        beta,
        c,
        theta,
        n_star,
        g1: cascade.g1(&params),
        n_obs: cascade.len(),
        log_objective: -best.cost / objective.scale,
        iterations,
    })
}

fn run_lbfgs(
    objective: &Objective<'_, '_>,
    x0: [f64; DIM],
    budget: u64,
) -> (u64, Option<TerminationReason>) {
    let run = || -> Result<(u64, Option<TerminationReason>), argmin::core::Error> {
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), 7)
            .with_tolerance_grad(1e-9)?
            .with_tolerance_cost(1e-13)?;
        let result = Executor::new(Problem(objective), solver)
            .configure(|state| state.param(x0.to_vec()).max_iters(budget))
            .run()?;
        Ok((
            result.state.get_iter(),
            result.state.get_termination_reason().cloned(),
        ))
    };
    run().unwrap_or((0, None))
}

/// One coordinate of the box: `v = lo + width·σ(x)` (in log space for `c` and `θ`).
#[derive(Debug, Clone, Copy)]
struct Axis {
    lo: f64,
    width: f64,
    log: bool,
    min: f64,
    max: f64,
}

impl Axis {
    fn new(min: f64, max: f64, log: bool) -> Self {
        let (lo, hi) = if log {
            (min.ln(), max.ln())
        } else {
            (min, max)
        };
        Self {
            lo,
            width: hi - lo,
            log,
            min,
            max,
        }
    }

    /// `(value, ∂(ln value or value)/∂x)`.
    fn value(&self, x: f64) -> (f64, f64) {
        let (s, d) = sigmoid(x);
        let v = match s {
            0.0 => self.min,
            1.0 => self.max,
            _ => self.at(s),
        };
        (v, self.width * d)
    }

    /// Inverse of [`Axis::value`], kept [`START_MARGIN`] away from the faces.
    fn x(&self, v: f64) -> f64 {
        let u = if self.log { v.ln() } else { v };
        let frac = (u - self.lo) / self.width;
        logit(if frac.is_nan() {
            0.5
        } else {
            frac.clamp(START_MARGIN, 1.0 - START_MARGIN)
        })
    }

    /// The value at fraction `frac` of the (log) range.
    fn at(&self, frac: f64) -> f64 {
        let u = self.lo + self.width * frac;
        let v = if self.log { u.exp() } else { u };
        v.clamp(self.min, self.max)
    }
}

/// Number of optimised coordinates: `(β, c, θ)`; `n*` is profiled out.
const DIM: usize = 3;

/// The box: logistic maps of `x ∈ ℝ³` onto `(β, c, θ)` (`β` linear, `c` and `θ` in log
/// space), and the interval of `n*`.
#[derive(Debug, Clone, Copy)]
struct BoxMap {
    n_star_min: f64,
    n_star_max: f64,
    axes: [Axis; DIM],
}

impl BoxMap {
    fn new(config: &FitConfig, bounds: &PowerLawBounds) -> Result<Self, HawkesError> {
        config.marks.validate()?;
        if !(config.max_branching > N_STAR_MIN && config.max_branching < 1.0) {
            return Err(HawkesError::InvalidMaxBranching {
                value: config.max_branching,
            });
        }
        bounds.validate()?;
        let beta_max = bounds.effective_beta_max(&config.marks);
        if beta_max.is_nan() || beta_max < 0.0 {
            return Err(HawkesError::InvalidArgument {
                name: "beta_max",
                value: beta_max,
            });
        }
        Ok(Self {
            n_star_min: N_STAR_MIN,
            n_star_max: config.max_branching,
            axes: [
                Axis::new(0.0, beta_max, false),
                Axis::new(bounds.c_min, bounds.c_max, true),
                Axis::new(bounds.theta_min, bounds.theta_max, true),
            ],
        })
    }

    /// `([β, c, θ], ∂(β, ln c, ln θ)/∂x)`.
    fn params(&self, x: [f64; DIM]) -> ([f64; DIM], [f64; DIM]) {
        let mut v = [0.0; DIM];
        let mut j = [0.0; DIM];
        for i in 0..DIM {
            (v[i], j[i]) = self.axes[i].value(x[i]);
        }
        (v, j)
    }

    fn x(&self, v: [f64; DIM]) -> [f64; DIM] {
        let mut x = [0.0; DIM];
        for i in 0..DIM {
            x[i] = self.axes[i].x(v[i]);
        }
        x
    }

    /// The best `n*` for a pass: `(n−1)·E[m^β]/R`, clamped into `[N_STAR_MIN, max_branching]`.
    fn n_star(&self, n1: f64, moment: f64, compensator: f64) -> f64 {
        let n = n1 * moment / compensator;
        if n.is_nan() {
            self.n_star_max
        } else {
            n.clamp(self.n_star_min, self.n_star_max)
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Eval {
    x: [f64; DIM],
    cost: f64,
    grad: [f64; DIM],
    n_star: f64,
}

/// Negative profile log-likelihood divided by the number of events, as a function of `x`;
/// caches the last evaluation and records the best.
struct Objective<'c, 'a> {
    cascade: &'c PowerLawCascade<'a>,
    marks: MarkDistribution,
    map: BoxMap,
    scale: f64,
    last: Cell<Option<Eval>>,
    best: Cell<Eval>,
}

impl<'c, 'a> Objective<'c, 'a> {
    fn new(cascade: &'c PowerLawCascade<'a>, marks: MarkDistribution, map: BoxMap) -> Self {
        Self {
            cascade,
            marks,
            map,
            scale: 1.0 / cascade.len() as f64,
            last: Cell::new(None),
            best: Cell::new(Eval {
                x: [0.0; DIM],
                cost: f64::INFINITY,
                grad: [0.0; DIM],
                n_star: f64::NAN,
            }),
        }
    }

    fn best(&self) -> Eval {
        self.best.get()
    }

    fn eval(&self, x: [f64; DIM]) -> Eval {
        if let Some(e) = self.last.get() {
            if e.x == x {
                return e;
            }
        }
        let e = self.compute(x);
        self.last.set(Some(e));
        if e.cost < self.best.get().cost {
            self.best.set(e);
        }
        e
    }

    /// Log-likelihood at `(n*, β, c, θ)` with `K = n*·θ·c^θ/E[m^β]`:
    /// `(n−1)(ln n* + ln θ + θ ln c − ln E[m^β]) + Σ ln S_i − (n*/E[m^β])·R`, at the best `n*`
    /// for `(β, c, θ)`. Its gradient is the partial gradient at that `n*` (where `n*` is
    /// interior its own partial derivative vanishes; where it is clamped it is constant).
    fn compute(&self, x: [f64; DIM]) -> Eval {
        let bad = Eval {
            x,
            cost: f64::INFINITY,
            grad: [0.0; DIM],
            n_star: f64::NAN,
        };
        if x.iter().any(|v| !v.is_finite()) {
            return bad;
        }
        let ([beta, c, theta], jac) = self.map.params(x);
        let (moment, d_ln_moment) = self.marks.excitation_moment_with_log_derivative(beta);
        let n1 = self.cascade.events_after_first();
        let s = self.cascade.pass::<true>(beta, c, theta);
        let r = s.compensator;
        let n_star = self.map.n_star(n1, moment, r);
        let q = n_star / moment;
        let ln_c = c.ln();
        let ll =
            n1 * (n_star.ln() + theta.ln() + theta * ln_c - moment.ln()) + s.log_intensity - q * r;
        // Gradient with respect to (β, ln c, ln θ).
        let g = [
            -n1 * d_ln_moment + s.d_beta - q * (s.d_compensator_beta - r * d_ln_moment),
            n1 * theta + c * s.d_c - q * c * s.d_compensator_c,
            n1 * (1.0 + theta * ln_c) + theta * s.d_theta - q * theta * s.d_compensator_theta,
        ];
        let mut grad = [0.0; DIM];
        for i in 0..DIM {
            grad[i] = -g[i] * jac[i] * self.scale;
        }
        let cost = -ll * self.scale;
        if cost.is_finite() && grad.iter().all(|v| v.is_finite()) {
            Eval {
                x,
                cost,
                grad,
                n_star,
            }
        } else {
            bad
        }
    }

    /// Profile log-likelihood at `(β, c, θ)` from a value-only pass.
    fn profile(&self, beta: f64, c: f64, theta: f64) -> f64 {
        let n1 = self.cascade.events_after_first();
        let s = self.cascade.pass::<false>(beta, c, theta);
        let moment = self.marks.excitation_moment(beta);
        let n_star = self.map.n_star(n1, moment, s.compensator);
        let ll = n1 * (n_star.ln() + theta.ln() + theta * c.ln() - moment.ln()) + s.log_intensity
            - n_star / moment * s.compensator;
        if ll.is_nan() {
            f64::NEG_INFINITY
        } else {
            ll
        }
    }

    /// Starting point: the best of a `(c, θ)` grid at a middle `β`, then of a `β` grid.
    fn start(&self) -> [f64; DIM] {
        let [beta_axis, c_axis, theta_axis] = self.map.axes;
        let mid = |i: usize, n: usize| (i as f64 + 0.5) / n as f64;
        let beta = beta_axis.at(0.5);
        let mut best = (
            f64::NEG_INFINITY,
            [beta, c_axis.at(0.5), theta_axis.at(0.5)],
        );
        for i in 0..START_C {
            let c = c_axis.at(mid(i, START_C));
            for j in 0..START_THETA {
                let theta = theta_axis.at(mid(j, START_THETA));
                let value = self.profile(beta, c, theta);
                if value > best.0 {
                    best = (value, [beta, c, theta]);
                }
            }
        }
        let [_, c, theta] = best.1;
        for i in 0..START_BETA {
            let beta = beta_axis.at(mid(i, START_BETA));
            let value = self.profile(beta, c, theta);
            if value > best.0 {
                best = (value, [beta, c, theta]);
            }
        }
        self.map.x(best.1)
    }
}

struct Problem<'o, 'c, 'a>(&'o Objective<'c, 'a>);

fn as_array(x: &[f64]) -> [f64; DIM] {
    let mut a = [f64::NAN; DIM];
    for (a, v) in a.iter_mut().zip(x) {
        *a = *v;
    }
    a
}

impl CostFunction for Problem<'_, '_, '_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, x: &Self::Param) -> Result<f64, argmin::core::Error> {
        Ok(self.0.eval(as_array(x)).cost)
    }
}

impl Gradient for Problem<'_, '_, '_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, x: &Self::Param) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(self.0.eval(as_array(x)).grad.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cascade_data() -> (Vec<f64>, Vec<f64>) {
        let times = vec![0.0, 5.0, 12.0, 40.0, 41.0, 300.0, 900.0, 20_000.0];
        let marks = vec![120.0, 3.0, 0.0, 45.0, 1e4, 7.0, 2.0, 60.0];
        (times, marks)
    }

    fn objective<'c, 'a>(cascade: &'c PowerLawCascade<'a>, cap: f64) -> Objective<'c, 'a> {
        let config = FitConfig {
            max_branching: cap,
            ..FitConfig::default()
        };
        let map = BoxMap::new(&config, &PowerLawBounds::default()).unwrap();
        Objective::new(cascade, config.marks, map)
    }

    #[test]
    fn objective_gradient_matches_finite_differences_in_x() {
        let (times, marks) = cascade_data();
        let cascade = PowerLawCascade::new(&times, &marks, 30_000.0).unwrap();
        // A low cap makes n* clamped at some points: the gradient must hold on both sides.
        for cap in [0.99, 0.05] {
            let obj = objective(&cascade, cap);
            for x in [
                [-0.7, 0.2, 1.0],
                [1.5, -1.0, -2.0],
                [0.1, 2.0, 0.5],
                [-3.0, 3.0, 3.0],
            ] {
                let e = obj.compute(x);
                for i in 0..DIM {
                    let h = 1e-6;
                    let mut xp = x;
                    let mut xm = x;
                    xp[i] += h;
                    xm[i] -= h;
                    let fd = (obj.compute(xp).cost - obj.compute(xm).cost) / (2.0 * h);
                    let err = (fd - e.grad[i]).abs();
                    assert!(
                        err <= 1e-6 * (1.0 + e.grad[i].abs()),
                        "cap {cap}, x = {x:?}, i = {i}: analytic {} vs finite difference {fd}",
                        e.grad[i]
                    );
                }
            }
        }
    }

    #[test]
    fn objective_is_finite_everywhere_including_saturated_corners() {
        let (times, marks) = cascade_data();
        let cascade = PowerLawCascade::new(&times, &marks, 864_000.0).unwrap();
        let obj = objective(&cascade, 0.99);
        let values = [-1e6, -800.0, -40.0, -3.0, 0.0, 3.0, 40.0, 800.0, 1e6];
        for a in values {
            for b in values {
                for c in values {
                    let x = [a, b, c];
                    let e = obj.compute(x);
                    assert!(e.cost.is_finite(), "cost at {x:?}");
                    assert!(e.grad.iter().all(|g| g.is_finite()), "gradient at {x:?}");
                    assert!((N_STAR_MIN..=0.99).contains(&e.n_star), "{x:?}: {e:?}");
                    let (v, _) = obj.map.params(x);
                    for (axis, v) in obj.map.axes.iter().zip(v) {
                        assert!((axis.min..=axis.max).contains(&v), "{x:?}: {v}");
                    }
                }
            }
        }
        let (v, _) = obj.map.params([1e6, -1e6, 1e6]);
        assert_eq!(v, [1.0, 1.0, 3.0]);
    }

    #[test]
    fn box_map_round_trips() {
        let map = BoxMap::new(&FitConfig::default(), &PowerLawBounds::default()).unwrap();
        for v in [[0.7, 60.0, 0.4], [0.01, 1.5, 2.9]] {
            let (back, _) = map.params(map.x(v));
            for i in 0..DIM {
                assert!((back[i] / v[i] - 1.0).abs() < 1e-12, "{v:?} -> {back:?}");
            }
        }
    }
}
