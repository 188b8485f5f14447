//! Convergence of the exponential-kernel fit: on simulated and real (TiDeH) cascades, the fit
//! reaches the optimum of its objective, as found by references written here that do not call
//! the crate's solver:
//! - MLE: `p` has a closed form given `beta` (`(n−1)/compensator`, clamped to the box; the
//!   compensator is recomputed here), so a 2,000-point grid over `ln beta` brackets the
//!   maximum and a golden-section search refines it;
//! - MAP: a 2-D grid over `(ln p, ln beta)` (400 × 400), then Nelder–Mead with restarts.
//!
//! The objective is the crate's public log-likelihood plus the public prior log-density.
//! Tolerances: the fit's objective is at least the reference's minus [`OBJ_TOL`] (relative);
//! `p` and `beta` are within [`PARAM_TOL`] (relative) of the reference's. The former L-BFGS
//! solver (`FitConfig::fit_cascade_lbfgs`) is measured the same way and its misses printed
//! (`cargo test --test convergence -- --nocapture`).

use std::path::Path;
use std::time::Instant;

use rand::{rngs::StdRng, SeedableRng};
use tweetoscope_hawkes::simulate::simulate_cascade_from;
use tweetoscope_hawkes::{
    Bounds, Cascade, FitConfig, HawkesFit, LogNormalParams, MarkDistribution,
};

/// Relative tolerance on the objective: `fit ≥ reference − OBJ_TOL·|reference|`.
const OBJ_TOL: f64 = 1e-10;
/// Relative tolerance on `p` and `beta` against the reference.
const PARAM_TOL: f64 = 1e-3;
/// Points of the MLE reference grid over `ln beta`.
const MLE_GRID: usize = 2_000;
/// Points per axis of the MAP reference grid over `(ln p, ln beta)`.
const MAP_GRID: usize = 400;
/// TiDeH files used (`RT1.txt` … `RT{TIDEH_FILES}.txt`) and observation times (s).
const TIDEH_FILES: usize = 20;
const TIDEH_HORIZONS: [f64; 3] = [600.0, 3_600.0, 21_600.0];

/// A cascade to fit.
struct Case {
    name: String,
    times: Vec<f64>,
    marks: Vec<f64>,
    horizon: f64,
}

/// A reference optimum.
#[derive(Debug, Clone, Copy)]
struct Reference {
    p: f64,
    beta: f64,
    value: f64,
}

/// Simulated cascades of 20–2,000 events over a range of `n*`, `beta` and observation times.
fn simulated_cases() -> Vec<Case> {
    let marks = MarkDistribution::default();
    // (n*, beta, first mark, t_obs in units of 1/beta)
    let settings = [
        (0.3, 1.0 / 60.0, 2e3, 3.0),
        (0.6, 1.0 / 600.0, 1e3, 1.0),
        (0.6, 1.0 / 600.0, 1e4, 5.0),
        (0.8, 1.0 / 3_600.0, 3e3, 0.5),
        (0.9, 1.0 / 1_800.0, 500.0, 10.0),
        (0.5, 1.0 / 20_000.0, 2e4, 0.3),
        (0.7, 1.0 / 300.0, 5e4, 2.0),
        (0.95, 1.0 / 900.0, 200.0, 4.0),
    ];
    let mut out = Vec::new();
    for (i, &(n_star, beta, m0, t_units)) in settings.iter().enumerate() {
        let p = n_star / marks.mean();
        let t_obs = t_units / beta;
        let mut found = 0;
        for seed in 0..40u64 {
            let mut rng = StdRng::seed_from_u64(100 * i as u64 + seed);
            let events = simulate_cascade_from(m0, p, beta, &marks, t_obs, 2_000, &mut rng);
            // Events at the horizon are not observed; the budget may cut the cascade short,
            // then the horizon is just after the last event.
            let horizon = if events.len() == 2_000 {
                events[events.len() - 1].0 + 1.0
            } else {
                t_obs
            };
            if events.len() < 20 {
                continue;
            }
            let (times, ms) = events.into_iter().unzip();
            out.push(Case {
                name: format!("sim n*={n_star} 1/beta={:.0} seed {seed}", 1.0 / beta),
                times,
                marks: ms,
                horizon,
            });
            found += 1;
            if found == 3 {
                break;
            }
        }
        assert!(found > 0, "setting {i} gave no cascade of 20+ events");
    }
    out
}

/// Small cascades (2–19 events) of weakly excited tweets observed for about 12 decay times:
/// there the MAP profile often has two modes (the data's and the prior's), and the former
/// L-BFGS solver, started near the prior mode, sometimes stays in the wrong one.
fn small_cases() -> Vec<Case> {
    let marks = MarkDistribution::default();
    let mut out = Vec::new();
    for seed in 0..400u64 {
        let (n_star, inv_beta) = (
            [0.1, 0.15, 0.2][seed as usize % 3],
            [1_000.0, 5_000.0, 15_000.0][(seed as usize / 3) % 3],
        );
        let t_obs = 12.0 * inv_beta;
        let mut rng = StdRng::seed_from_u64(50_000 + seed);
        let p = n_star / marks.mean();
        let events = simulate_cascade_from(1e3, p, 1.0 / inv_beta, &marks, t_obs, 100, &mut rng);
        if !(2..20).contains(&events.len()) {
            continue;
        }
        let (times, ms) = events.into_iter().unzip();
        out.push(Case {
            name: format!("small n*={n_star} 1/beta={inv_beta} seed {seed}"),
            times,
            marks: ms,
            horizon: t_obs,
        });
        if out.len() == 60 {
            break;
        }
    }
    out
}

/// Partial TiDeH cascades: events with `t < T` of `RT{i}.txt`, horizon `T`, marks = followers.
fn tideh_cases() -> Vec<Case> {
    let dir = &format!("{}/../../../shared/data/tideh", manifest_dir());
    assert!(
        Path::new(dir).is_dir(),
        "the TiDeH data folder {dir} is missing (it holds RT1.txt … RT50.txt)"
    );
    let mut out = Vec::new();
    for i in 1..=TIDEH_FILES {
        let path = format!("{dir}/RT{i}.txt");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read the TiDeH file {path}: {e}"));
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_else(|| panic!("{path} is empty"));
        let count: usize = header
            .split_whitespace()
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{path}: bad header {header:?}"));
        let events: Vec<(f64, f64)> = lines
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut fields = l.split_whitespace().map(|f| f.parse::<f64>());
                match (fields.next(), fields.next()) {
                    (Some(Ok(t)), Some(Ok(m))) => (t, m),
                    _ => panic!("{path}: bad line {l:?}"),
                }
            })
            .collect();
        assert!(
            events.len() + 1 >= count && events.len() <= count + 1,
            "{path}: header says {count} events, file has {}",
            events.len()
        );
        for horizon in TIDEH_HORIZONS {
            let (times, marks): (Vec<f64>, Vec<f64>) =
                events.iter().filter(|e| e.0 < horizon).copied().unzip();
            if times.len() < 2 {
                println!("RT{i} T={horizon}: {} event(s), skipped", times.len());
                continue;
            }
            out.push(Case {
                name: format!("RT{i} T={horizon}"),
                times,
                marks,
                horizon,
            });
        }
    }
    out
}

/// `Σ max(m_i, 1)·(1 − e^{−beta(T − t_i)})`, times relative to the first event.
fn compensator(case: &Case, beta: f64) -> f64 {
    let t0 = case.times[0];
    case.times
        .iter()
        .zip(&case.marks)
        .map(|(&t, &m)| m.max(1.0) * -(-beta * (case.horizon - (t - t0))).exp_m1())
        .sum()
}

/// Golden-section search for a maximum of `f` on `[lo, hi]`; returns `(x, f(x))`.
fn golden_max(f: &dyn Fn(f64) -> f64, mut lo: f64, mut hi: f64) -> (f64, f64) {
    let r = (5f64.sqrt() - 1.0) / 2.0;
    let mut x1 = hi - r * (hi - lo);
    let mut x2 = lo + r * (hi - lo);
    let (mut f1, mut f2) = (f(x1), f(x2));
    for _ in 0..200 {
        if hi - lo <= 1e-13 * lo.abs().max(1.0) {
            break;
        }
        if f1 >= f2 {
            hi = x2;
            x2 = x1;
            f2 = f1;
            x1 = hi - r * (hi - lo);
            f1 = f(x1);
        } else {
            lo = x1;
            x1 = x2;
            f1 = f2;
            x2 = lo + r * (hi - lo);
            f2 = f(x2);
        }
    }
    if f1 >= f2 {
        (x1, f1)
    } else {
        (x2, f2)
    }
}

/// Nelder–Mead maximisation of `f` on ℝ² from `x0` with initial steps `step`; returns the best
/// vertex and its value.
fn nelder_mead_max(f: &dyn Fn([f64; 2]) -> f64, x0: [f64; 2], step: [f64; 2]) -> ([f64; 2], f64) {
    let neg = |x: [f64; 2]| -f(x);
    let mut simplex = [x0, [x0[0] + step[0], x0[1]], [x0[0], x0[1] + step[1]]];
    let mut values = simplex.map(neg);
    for _ in 0..2_000 {
        let mut order = [0, 1, 2];
        order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
        simplex = order.map(|i| simplex[i]);
        values = order.map(|i| values[i]);
        let spread = values[2] - values[0];
        let size = (1..3)
            .map(|i| (simplex[i][0] - simplex[0][0]).abs() + (simplex[i][1] - simplex[0][1]).abs())
            .fold(0.0, f64::max);
        if spread <= 1e-15 * values[0].abs() && size <= 1e-12 {
            break;
        }
        let centroid = [
            0.5 * (simplex[0][0] + simplex[1][0]),
            0.5 * (simplex[0][1] + simplex[1][1]),
        ];
        let along = |t: f64| {
            [
                centroid[0] + t * (simplex[2][0] - centroid[0]),
                centroid[1] + t * (simplex[2][1] - centroid[1]),
            ]
        };
        let xr = along(-1.0);
        let fr = neg(xr);
        if fr < values[0] {
            let xe = along(-2.0);
            let fe = neg(xe);
            (simplex[2], values[2]) = if fe < fr { (xe, fe) } else { (xr, fr) };
        } else if fr < values[1] {
            (simplex[2], values[2]) = (xr, fr);
        } else {
            let xc = if fr < values[2] {
                along(-0.5)
            } else {
                along(0.5)
            };
            let fc = neg(xc);
            if fc < values[2].min(fr) {
                (simplex[2], values[2]) = (xc, fc);
            } else {
                for i in 1..3 {
                    simplex[i] = [
                        0.5 * (simplex[0][0] + simplex[i][0]),
                        0.5 * (simplex[0][1] + simplex[i][1]),
                    ];
                    values[i] = neg(simplex[i]);
                }
            }
        }
    }
    let best = (0..3)
        .min_by(|&a, &b| values[a].total_cmp(&values[b]))
        .unwrap_or(0);
    (simplex[best], -values[best])
}

/// MLE reference: `p = (n−1)/compensator` clamped, 2,000-point grid over `ln beta` (faces
/// included), golden section on the two cells around the best grid point.
fn reference_mle(case: &Case, cascade: &Cascade<'_>, b: &Bounds) -> Reference {
    let k = (case.times.len() - 1) as f64;
    let at = |beta: f64| {
        let beta = beta.clamp(b.beta_min, b.beta_max);
        let p = (k / compensator(case, beta)).clamp(b.p_min, b.p_max);
        Reference {
            p,
            beta,
            value: cascade.log_likelihood(p, beta),
        }
    };
    let (lo, hi) = (b.beta_min.ln(), b.beta_max.ln());
    let lbs: Vec<f64> = (0..MLE_GRID)
        .map(|i| lo + (hi - lo) * i as f64 / (MLE_GRID - 1) as f64)
        .collect();
    let grid: Vec<Reference> = lbs
        .iter()
        .enumerate()
        .map(|(i, &lb)| match i {
            0 => at(b.beta_min),
            i if i == MLE_GRID - 1 => at(b.beta_max),
            _ => at(lb.exp()),
        })
        .collect();
    let i = (0..MLE_GRID)
        .max_by(|&x, &y| grid[x].value.total_cmp(&grid[y].value))
        .unwrap_or(0);
    let (x, _) = golden_max(
        &|lb| at(lb.exp()).value,
        lbs[i.saturating_sub(1)],
        lbs[(i + 1).min(MLE_GRID - 1)],
    );
    let refined = at(x.exp());
    if refined.value > grid[i].value {
        refined
    } else {
        grid[i]
    }
}

/// MAP reference: 400 × 400 grid over `(ln p, ln beta)` (the likelihood is linear in `p` given
/// `beta`, so one likelihood pass per `beta`), then Nelder–Mead from the best grid point,
/// restarted from its result with smaller steps, on the objective with clamped parameters.
fn reference_map(
    case: &Case,
    cascade: &Cascade<'_>,
    b: &Bounds,
    prior: &LogNormalParams,
) -> Reference {
    let k = (case.times.len() - 1) as f64;
    let objective =
        |p: f64, beta: f64| cascade.log_likelihood(p, beta) + prior.log_density(p, beta);
    let (lp_lo, lp_hi) = (b.p_min.ln(), b.p_max.ln());
    let (lb_lo, lb_hi) = (b.beta_min.ln(), b.beta_max.ln());
    let axis = |lo: f64, hi: f64, i: usize| lo + (hi - lo) * i as f64 / (MAP_GRID - 1) as f64;
    let mut best = ([0.0; 2], f64::NEG_INFINITY);
    for j in 0..MAP_GRID {
        let beta = axis(lb_lo, lb_hi, j).exp().clamp(b.beta_min, b.beta_max);
        let c = compensator(case, beta);
        // LL(p, beta) = k·ln p + rest − p·c.
        let rest = cascade.log_likelihood(1.0, beta) + c;
        for i in 0..MAP_GRID {
            let lp = axis(lp_lo, lp_hi, i);
            let p = lp.exp().clamp(b.p_min, b.p_max);
            let value = k * p.ln() + rest - p * c + prior.log_density(p, beta);
            if value > best.1 {
                best = ([p.ln(), beta.ln()], value);
            }
        }
    }
    let clamped = |x: [f64; 2]| {
        (
            x[0].exp().clamp(b.p_min, b.p_max),
            x[1].exp().clamp(b.beta_min, b.beta_max),
        )
    };
    let f = |x: [f64; 2]| {
        let (p, beta) = clamped(x);
        objective(p, beta)
    };
    let mut step = [
        (lp_hi - lp_lo) / (MAP_GRID - 1) as f64,
        (lb_hi - lb_lo) / (MAP_GRID - 1) as f64,
    ];
    let mut x = best.0;
    for _ in 0..4 {
        x = nelder_mead_max(&f, x, step).0;
        step = [step[0] * 0.1, step[1] * 0.1];
    }
    let (p, beta) = clamped(x);
    let value = objective(p, beta);
    assert!(
        value >= best.1,
        "Nelder–Mead lost ground: {value} < {}",
        best.1
    );
    Reference { p, beta, value }
}

/// How far a fit is from the reference.
#[derive(Debug, Clone, Copy)]
struct Miss {
    /// `reference − fit` objective, relative to `|reference|` (negative: the fit is better).
    objective: f64,
    /// Largest relative error of `p` and `beta`.
    params: f64,
}

fn miss(fit: &HawkesFit, r: &Reference) -> Miss {
    Miss {
        objective: (r.value - fit.log_objective) / r.value.abs(),
        params: (fit.p / r.p - 1.0)
            .abs()
            .max((fit.beta / r.beta - 1.0).abs()),
    }
}

/// Fits every case with both solvers, checks the new one against the reference, prints both
/// misses; returns the misses `(new, old)`.
fn check(cases: &[Case], config: &FitConfig, label: &str) -> Vec<(Miss, Miss)> {
    let bounds = config.bounds().expect("valid configuration");
    let prior = config.prior.map(|p| p.log_space().expect("valid prior"));
    let started = Instant::now();
    let mut out = Vec::new();
    let mut failures = Vec::new();
    println!("{label}: case, n, reference (p, beta, objective), relative misses new | old L-BFGS");
    for case in cases {
        let cascade = Cascade::new(&case.times, &case.marks, case.horizon).expect("valid cascade");
        let r = match &prior {
            None => reference_mle(case, &cascade, &bounds),
            Some(prior) => reference_map(case, &cascade, &bounds, prior),
        };
        let new = tweetoscope_hawkes::fit_cascade(&cascade, config).expect("fit");
        let old = config.fit_cascade_lbfgs(&cascade).expect("L-BFGS fit");
        let (mn, mo) = (miss(&new, &r), miss(&old, &r));
        println!(
            "  {:<34} {:>5}  ({:.4e}, {:.4e}, {:.6e})  obj {:+.1e} par {:.1e} | obj {:+.1e} par {:.1e}",
            case.name,
            case.times.len(),
            r.p,
            r.beta,
            r.value,
            mn.objective,
            mn.params,
            mo.objective,
            mo.params
        );
        // Written so that NaN misses fail.
        let within = mn.objective <= OBJ_TOL && mn.params <= PARAM_TOL;
        if !within {
            failures.push(format!("{}: {new:?} vs reference {r:?}", case.name));
        }
        out.push((mn, mo));
    }
    let worst = |f: fn(&(Miss, Miss)) -> f64| out.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
    println!(
        "{label}: {} cases in {:.1?}; worst objective miss new {:+.1e}, old {:+.1e}; worst \
         parameter miss new {:.1e}, old {:.1e}; old misses > {PARAM_TOL:.0e} in parameters: {}",
        cases.len(),
        started.elapsed(),
        worst(|m| m.0.objective),
        worst(|m| m.1.objective),
        worst(|m| m.0.params),
        worst(|m| m.1.params),
        out.iter().filter(|m| m.1.params > PARAM_TOL).count(),
    );
    assert!(failures.is_empty(), "{label}: {}", failures.join("\n"));
    out
}

#[test]
fn mle_reaches_the_reference_optimum_on_simulated_cascades() {
    check(&simulated_cases(), &FitConfig::mle(), "MLE, simulated");
}

#[test]
fn map_reaches_the_reference_optimum_on_simulated_cascades() {
    check(&simulated_cases(), &FitConfig::default(), "MAP, simulated");
}

#[test]
fn mle_reaches_the_reference_optimum_on_tideh_cascades() {
    check(&tideh_cases(), &FitConfig::mle(), "MLE, TiDeH");
}

#[test]
fn map_reaches_the_reference_optimum_on_tideh_cascades() {
    check(&tideh_cases(), &FitConfig::default(), "MAP, TiDeH");
}

#[test]
fn map_reaches_the_reference_optimum_on_small_cascades() {
    let misses = check(&small_cases(), &FitConfig::default(), "MAP, small");
    // The former solver landed on the wrong mode on some of them.
    let wrong_mode = misses
        .iter()
        .filter(|(_, old)| old.params > 0.1 && old.objective > 1e-3)
        .count();
    println!("MAP, small: the L-BFGS solver missed the mode on {wrong_mode} cascades");
    assert!(wrong_mode >= 2, "{wrong_mode}");
}

/// This package's directory, as cargo gives it to the running test: a test binary built in a
/// target directory that several checkouts share reads the files of the checkout it runs for
/// (the path compiled in is the fallback).
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}
