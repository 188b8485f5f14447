//! MAP / MLE fit of `(p, beta)`: `p` profiled out in closed form (MLE) or by a safeguarded
//! Newton solve (MAP), then a 1-D search over `ln beta`: a grid brackets the stationary points
//! of the profile, Brent's root finder refines them on its envelope-theorem derivative.

mod lbfgs;

use std::cell::RefCell;

use argmin::core::{CostFunction, Executor, State};
use argmin::solver::brent::BrentRoot;

use crate::prior::LogNormalParams;
use crate::{predict_final_size, Cascade, HawkesError, MarkDistribution, Prior};

/// Lower bound of `p`.
pub const P_MIN: f64 = 1e-8;
/// Lower bound of `beta`: 1/(10 days), in 1/s.
pub const BETA_MIN: f64 = 1.0 / (10.0 * 86_400.0);
/// Upper bound of `beta`: 1/(60 s), in 1/s.
pub const BETA_MAX: f64 = 1.0 / 60.0;

/// Number of points of the `ln beta` grid that brackets the maxima of the profile objective,
/// evenly spaced from `ln BETA_MIN` to `ln BETA_MAX` (both faces included).
const GRID: usize = 16;
/// At most this many grid cells holding a local maximum of the profile are refined (the
/// profile can be multimodal); the cells are ranked by their best end.
const MAX_PEAKS: usize = 2;
/// Tolerance of the root finder on `ln beta`, relative to `|ln beta|`.
const LOG_BETA_TOL: f64 = 1e-10;
/// Iteration cap of the Newton solve for the MAP `ln p` given `beta` (it converges in a few).
const NEWTON_MAX: usize = 60;
/// Starting points are kept this far (as a fraction of the log-range) from the box faces, where
/// the logistic map is flat.
pub(crate) const START_MARGIN: f64 = 1e-3;
/// At most this many L-BFGS runs (restarts from the best point after a line-search failure;
/// reference solver and power-law fit).
pub(crate) const MAX_RUNS: usize = 3;

/// Settings of [`fit`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FitConfig {
    /// Mark distribution: its mean converts `p` into the branching factor `n* = p·E[m]`.
    pub marks: MarkDistribution,
    /// Prior for a MAP fit; `None` gives the maximum-likelihood fit.
    pub prior: Option<Prior>,
    /// Upper bound of the branching factor, in (0, 1): `p ≤ max_branching / E[m]`.
    pub max_branching: f64,
    /// Budget of steps of the search over `ln beta` after its grid (see
    /// [`HawkesFit::iterations`]); 0 returns the best grid point, with its profiled `p`. For
    /// the power-law fit: L-BFGS iterations over all restarts.
    pub max_iterations: u64,
}

impl Default for FitConfig {
    /// MAP with the default prior and marks, `max_branching = 0.99`, 100 iterations.
    fn default() -> Self {
        Self {
            marks: MarkDistribution::default(),
            prior: Some(Prior::default()),
            max_branching: 0.99,
            max_iterations: 100,
        }
    }
}

/// Box of admissible `(p, beta)`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bounds {
    /// Lower bound of `p` ([`P_MIN`]).
    pub p_min: f64,
    /// Upper bound of `p`: `max_branching / E[m]`.
    pub p_max: f64,
    /// Lower bound of `beta` ([`BETA_MIN`]).
    pub beta_min: f64,
    /// Upper bound of `beta` ([`BETA_MAX`]).
    pub beta_max: f64,
}

impl FitConfig {
    /// The default configuration without prior (maximum likelihood).
    pub fn mle() -> Self {
        Self {
            prior: None,
            ..Self::default()
        }
    }

    /// Checks the marks, the prior, `max_branching` and that the box is not empty.
    pub fn validate(&self) -> Result<(), HawkesError> {
        self.bounds().map(|_| ())
    }

    /// The box of admissible parameters (validates the configuration first).
    pub fn bounds(&self) -> Result<Bounds, HawkesError> {
        self.marks.validate()?;
        if let Some(prior) = &self.prior {
            prior.log_space()?;
        }
        if !(self.max_branching > 0.0 && self.max_branching < 1.0) {
            return Err(HawkesError::InvalidMaxBranching {
                value: self.max_branching,
            });
        }
        let p_max = self.max_branching / self.marks.mean();
        if p_max.is_nan() || p_max <= P_MIN {
            return Err(HawkesError::EmptyParameterBox {
                p_min: P_MIN,
                p_max,
            });
        }
        Ok(Bounds {
            p_min: P_MIN,
            p_max,
            beta_min: BETA_MIN,
            beta_max: BETA_MAX,
        })
    }
}

/// Result of a fit.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HawkesFit {
    /// Fitted `p` (excitation per follower).
    pub p: f64,
    /// Fitted `beta` (decay rate, 1/s).
    pub beta: f64,
    /// Branching factor `n* = p·E[m]` (below `max_branching`).
    pub n_star: f64,
    /// `G1 = p·Σ m_i e^{−beta(T − t_i)}`: expected direct children after the horizon.
    pub g1: f64,
    /// Number of observed events.
    pub n_obs: usize,
    /// Maximised objective: log-likelihood plus prior log-density (MAP) or log-likelihood (MLE).
    pub log_objective: f64,
    /// Steps of the search over `ln beta` after its grid: Brent iterations (one profile
    /// evaluation each, summed over the refined cells) plus one per face of the `beta` range
    /// accepted as a local maximum; 0 means the best grid point was kept.
    pub iterations: u64,
}

impl HawkesFit {
    /// Predicted final size `n + omega·G1/(1 − n*)` (see [`predict_final_size`]).
    pub fn predicted_size(&self, omega: f64) -> Result<f64, HawkesError> {
        predict_final_size(self.n_obs, self.g1, self.n_star, omega)
    }
}

/// Fits `(p, beta)` to one cascade: MAP if `config.prior` is set, MLE otherwise.
///
/// `times` may be absolute or relative to the first event; `horizon` is in seconds after the
/// first event and must be strictly after the last event (later events are an error, not
/// ignored); marks below 1 count as 1. Needs at least 2 events.
///
/// For a given `beta` the objective is strictly concave in `ln p`, so `p` is profiled out: in
/// closed form `(n−1)/compensator(beta)` for the MLE, by a safeguarded Newton solve in `ln p`
/// for MAP (the log-normal prior adds a term linear in `ln p` to the derivative), then clamped
/// to `[p_min, p_max]`. The profile objective and its derivative in `ln beta` (by the envelope
/// theorem, the partial derivative at the profiled `p`, clamped or not) are evaluated on a grid
/// of 16 values of `ln beta`, faces included. Each cell where the derivative changes sign from
/// `+` to `−` holds a local maximum; the best two such cells are refined by Brent's root finder
/// (argmin's [`BrentRoot`]) on the derivative, to `1e-10·|ln beta|`. A face of the `beta`
/// range where the derivative points outwards is itself a local maximum, taken as is. The
/// best of these local maxima is returned.
pub fn fit(
    times: &[f64],
    marks: &[f64],
    horizon: f64,
    config: &FitConfig,
) -> Result<HawkesFit, HawkesError> {
    if times.len() == marks.len() && times.len() < 2 {
        return Err(HawkesError::TooFewEvents {
            n: times.len(),
            needed: 2,
        });
    }
    let cascade = Cascade::new(times, marks, horizon)?;
    fit_cascade(&cascade, config)
}

/// [`fit`] on an already validated [`Cascade`].
pub fn fit_cascade(cascade: &Cascade<'_>, config: &FitConfig) -> Result<HawkesFit, HawkesError> {
    if cascade.len() < 2 {
        return Err(HawkesError::TooFewEvents {
            n: cascade.len(),
            needed: 2,
        });
    }
    let bounds = config.bounds()?;
    let prior = config.prior.map(|p| p.log_space()).transpose()?;
    let profile = Profile::new(cascade, prior, &bounds);

    let (lb_lo, lb_hi) = (bounds.beta_min.ln(), bounds.beta_max.ln());
    let grid: [Point; GRID] = std::array::from_fn(|i| {
        // The faces exactly, not exp(ln(face)).
        let beta = match i {
            0 => bounds.beta_min,
            i if i == GRID - 1 => bounds.beta_max,
            _ => (lb_lo + (lb_hi - lb_lo) * i as f64 / (GRID - 1) as f64).exp(),
        };
        profile.at_beta(beta)
    });
    let best_of = |points: &mut dyn Iterator<Item = Point>| {
        points
            .filter(|g| g.value.is_finite())
            .max_by(|a, b| a.value.total_cmp(&b.value))
    };
    // With no budget, the best grid point (the former "starting point"); it also stands if
    // the refined maxima are no better (a third mode, or non-finite derivatives).
    let mut best = best_of(&mut grid.iter().copied()).unwrap_or(grid[GRID / 2]);
    let mut iterations = 0;
    if config.max_iterations > 0 {
        let (faces, cells) = local_maxima(&grid);
        // A face accepted as a local maximum counts as one step of the search.
        let mut found: Vec<Point> = faces
            .into_iter()
            .take(usize::try_from(config.max_iterations).unwrap_or(usize::MAX))
            .collect();
        iterations += found.len() as u64;
        for i in cells {
            let budget = config.max_iterations - iterations;
            if budget == 0 {
                break;
            }
            let (point, iters) = refine(&profile, grid[i], grid[i + 1], budget);
            iterations += iters;
            found.push(point);
        }
        if let Some(b) = best_of(&mut found.into_iter()) {
            if b.value >= best.value {
                best = b;
            }
        }
    }
    Ok(finish(
        cascade,
        config,
        prior.as_ref(),
        best.p,
        best.beta,
        iterations,
    ))
}

impl FitConfig {
    /// The former L-BFGS solver (logistic reparametrisation of the box), for comparisons in
    /// benchmarks and tests only; `iterations` counts L-BFGS iterations. Same checks and
    /// errors as [`fit_cascade`].
    #[doc(hidden)]
    pub fn fit_cascade_lbfgs(&self, cascade: &Cascade<'_>) -> Result<HawkesFit, HawkesError> {
        lbfgs::fit_cascade(cascade, self)
    }
}

/// The result at `(p, beta)`, objective recomputed from the public likelihood and prior.
fn finish(
    cascade: &Cascade<'_>,
    config: &FitConfig,
    prior: Option<&LogNormalParams>,
    p: f64,
    beta: f64,
    iterations: u64,
) -> HawkesFit {
    let ll = cascade.log_likelihood(p, beta);
    let log_prior = prior.map_or(0.0, |l| l.log_density(p, beta));
    HawkesFit {
        p,
        beta,
        n_star: p * config.marks.mean(),
        g1: cascade.g1(p, beta),
        n_obs: cascade.len(),
        log_objective: ll + log_prior,
        iterations,
    }
}

/// Local maxima of the profile seen on the grid: the faces where the derivative points
/// outwards (exact, as points) and the cells `[i, i+1]` where it changes sign from `+` to `−`
/// (as indices `i`, best end first, at most [`MAX_PEAKS`]).
fn local_maxima(grid: &[Point; GRID]) -> (Vec<Point>, Vec<usize>) {
    let mut faces = Vec::new();
    if grid[0].slope <= 0.0 {
        faces.push(grid[0]);
    }
    if grid[GRID - 1].slope >= 0.0 {
        faces.push(grid[GRID - 1]);
    }
    let mut cells: Vec<usize> = (0..GRID - 1)
        .filter(|&i| grid[i].slope > 0.0 && grid[i + 1].slope <= 0.0)
        .collect();
    let top = |i: usize| grid[i].value.max(grid[i + 1].value);
    cells.sort_by(|&a, &b| top(b).total_cmp(&top(a)));
    cells.truncate(MAX_PEAKS);
    (faces, cells)
}

/// The stationary point of the profile in the cell `[lo, hi]` (derivative `> 0` at `lo`,
/// `≤ 0` at `hi`) by Brent's root finder, within `budget` iterations; returns it (or, if the
/// solver fails, the better end) and the iterations done.
fn refine(profile: &Profile<'_, '_>, lo: Point, hi: Point, budget: u64) -> (Point, u64) {
    let (a, b) = (lo.beta.ln(), hi.beta.ln());
    let slope = Slope {
        profile,
        seen: RefCell::new(vec![(a, lo), (b, hi)]),
    };
    let tol = LOG_BETA_TOL * a.abs().max(b.abs());
    let solver = BrentRoot::new(a, b, tol);
    let fallback = if lo.value >= hi.value { lo } else { hi };
    let run = Executor::new(&slope, solver)
        .configure(|state| state.max_iters(budget))
        .run();
    match run {
        Ok(result) => {
            let iters = result.state.get_iter();
            let point = result
                .state
                .get_param()
                .and_then(|x| slope.point(*x))
                .unwrap_or(fallback);
            (point, iters)
        }
        Err(_) => (fallback, 0),
    }
}

/// A point of the profile: `beta`, its best `p` in the box, the objective there and its
/// derivative with respect to `ln beta`.
#[derive(Debug, Clone, Copy)]
struct Point {
    p: f64,
    beta: f64,
    value: f64,
    slope: f64,
}

/// The profile objective `beta ↦ max_p objective(p, beta)` over the box.
struct Profile<'c, 'a> {
    cascade: &'c Cascade<'a>,
    prior: Option<LogNormalParams>,
    /// `n − 1`.
    k: f64,
    bounds: Bounds,
    lp_min: f64,
    lp_max: f64,
}

impl<'c, 'a> Profile<'c, 'a> {
    fn new(cascade: &'c Cascade<'a>, prior: Option<LogNormalParams>, bounds: &Bounds) -> Self {
        Self {
            cascade,
            prior,
            k: cascade.events_after_first(),
            bounds: *bounds,
            lp_min: bounds.p_min.ln(),
            lp_max: bounds.p_max.ln(),
        }
    }

    /// The profile and its derivative at `beta` (one likelihood pass with gradient). By the
    /// envelope theorem the derivative is the partial one at the profiled `p`: either
    /// `∂/∂ln p = 0` there, or `p` sits on a face and does not move.
    fn at_beta(&self, beta: f64) -> Point {
        let s = self.cascade.pass_with_gradient(beta);
        let lb = beta.ln();
        let (p, lp) = self.best_p(lb, s.compensator);
        let mut value = self.k * (lp + lb) + s.log_excitation - p * s.compensator;
        let mut slope = self.k + beta * (s.d_log_excitation - p * s.d_compensator);
        if let Some(prior) = &self.prior {
            let (v, g) = prior.log_density_log_space(lp, lb);
            value += v;
            slope += g[1];
        }
        Point {
            p,
            beta,
            value,
            slope,
        }
    }

    /// `(p, ln p)` maximising the objective at `ln beta = lb` over `[p_min, p_max]`, given the
    /// compensator at that `beta`. The objective is strictly concave in `ln p`: its derivative
    /// `k − p·compensator (+ prior term, linear and decreasing in ln p)` has a unique root.
    fn best_p(&self, lb: f64, compensator: f64) -> (f64, f64) {
        // Root of the likelihood part alone (+∞ if the compensator vanishes).
        let lp_mle = if compensator > 0.0 {
            (self.k / compensator).ln()
        } else {
            f64::INFINITY
        };
        let Some(prior) = &self.prior else {
            return self.clamp_log_p(lp_mle);
        };
        let det = prior.var_log_p * prior.var_log_beta - prior.cov_log * prior.cov_log;
        let slope = prior.var_log_beta / det;
        // ∂ prior/∂ln p = offset − slope·ln p; its root is offset/slope.
        let offset =
            slope * prior.mean_log_p + prior.cov_log * (lb - prior.mean_log_beta) / det - 1.0;
        let derivative = |lp: f64| -> (f64, f64) {
            let pc = lp.exp() * compensator;
            (self.k - pc + offset - slope * lp, -pc - slope)
        };
        // Both parts decrease in ln p, so the root lies between their roots.
        let lp_prior = offset / slope;
        let (mut lo, mut hi) = if lp_mle < lp_prior {
            (lp_mle, lp_prior)
        } else {
            (lp_prior, lp_mle)
        };
        if hi > self.lp_max {
            if derivative(self.lp_max).0 >= 0.0 {
                return (self.bounds.p_max, self.lp_max);
            }
            hi = self.lp_max;
        }
        if lo < self.lp_min {
            if derivative(self.lp_min).0 <= 0.0 {
                return (self.bounds.p_min, self.lp_min);
            }
            lo = self.lp_min;
        }
        // Newton, safeguarded by bisection of the bracket [lo, hi] (derivative > 0 at lo,
        // < 0 at hi); starts at the likelihood root, where the data dominate.
        let mut x = lp_mle.clamp(lo, hi);
        for _ in 0..NEWTON_MAX {
            let (g, dg) = derivative(x);
            let step = -g / dg;
            if step.abs() <= 4.0 * f64::EPSILON * x.abs().max(1.0) {
                x += step;
                break;
            }
            if g > 0.0 {
                lo = x;
            } else {
                hi = x;
            }
            x = if x + step > lo && x + step < hi {
                x + step
            } else {
                0.5 * (lo + hi)
            };
        }
        self.clamp_log_p(x)
    }

    /// `(p, ln p)` for `ln p` clamped to the box (exact faces).
    fn clamp_log_p(&self, lp: f64) -> (f64, f64) {
        if lp >= self.lp_max {
            (self.bounds.p_max, self.lp_max)
        } else if lp <= self.lp_min {
            (self.bounds.p_min, self.lp_min)
        } else {
            (lp.exp().clamp(self.bounds.p_min, self.bounds.p_max), lp)
        }
    }
}

/// argmin adaptor: the derivative of the profile as a function of `ln beta` (clamped to the
/// box). Remembers the points it evaluated (the grid ends included, so they are not
/// recomputed), so that the root can be returned without another pass.
struct Slope<'p, 'c, 'a> {
    profile: &'p Profile<'c, 'a>,
    seen: RefCell<Vec<(f64, Point)>>,
}

impl Slope<'_, '_, '_> {
    fn point(&self, lb: f64) -> Option<Point> {
        let seen = self.seen.borrow();
        seen.iter().find(|(x, _)| *x == lb).map(|(_, point)| *point)
    }
}

impl CostFunction for &Slope<'_, '_, '_> {
    type Param = f64;
    type Output = f64;

    fn cost(&self, lb: &f64) -> Result<f64, argmin::core::Error> {
        let point = match self.point(*lb) {
            Some(point) => point,
            None => {
                let b = &self.profile.bounds;
                let point = self.profile.at_beta(lb.exp().clamp(b.beta_min, b.beta_max));
                self.seen.borrow_mut().push((*lb, point));
                point
            }
        };
        Ok(point.slope)
    }
}

/// `(σ(x), σ'(x))`, accurate in both tails.
pub(crate) fn sigmoid(x: f64) -> (f64, f64) {
    let e = (-x.abs()).exp();
    let d = e / ((1.0 + e) * (1.0 + e));
    if x >= 0.0 {
        (1.0 / (1.0 + e), d)
    } else {
        (e / (1.0 + e), d)
    }
}

pub(crate) fn logit(f: f64) -> f64 {
    (f / (1.0 - f)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cascade_data() -> (Vec<f64>, Vec<f64>) {
        let times = vec![0.0, 5.0, 12.0, 40.0, 41.0, 300.0, 900.0, 2_000.0];
        let marks = vec![120.0, 3.0, 0.0, 45.0, 1e4, 7.0, 2.0, 60.0];
        (times, marks)
    }

    fn priors() -> [Option<LogNormalParams>; 2] {
        [None, Some(Prior::default().log_space().unwrap())]
    }

    /// The profiled `p` beats a fine scan over `ln p`, and the profile value matches the
    /// public objective there.
    #[test]
    fn profiled_p_is_the_best_p_for_each_beta() {
        let (times, marks) = cascade_data();
        let cascade = Cascade::new(&times, &marks, 3_600.0).unwrap();
        let bounds = FitConfig::default().bounds().unwrap();
        for prior in priors() {
            let profile = Profile::new(&cascade, prior, &bounds);
            let objective = |p: f64, beta: f64| {
                cascade.log_likelihood(p, beta) + prior.map_or(0.0, |l| l.log_density(p, beta))
            };
            for beta in [BETA_MIN, 6e-6, 1.2e-4, 7e-4, 2.5e-3, 6.7e-3, BETA_MAX] {
                let point = profile.at_beta(beta);
                assert!((bounds.p_min..=bounds.p_max).contains(&point.p));
                let own = objective(point.p, beta);
                assert!((point.value - own).abs() <= 1e-12 * own.abs(), "{point:?}");
                let scan = (0..=4_000)
                    .map(|i| {
                        let p = bounds.p_min * (bounds.p_max / bounds.p_min).powf(i as f64 / 4e3);
                        objective(p, beta)
                    })
                    .fold(f64::NEG_INFINITY, f64::max);
                assert!(
                    point.value >= scan - 1e-12 * scan.abs(),
                    "{point:?} vs {scan}"
                );
            }
        }
    }

    /// The envelope derivative matches central differences of the profile in `ln beta`,
    /// including where `p` is clamped at `p_max`.
    #[test]
    fn profile_slope_matches_finite_differences() {
        let (times, marks) = cascade_data();
        let cascade = Cascade::new(&times, &marks, 3_600.0).unwrap();
        let bounds = FitConfig::default().bounds().unwrap();
        for prior in priors() {
            let profile = Profile::new(&cascade, prior, &bounds);
            let mut clamped = false;
            for lb in [-13.0, -11.0, -9.5, -8.0, -7.0, -6.0, -5.0, -4.3] {
                let point = profile.at_beta(f64::exp(lb));
                clamped |= point.p == bounds.p_max;
                let h = 1e-5;
                let fd = (profile.at_beta(f64::exp(lb + h)).value
                    - profile.at_beta(f64::exp(lb - h)).value)
                    / (2.0 * h);
                assert!(
                    (fd - point.slope).abs() <= 1e-5 * (1.0 + point.slope.abs()),
                    "ln beta {lb}: {point:?} vs finite difference {fd}"
                );
            }
            assert!(clamped, "no point with p at p_max was checked");
        }
    }

    #[test]
    fn local_maxima_are_outward_faces_and_sign_changes() {
        let at = |value: f64, slope: f64| Point {
            p: 0.01,
            beta: 1e-3,
            value,
            slope,
        };
        // Faces pointing outwards, two interior maxima (cells 3 and 9), one minimum.
        let mut grid = [at(0.0, 1.0); GRID];
        grid[0] = at(5.0, -1.0);
        grid[1] = at(4.0, -1.0);
        grid[2] = at(3.0, 1.0);
        grid[3] = at(4.0, 2.0);
        grid[4] = at(4.5, -1.0);
        for g in &mut grid[5..=9] {
            *g = at(6.0, 1.0);
        }
        grid[10] = at(7.0, -1.0);
        for g in &mut grid[11..GRID - 1] {
            *g = at(1.0, 1.0);
        }
        grid[GRID - 1] = at(2.0, 0.5);
        let (faces, cells) = local_maxima(&grid);
        assert_eq!(faces.len(), 2);
        assert_eq!(cells, vec![9, 3]);
        // The best grid cell first; at most MAX_PEAKS of them.
        grid[1] = at(4.0, 1.0);
        grid[2] = at(3.0, -1.0);
        let (_, cells) = local_maxima(&grid);
        assert_eq!(cells.len(), MAX_PEAKS);
        assert_eq!(cells[0], 9);
    }
}
