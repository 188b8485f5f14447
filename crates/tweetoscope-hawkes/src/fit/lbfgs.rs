//! The former solver of [`fit_cascade`](super::fit_cascade): L-BFGS with a More–Thuente line
//! search on `x ∈ ℝ²`, mapped into the box by `ln p = ln p_min + ln(p_max/p_min)·σ(x₀)` (same
//! for `beta`), started from the best of a `beta` grid (with the closed-form best `p` for each
//! `beta`) and, for MAP, the prior mode and mean. Kept for comparison only (benchmarks and the
//! convergence tests): on flat optima it stops a few per cent away from the optimum.

use std::cell::Cell;

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;

use super::{logit, sigmoid, Bounds, FitConfig, HawkesFit, MAX_RUNS, START_MARGIN};
use crate::likelihood::Pass;
use crate::prior::LogNormalParams;
use crate::{Cascade, HawkesError};

/// Number of `beta` values of the grid that picks the starting point.
const START_GRID: usize = 16;

/// The L-BFGS fit (checks as in [`fit_cascade`](super::fit_cascade)); `iterations` counts
/// L-BFGS iterations summed over restarts.
pub(super) fn fit_cascade(
    cascade: &Cascade<'_>,
    config: &FitConfig,
) -> Result<HawkesFit, HawkesError> {
    if cascade.len() < 2 {
        return Err(HawkesError::TooFewEvents {
            n: cascade.len(),
            needed: 2,
        });
    }
    let bounds = config.bounds()?;
    let prior = config.prior.map(|p| p.log_space()).transpose()?;
    let objective = Objective::new(cascade, prior, &bounds);

    let mut x0 = objective.start();
    // Records the starting point as the best so far (what is returned with no iterations).
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
            // A line-search failure (or an argmin error): retry from the best point with a
            // fresh curvature memory, unless that run achieved nothing.
            Some(TerminationReason::SolverExit(_)) | None if improved => {
                x0 = objective.best().x;
            }
            _ => break,
        }
    }

    let best = objective.best();
    let (p, beta, _, _) = objective.map.params(best.x);
    Ok(super::finish(
        cascade,
        config,
        prior.as_ref(),
        p,
        beta,
        iterations,
    ))
}

/// Runs L-BFGS from `x0`; returns the iterations done and why it stopped (`None`: argmin
/// error). Whatever happens, the objective has recorded the best point it evaluated.
fn run_lbfgs(
    objective: &Objective<'_, '_>,
    x0: [f64; 2],
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

/// Logistic maps of `x ∈ ℝ²` onto the box, linear in `(ln p, ln beta)`.
#[derive(Debug, Clone, Copy)]
struct BoxMap {
    bounds: Bounds,
    lp_lo: f64,
    lp_width: f64,
    lb_lo: f64,
    lb_width: f64,
}

impl BoxMap {
    fn new(bounds: &Bounds) -> Self {
        Self {
            bounds: *bounds,
            lp_lo: bounds.p_min.ln(),
            lp_width: (bounds.p_max / bounds.p_min).ln(),
            lb_lo: bounds.beta_min.ln(),
            lb_width: (bounds.beta_max / bounds.beta_min).ln(),
        }
    }

    /// `(p, beta, ∂ln p/∂x₀, ∂ln beta/∂x₁)`.
    fn params(&self, x: [f64; 2]) -> (f64, f64, f64, f64) {
        let (s0, d0) = sigmoid(x[0]);
        let (s1, d1) = sigmoid(x[1]);
        let b = &self.bounds;
        // Exact faces when saturated; clamped against rounding otherwise.
        let inside = |s: f64, lo: f64, width: f64, min: f64, max: f64| match s {
            0.0 => min,
            1.0 => max,
            _ => (lo + width * s).exp().clamp(min, max),
        };
        let p = inside(s0, self.lp_lo, self.lp_width, b.p_min, b.p_max);
        let beta = inside(s1, self.lb_lo, self.lb_width, b.beta_min, b.beta_max);
        (p, beta, self.lp_width * d0, self.lb_width * d1)
    }

    /// Inverse of [`BoxMap::params`], kept [`START_MARGIN`] away from the faces.
    fn x(&self, p: f64, beta: f64) -> [f64; 2] {
        let f = |v: f64, lo: f64, width: f64| {
            let frac = (v.ln() - lo) / width;
            logit(if frac.is_nan() {
                0.5
            } else {
                frac.clamp(START_MARGIN, 1.0 - START_MARGIN)
            })
        };
        [
            f(p, self.lp_lo, self.lp_width),
            f(beta, self.lb_lo, self.lb_width),
        ]
    }
}

/// One evaluation of the objective in `x` space.
#[derive(Debug, Clone, Copy)]
struct Eval {
    x: [f64; 2],
    cost: f64,
    grad: [f64; 2],
}

/// Negative log-posterior (or log-likelihood) divided by the number of events, as a function
/// of the unconstrained `x`. Caches the last evaluation (argmin asks for cost and gradient
/// separately) and records the best one.
struct Objective<'c, 'a> {
    cascade: &'c Cascade<'a>,
    prior: Option<LogNormalParams>,
    map: BoxMap,
    scale: f64,
    last: Cell<Option<Eval>>,
    best: Cell<Eval>,
}

impl<'c, 'a> Objective<'c, 'a> {
    fn new(cascade: &'c Cascade<'a>, prior: Option<LogNormalParams>, bounds: &Bounds) -> Self {
        Self {
            cascade,
            prior,
            map: BoxMap::new(bounds),
            scale: 1.0 / cascade.len() as f64,
            last: Cell::new(None),
            best: Cell::new(Eval {
                x: [0.0; 2],
                cost: f64::INFINITY,
                grad: [0.0; 2],
            }),
        }
    }

    fn best(&self) -> Eval {
        self.best.get()
    }

    fn eval(&self, x: [f64; 2]) -> Eval {
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

    fn compute(&self, x: [f64; 2]) -> Eval {
        let bad = Eval {
            x,
            cost: f64::INFINITY,
            grad: [0.0; 2],
        };
        if !(x[0].is_finite() && x[1].is_finite()) {
            return bad;
        }
        let (p, beta, jp, jb) = self.map.params(x);
        let (lp, lb) = (p.ln(), beta.ln());
        let k = self.cascade.events_after_first();
        let s = self.cascade.pass_with_gradient(beta);
        let ll = k * (lp + lb) + s.log_excitation - p * s.compensator;
        // Gradient with respect to (ln p, ln beta).
        let mut g = [
            k - p * s.compensator,
            k + beta * (s.d_log_excitation - p * s.d_compensator),
        ];
        let mut total = ll;
        if let Some(prior) = &self.prior {
            let (v, pg) = prior.log_density_log_space(lp, lb);
            total += v;
            g[0] += pg[0];
            g[1] += pg[1];
        }
        let grad = [-g[0] * jp * self.scale, -g[1] * jb * self.scale];
        let cost = -total * self.scale;
        if cost.is_finite() && grad.iter().all(|v| v.is_finite()) {
            Eval { x, cost, grad }
        } else {
            bad
        }
    }

    /// Log-likelihood plus prior log-density from a pass at `beta`.
    fn log_objective(&self, p: f64, beta: f64, s: &Pass) -> f64 {
        let k = self.cascade.events_after_first();
        let ll = k * (p.ln() + beta.ln()) + s.log_excitation - p * s.compensator;
        ll + self.prior.map_or(0.0, |prior| {
            prior.log_density_log_space(p.ln(), beta.ln()).0
        })
    }

    /// Best starting point: a `beta` grid, each with the `p` maximising the likelihood for that
    /// `beta` (`(n−1)/compensator`), plus the prior mode and mean for MAP. One likelihood pass
    /// per candidate.
    fn start(&self) -> [f64; 2] {
        let k = self.cascade.events_after_first();
        let b = self.map.bounds;
        let mut best = (
            f64::NEG_INFINITY,
            self.map.x(b.p_min.sqrt() * b.p_max.sqrt(), 1e-3),
        );
        let mut consider = |x: [f64; 2], beta: f64, s: &Pass| {
            let (p, _, _, _) = self.map.params(x);
            let value = self.log_objective(p, beta, s);
            if value > best.0 {
                best = (value, x);
            }
        };
        for i in 0..START_GRID {
            let frac = (i as f64 + 0.5) / START_GRID as f64;
            let beta = (self.map.lb_lo + self.map.lb_width * frac).exp();
            let s = self.cascade.pass(beta);
            consider(self.map.x(k / s.compensator, beta), beta, &s);
        }
        if let Some(prior) = &self.prior {
            let mean = (
                (prior.mean_log_p + 0.5 * prior.var_log_p).exp(),
                (prior.mean_log_beta + 0.5 * prior.var_log_beta).exp(),
            );
            for (p, beta) in [prior.mode(), mean] {
                let x = self.map.x(p, beta);
                let (_, beta, _, _) = self.map.params(x);
                consider(x, beta, &self.cascade.pass(beta));
            }
        }
        best.1
    }
}

/// argmin adaptor borrowing the objective (so its records survive the executor).
struct Problem<'o, 'c, 'a>(&'o Objective<'c, 'a>);

fn as_array(x: &[f64]) -> [f64; 2] {
    [
        x.first().copied().unwrap_or(f64::NAN),
        x.get(1).copied().unwrap_or(f64::NAN),
    ]
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

    #[test]
    fn objective_gradient_matches_finite_differences_in_x() {
        let (times, marks) = cascade_data();
        let cascade = Cascade::new(&times, &marks, 30_000.0).unwrap();
        let config = FitConfig::default();
        let bounds = config.bounds().unwrap();
        let prior = config.prior.map(|p| p.log_space().unwrap());
        for prior in [prior, None] {
            let obj = Objective::new(&cascade, prior, &bounds);
            for x in [[0.3, -0.7], [-2.0, 1.5], [1.2, 0.1], [-4.0, -3.0]] {
                let e = obj.compute(x);
                for i in 0..2 {
                    let h = 1e-6;
                    let mut xp = x;
                    let mut xm = x;
                    xp[i] += h;
                    xm[i] -= h;
                    let fd = (obj.compute(xp).cost - obj.compute(xm).cost) / (2.0 * h);
                    let err = (fd - e.grad[i]).abs();
                    assert!(
                        err <= 1e-6 * (1.0 + e.grad[i].abs()),
                        "x = {x:?}, i = {i}: analytic {} vs finite difference {fd}",
                        e.grad[i]
                    );
                }
            }
        }
    }

    #[test]
    fn objective_is_finite_everywhere_including_saturated_corners() {
        let (times, marks) = cascade_data();
        let cascade = Cascade::new(&times, &marks, 864_000.0).unwrap();
        let config = FitConfig::default();
        let bounds = config.bounds().unwrap();
        let obj = Objective::new(
            &cascade,
            config.prior.map(|p| p.log_space().unwrap()),
            &bounds,
        );
        for a in [-1e6, -800.0, -40.0, 0.0, 40.0, 800.0, 1e6] {
            for b in [-1e6, -800.0, -40.0, 0.0, 40.0, 800.0, 1e6] {
                let e = obj.compute([a, b]);
                assert!(e.cost.is_finite(), "cost at x = ({a}, {b})");
                assert!(
                    e.grad.iter().all(|g| g.is_finite()),
                    "gradient at ({a}, {b})"
                );
                let (p, beta, _, _) = obj.map.params([a, b]);
                assert!((bounds.p_min..=bounds.p_max).contains(&p));
                assert!((bounds.beta_min..=bounds.beta_max).contains(&beta));
            }
        }
        // The saturated corners are the box corners.
        let (p, beta, _, _) = obj.map.params([1e6, -1e6]);
        assert_eq!((p, beta), (bounds.p_max, bounds.beta_min));
        let (p, beta, _, _) = obj.map.params([-1e6, 1e6]);
        assert_eq!((p, beta), (bounds.p_min, bounds.beta_max));
    }

    #[test]
    fn box_map_round_trips() {
        let bounds = FitConfig::default().bounds().unwrap();
        let map = BoxMap::new(&bounds);
        for (p, beta) in [(0.02, 1.0 / 600.0), (1e-5, 1e-5), (0.027, 0.015)] {
            let (p2, b2, _, _) = map.params(map.x(p, beta));
            assert!((p2 / p - 1.0).abs() < 1e-12, "{p} -> {p2}");
            assert!((b2 / beta - 1.0).abs() < 1e-12, "{beta} -> {b2}");
        }
    }
}
