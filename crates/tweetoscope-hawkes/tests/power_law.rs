//! Power-law kernel tests: accuracy of the sum-of-exponentials approximation and of the fast
//! likelihood against the exact one, the analytic gradient, the simulator, recovery of known
//! parameters, the branching cap, kernel selection and input errors.

use rand::{rngs::StdRng, SeedableRng};
use tweetoscope_hawkes::power_law::{
    self, kernel_approximation, PowerLawBounds, PowerLawCascade, PowerLawParams, N_STAR_MIN,
};
use tweetoscope_hawkes::{
    fit, fit_kernel, FitConfig, HawkesError, Kernel, KernelFit, MarkDistribution,
};

/// Largest relative error of the kernel approximation allowed over `θ ∈ [0.05, 3]`,
/// `c ∈ [1 s, 1 h]`, `τ ∈ [0, 10 days]`. Measured: 7.0e−5 (at θ = 3; below 1e−5 for θ ≤ 1).
const KERNEL_TOL: f64 = 1e-4;
/// Relative tolerance of the fast log-likelihood against the exact O(n²) one. Measured over
/// the grid of the test: at most 4.4e−6 (θ = 3), typically 1e−8. Independently of the data,
/// each intensity is a positive combination of kernel values, so its relative error is at most
/// the kernel's and `|ΔLL| ≤ (n − 1)·KERNEL_TOL`, which is also checked.
const LL_TOL: f64 = 1e-5;

fn marks() -> MarkDistribution {
    MarkDistribution::default()
}

/// Events strictly before `t_obs`, as (times, marks).
fn observed(events: &[(f64, f64)], t_obs: f64) -> (Vec<f64>, Vec<f64>) {
    events.iter().filter(|e| e.0 < t_obs).copied().unzip()
}

/// A simulated cascade of `n` events with a horizon 100 s after the last one.
fn simulated(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>, f64) {
    let truth = PowerLawParams::from_branching(0.6, 0.8, 30.0, 0.5, &marks()).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let events =
        power_law::simulate_cascade_from(1e6, &truth, &marks(), f64::INFINITY, n, &mut rng);
    assert_eq!(events.len(), n);
    let (times, ms): (Vec<f64>, Vec<f64>) = events.into_iter().unzip();
    let horizon = times[n - 1] + 100.0;
    (times, ms, horizon)
}

#[test]
fn kernel_approximation_matches_the_power_law_over_ten_days() {
    let thetas = [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0];
    let cs = [1.0, 3.0, 10.0, 60.0, 300.0, 1200.0, 3600.0];
    let mut worst = 0.0f64;
    for &theta in &thetas {
        for &c in &cs {
            for i in 0..=600 {
                // τ = 0, then log-spaced from 1 ms to 10 days.
                let tau = if i == 0 {
                    0.0
                } else {
                    1e-3 * (864e6f64.ln() * (i - 1) as f64 / 599.0).exp()
                };
                let approx = kernel_approximation(tau, c, theta);
                let exact = (tau + c).powf(-(1.0 + theta));
                let err = (approx / exact - 1.0).abs();
                assert!(
                    err <= KERNEL_TOL,
                    "θ = {theta}, c = {c}, τ = {tau}: {approx} vs {exact} ({err:e})"
                );
                worst = worst.max(err);
            }
        }
    }
    // The bound is not vacuous: the approximation is not exact.
    assert!(worst > 1e-7, "{worst}");
    for bad in [
        (-1.0, 1.0, 0.5),
        (1.0, 0.0, 0.5),
        (1.0, 1.0, 0.0),
        (f64::NAN, 1.0, 1.0),
    ] {
        assert!(
            kernel_approximation(bad.0, bad.1, bad.2).is_nan(),
            "{bad:?}"
        );
    }
}

#[test]
fn fast_log_likelihood_matches_the_exact_one() {
    let (times, ms, horizon) = simulated(1000, 3);
    let hand_times = [0.0, 5.0, 12.0, 40.0, 41.0, 300.0, 900.0, 20_000.0, 20_000.0];
    let hand_marks = [120.0, 3.0, 0.0, 45.0, 1e4, 7.0, 2.0, 60.0, 0.5];
    let cascades: [(&[f64], &[f64], f64); 2] = [
        (&times, &ms, horizon),
        (&hand_times, &hand_marks, 864_000.0),
    ];
    for (t, m, h) in cascades {
        let prepared = PowerLawCascade::new(t, m, h).unwrap();
        for theta in [0.05, 0.2, 0.5, 1.0, 2.0, 3.0] {
            for c in [1.0, 10.0, 300.0, 3600.0] {
                for beta in [0.0, 1.0] {
                    let p = PowerLawParams::new(0.01, beta, c, theta).unwrap();
                    let exact = power_law::log_likelihood_naive(t, m, h, &p);
                    let fast = power_law::log_likelihood(t, m, h, &p);
                    let what = format!("n = {}, θ = {theta}, c = {c}, β = {beta}", t.len());
                    assert!(exact.is_finite() && fast.is_finite(), "{what}");
                    assert!(
                        (fast - exact).abs() <= LL_TOL * exact.abs(),
                        "{what}: fast {fast} vs exact {exact}"
                    );
                    let bound = (t.len() - 1) as f64 * KERNEL_TOL;
                    assert!((fast - exact).abs() <= bound, "{what}: {fast} vs {exact}");
                    // The prepared cascade (decay table) computes the same sums.
                    let table = prepared.log_likelihood(&p);
                    assert!((table - fast).abs() <= 1e-12 * fast.abs(), "{what}");
                }
            }
        }
    }
}

#[test]
fn analytic_gradient_matches_finite_differences() {
    let (times, ms, horizon) = simulated(300, 5);
    let cascade = PowerLawCascade::new(&times, &ms, horizon).unwrap();
    let points = [
        PowerLawParams::new(0.02, 0.8, 30.0, 0.5).unwrap(),
        PowerLawParams::new(0.5, 0.05, 1.5, 2.5).unwrap(),
        PowerLawParams::new(1e-3, 1.2, 2000.0, 0.08).unwrap(),
    ];
    for p in points {
        let (ll, g) = cascade.log_likelihood_with_gradient(&p);
        assert_eq!(ll, cascade.log_likelihood(&p));
        let (ll2, g2) = power_law::log_likelihood_with_gradient(&times, &ms, horizon, &p);
        assert!((ll2 - ll).abs() <= 1e-12 * ll.abs() && g2 == g);
        let values = [p.k, p.beta, p.c, p.theta];
        for i in 0..4 {
            let h = 1e-6 * values[i].abs().max(1e-3);
            let at = |v: f64| {
                let mut q = values;
                q[i] = v;
                let q = PowerLawParams::new(q[0], q[1], q[2], q[3]).unwrap();
                cascade.log_likelihood(&q)
            };
            let fd = (at(values[i] + h) - at(values[i] - h)) / (2.0 * h);
            let tol = 1e-6 * (g[i].abs() + ll.abs() / values[i].abs().max(1e-3));
            assert!(
                (fd - g[i]).abs() <= tol,
                "{p:?}, i = {i}: analytic {} vs finite difference {fd}",
                g[i]
            );
        }
    }
}

#[test]
fn g1_is_the_expected_number_of_children_still_to_come() {
    let (times, ms, horizon) = simulated(200, 8);
    let p = PowerLawParams::new(0.05, 0.7, 20.0, 0.4).unwrap();
    let direct: f64 = times
        .iter()
        .zip(&ms)
        .map(|(&t, &m)| {
            p.k * m.max(1.0).powf(p.beta) * (horizon - t + p.c).powf(-p.theta) / p.theta
        })
        .sum();
    let g1 = power_law::g1(&times, &ms, horizon, &p);
    assert!((g1 / direct - 1.0).abs() < 1e-12, "{g1} vs {direct}");
    assert_eq!(
        PowerLawCascade::new(&times, &ms, horizon).unwrap().g1(&p),
        g1
    );
    // The kernel itself, and the mass of one event's kernel (its expected children).
    for (m, tau) in [(0.5, 0.0), (40.0, 12.5), (1e5, 3600.0)] {
        let direct = p.k * f64::max(m, 1.0).powf(p.beta) * (tau + p.c).powf(-(1.0 + p.theta));
        assert!((p.kernel(m, tau) / direct - 1.0).abs() < 1e-12);
        let mass = p.k * f64::max(m, 1.0).powf(p.beta) * p.c.powf(-p.theta) / p.theta;
        assert!((p.expected_children(m) / mass - 1.0).abs() < 1e-12);
    }
}

fn mean_and_std_error(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

#[test]
fn simulated_sizes_have_the_branching_mean() {
    // β = 0.3 keeps the variance of the offspring count finite (m^β has tail exponent 4.7).
    let p = PowerLawParams::from_branching(0.5, 0.3, 30.0, 0.7, &marks()).unwrap();
    assert!((p.n_star(&marks()) - 0.5).abs() < 1e-12);
    let m0 = 1000.0;
    let expected = 1.0 + p.expected_children(m0) / (1.0 - 0.5);
    let mut rng = StdRng::seed_from_u64(11);
    let sizes: Vec<f64> = (0..4000)
        .map(|_| {
            power_law::simulate_cascade_from(m0, &p, &marks(), f64::INFINITY, 100_000, &mut rng)
                .len() as f64
        })
        .collect();
    let (mean, se) = mean_and_std_error(&sizes);
    assert!(
        (mean - expected).abs() <= 4.0 * se,
        "mean size {mean} ± {se}, expected {expected}"
    );
}

#[test]
fn simulated_delays_follow_the_normalised_kernel() {
    // n* = 1e−4 and a huge first mark: ~2,900 events, nearly all direct children of the first,
    // whose delays have the CDF 1 − (c/(τ + c))^θ.
    let (c, theta) = (45.0, 0.6);
    let p = PowerLawParams::from_branching(1e-4, 1.0, c, theta, &marks()).unwrap();
    let mut rng = StdRng::seed_from_u64(12);
    let events =
        power_law::simulate_cascade_from(1e9, &p, &marks(), f64::INFINITY, 100_000, &mut rng);
    let n = events.len() - 1;
    assert!(n > 2000, "{n}");
    assert!(events.windows(2).all(|w| w[0].0 <= w[1].0));
    // Kolmogorov–Smirnov distance; the 0.1% critical value at n ≈ 2,900 is 0.036.
    let d = events[1..]
        .iter()
        .enumerate()
        .map(|(i, &(t, _))| {
            let cdf = 1.0 - (c / (t + c)).powf(theta);
            (cdf - i as f64 / n as f64)
                .abs()
                .max((cdf - (i + 1) as f64 / n as f64).abs())
        })
        .fold(0.0, f64::max);
    assert!(d < 0.045, "KS distance {d}");
}

#[test]
fn simulation_respects_horizon_and_event_budget() {
    let p = PowerLawParams::from_branching(0.8, 0.8, 10.0, 0.5, &marks()).unwrap();
    let run = |max_events, horizon, seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        power_law::simulate_cascade_from(1e6, &p, &marks(), horizon, max_events, &mut rng)
    };
    let long = run(1000, 3600.0, 1);
    assert_eq!(long[0], (0.0, 1e6));
    assert!(long.len() > 50 && long.len() <= 1000);
    assert!(long.iter().all(|e| e.0 < 3600.0 && e.1 >= 10.0));
    assert!(long.windows(2).all(|w| w[0].0 <= w[1].0));
    // The budget keeps exactly the first events.
    assert_eq!(run(50, 3600.0, 1), long[..50].to_vec());
    assert!(run(0, 3600.0, 1).is_empty());
    assert!(run(10, 0.0, 1).is_empty());
    let invalid = PowerLawParams { k: -1.0, ..p };
    let mut rng = StdRng::seed_from_u64(2);
    let only_first = power_law::simulate_cascade_from(5.0, &invalid, &marks(), 100.0, 10, &mut rng);
    assert_eq!(only_first, vec![(0.0, 5.0)]);
    let mut rng = StdRng::seed_from_u64(2);
    let drawn = power_law::simulate_cascade(&p, &marks(), 3600.0, 10, &mut rng);
    assert!(!drawn.is_empty() && drawn[0].0 == 0.0 && drawn[0].1 >= 10.0);
}

/// Recovery on long simulated cascades (one very influential first tweet, simulated to
/// extinction, observed up to `t_obs`, fitted by MLE). Over 30 seeds per case (explored while
/// writing this test) the largest relative errors were:
/// - case A (n* = 0.7, θ = 0.6, observed 1 day, ~5,000 events): n* 6%, β 3%, c a factor
///   1.35, θ 15%, final size 7%;
/// - case B (n* = 0.85, θ = 1.5, observed 6 h, ~12,000 events): n* 7%, β 5%, c a factor 1.7,
///   θ 20%, final size 2%;
/// - case C (n* = 0.5, θ = 0.3, observed 2 h, ~2,000 events: a heavy tail, a quarter of the
///   cascade still to come): n* 46%, β 13%, c a factor 1.4, θ 24%, final size 13%.
///
/// `c` is the least identified parameter (within a factor 2 here). The fitted likelihood
/// always beat the true parameters' one.
#[test]
fn mle_recovers_known_parameters_from_long_simulated_cascades() {
    // (n*, β, c, θ, first mark, t_obs, seeds, tolerances n*, β, θ, size)
    let cases = [
        (
            0.7,
            0.8,
            60.0,
            0.6,
            5e5,
            86_400.0,
            3,
            [0.12, 0.08, 0.3, 0.12],
        ),
        (
            0.85,
            0.6,
            300.0,
            1.5,
            1e7,
            21_600.0,
            2,
            [0.12, 0.1, 0.35, 0.1],
        ),
        (0.5, 0.4, 10.0, 0.3, 1e10, 7_200.0, 3, [0.6, 0.2, 0.5, 0.35]),
    ];
    let m = marks();
    let config = FitConfig::default();
    for (case, &(n_star, beta, c, theta, m0, t_obs, seeds, tol)) in cases.iter().enumerate() {
        let truth = PowerLawParams::from_branching(n_star, beta, c, theta, &m).unwrap();
        for seed in 0..seeds {
            let mut rng = StdRng::seed_from_u64(100 * case as u64 + seed);
            let events = power_law::simulate_cascade_from(
                m0,
                &truth,
                &m,
                f64::INFINITY,
                1_000_000,
                &mut rng,
            );
            let (times, ms) = observed(&events, t_obs);
            assert!(times.len() >= 1500, "case {case}: {} events", times.len());
            let f = power_law::fit(&times, &ms, t_obs, &config).unwrap();
            let what = format!("case {case}, seed {seed}: {f:?}");
            assert!((f.n_star / n_star - 1.0).abs() <= tol[0], "n*: {what}");
            assert!((f.beta / beta - 1.0).abs() <= tol[1], "β: {what}");
            assert!((f.c / c).ln().abs() <= 2f64.ln(), "c: {what}");
            assert!((f.theta / theta - 1.0).abs() <= tol[2], "θ: {what}");
            let size = f.predicted_size(1.0).unwrap();
            assert!(
                (size / events.len() as f64 - 1.0).abs() <= tol[3],
                "size {size} vs {}: {what}",
                events.len()
            );
            let ll_true = power_law::log_likelihood(&times, &ms, t_obs, &truth);
            assert!(f.log_objective >= ll_true - 1e-6, "{ll_true}: {what}");
            // The reported objective is the likelihood of the reported parameters.
            let ll_fit = power_law::log_likelihood(&times, &ms, t_obs, &f.params());
            assert!(
                (ll_fit - f.log_objective).abs() <= 1e-9 * ll_fit.abs(),
                "{what}"
            );
            assert!(
                (f.params().n_star(&m) / f.n_star - 1.0).abs() < 1e-9,
                "{what}"
            );
            assert!(f.iterations > 0 && f.n_obs == times.len());
        }
    }
}

#[test]
fn branching_factor_never_exceeds_the_cap() {
    let m = marks();
    // A supercritical truth (n* = 1.3), stopped by the horizon, and a subcritical one.
    for (truth_n_star, caps) in [(1.3, [0.99, 0.5, 0.2]), (0.7, [0.99, 0.5, 0.2])] {
        let truth = PowerLawParams::from_branching(truth_n_star, 0.6, 20.0, 0.8, &m).unwrap();
        let mut rng = StdRng::seed_from_u64(21);
        let events = power_law::simulate_cascade_from(1e5, &truth, &m, 3600.0, 3000, &mut rng);
        let (times, ms) = observed(&events, 3600.0);
        assert!(times.len() > 200, "{}", times.len());
        for cap in caps {
            let config = FitConfig {
                max_branching: cap,
                ..FitConfig::default()
            };
            let f = power_law::fit(&times, &ms, 3600.0, &config).unwrap();
            assert!(
                f.n_star <= cap && f.n_star >= N_STAR_MIN,
                "truth {truth_n_star}, cap {cap}: {f:?}"
            );
            assert!(f.params().n_star(&m) <= cap * (1.0 + 1e-12));
            assert!(f.predicted_size(1.0).unwrap().is_finite());
            if cap < truth_n_star / 2.0 {
                // The data want more: the cap binds.
                assert!(f.n_star >= 0.999 * cap, "cap {cap}: {f:?}");
            }
        }
    }
}

#[test]
fn custom_bounds_hold_and_can_fix_parameters() {
    let (times, ms, horizon) = simulated(500, 31);
    let bounds = PowerLawBounds {
        beta_max: 0.5,
        c_min: 30.0,
        c_max: 30.0,
        theta_min: 0.2,
        theta_max: 0.4,
    };
    let f =
        power_law::fit_with_bounds(&times, &ms, horizon, &FitConfig::default(), &bounds).unwrap();
    assert!((0.0..=0.5).contains(&f.beta), "{f:?}");
    assert_eq!(f.c, 30.0);
    assert!((0.2..=0.4).contains(&f.theta), "{f:?}");
    // β is capped below alpha − 1 whatever the bounds say.
    let heavy = MarkDistribution::new(2.02, 10.0).unwrap();
    assert!((PowerLawBounds::default().effective_beta_max(&heavy) - 0.97).abs() < 1e-12);
    let config = FitConfig {
        marks: heavy,
        ..FitConfig::default()
    };
    let f = power_law::fit(&times, &ms, horizon, &config).unwrap();
    assert!(f.beta <= 0.97 + 1e-12 && f.n_star.is_finite(), "{f:?}");
}

#[test]
fn fit_kernel_dispatches_and_keeps_the_exponential_fit_unchanged() {
    let (times, ms, horizon) = simulated(400, 41);
    for config in [FitConfig::default(), FitConfig::mle()] {
        let old = fit(&times, &ms, horizon, &config).unwrap();
        let new = fit_kernel(Kernel::Exponential, &times, &ms, horizon, &config).unwrap();
        assert_eq!(new, KernelFit::from(old));
        assert_eq!(new.kernel, Kernel::Exponential);
        assert_eq!(new.params, vec![old.p, old.beta]);
        assert_eq!(
            (
                new.n_star,
                new.g1,
                new.n_obs,
                new.log_objective,
                new.iterations
            ),
            (
                old.n_star,
                old.g1,
                old.n_obs,
                old.log_objective,
                old.iterations
            )
        );
        assert_eq!(new.predicted_size(0.8), old.predicted_size(0.8));

        let pl = power_law::fit(&times, &ms, horizon, &config).unwrap();
        let new = fit_kernel(Kernel::PowerLaw, &times, &ms, horizon, &config).unwrap();
        assert_eq!(new.kernel, Kernel::PowerLaw);
        assert_eq!(new.params, vec![pl.k, pl.beta, pl.c, pl.theta]);
        assert_eq!(new, KernelFit::from(pl));
        assert_eq!(new.predicted_size(1.0), pl.predicted_size(1.0));
        let n = times.len() as f64;
        let size = pl.predicted_size(1.0).unwrap();
        assert!((size - (n + pl.g1 / (1.0 - pl.n_star))).abs() < 1e-9 * size);
    }
}

#[test]
fn kernel_names_round_trip() {
    for k in Kernel::ALL {
        assert_eq!(k.to_string().parse::<Kernel>().unwrap(), k);
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(json, format!("\"{k}\""));
        assert_eq!(serde_json::from_str::<Kernel>(&json).unwrap(), k);
    }
    assert_eq!(Kernel::PowerLaw.to_string(), "power-law");
    assert_eq!(Kernel::Exponential.to_string(), "exponential");
    assert_eq!(Kernel::default(), Kernel::Exponential);
    for alias in ["Power_Law", "powerlaw", " pl "] {
        assert_eq!(
            alias.parse::<Kernel>().unwrap(),
            Kernel::PowerLaw,
            "{alias}"
        );
    }
    assert_eq!("EXP".parse::<Kernel>().unwrap(), Kernel::Exponential);
    assert_eq!(
        "gaussian".parse::<Kernel>(),
        Err(HawkesError::UnknownKernel {
            name: "gaussian".into()
        })
    );
    assert!(serde_json::from_str::<Kernel>("\"power_law\"").is_err());
}

#[test]
fn invalid_inputs_are_errors_or_nan() {
    let config = FitConfig::default();
    let pl = |t: &[f64], m: &[f64], h: f64| power_law::fit(t, m, h, &config);
    assert!(matches!(
        pl(&[0.0], &[1.0], 10.0),
        Err(HawkesError::TooFewEvents { n: 1, needed: 2 })
    ));
    assert!(matches!(
        pl(&[], &[], 10.0),
        Err(HawkesError::TooFewEvents { n: 0, .. })
    ));
    assert!(matches!(
        pl(&[0.0, 1.0], &[1.0], 10.0),
        Err(HawkesError::LengthMismatch { .. })
    ));
    assert!(matches!(
        pl(&[0.0, 5.0, 3.0], &[1.0; 3], 10.0),
        Err(HawkesError::UnsortedTimes { index: 2, .. })
    ));
    assert!(matches!(
        pl(&[0.0, 5.0], &[1.0; 2], 5.0),
        Err(HawkesError::HorizonNotAfterLastEvent { .. })
    ));
    assert!(matches!(
        pl(&[0.0, f64::NAN], &[1.0; 2], 5.0),
        Err(HawkesError::NonFiniteTime { index: 1 })
    ));
    assert!(matches!(
        pl(&[0.0, 1.0], &[1.0, f64::INFINITY], 5.0),
        Err(HawkesError::NonFiniteMark { index: 1 })
    ));
    assert!(matches!(
        pl(&[0.0, 1.0], &[1.0; 2], f64::NAN),
        Err(HawkesError::NonFiniteHorizon { .. })
    ));
    let (t, m) = ([0.0, 1.0, 2.0], [10.0; 3]);
    for cap in [0.0, 1.0, f64::NAN, -0.5, 1e-7] {
        let config = FitConfig {
            max_branching: cap,
            ..FitConfig::default()
        };
        assert!(
            matches!(
                power_law::fit(&t, &m, 5.0, &config),
                Err(HawkesError::InvalidMaxBranching { .. })
            ),
            "{cap}"
        );
    }
    let bad_marks = FitConfig {
        marks: MarkDistribution {
            alpha: 1.5,
            mu: 10.0,
        },
        ..FitConfig::default()
    };
    assert!(matches!(
        fit_kernel(Kernel::PowerLaw, &t, &m, 5.0, &bad_marks),
        Err(HawkesError::InvalidMarkDistribution { .. })
    ));
    let d = PowerLawBounds::default();
    for (bounds, name) in [
        (PowerLawBounds { c_min: 0.0, ..d }, "c_min"),
        (PowerLawBounds { c_min: 0.5, ..d }, "c_min"),
        (PowerLawBounds { c_max: 0.5, ..d }, "c_max"),
        (
            PowerLawBounds {
                theta_min: -1.0,
                ..d
            },
            "theta_min",
        ),
        (
            PowerLawBounds {
                theta_max: f64::INFINITY,
                ..d
            },
            "theta_max",
        ),
        (
            PowerLawBounds {
                beta_max: f64::NAN,
                ..d
            },
            "beta_max",
        ),
        (
            PowerLawBounds {
                beta_max: -0.1,
                ..d
            },
            "beta_max",
        ),
    ] {
        match power_law::fit_with_bounds(&t, &m, 5.0, &config, &bounds) {
            Err(HawkesError::InvalidArgument { name: got, .. }) => assert_eq!(got, name),
            other => panic!("{bounds:?}: {other:?}"),
        }
    }
    // Parameters.
    let ok = PowerLawParams::new(0.1, 0.5, 10.0, 0.5).unwrap();
    for (p, name) in [
        (PowerLawParams { k: 0.0, ..ok }, "k"),
        (PowerLawParams { beta: -0.1, ..ok }, "beta"),
        (PowerLawParams { c: f64::NAN, ..ok }, "c"),
        (PowerLawParams { theta: 0.0, ..ok }, "theta"),
    ] {
        match p.validate() {
            Err(HawkesError::InvalidArgument { name: got, .. }) => assert_eq!(got, name),
            other => panic!("{p:?}: {other:?}"),
        }
        assert!(power_law::log_likelihood(&t, &m, 5.0, &p).is_nan());
        assert!(power_law::log_likelihood_naive(&t, &m, 5.0, &p).is_nan());
        assert!(power_law::g1(&t, &m, 5.0, &p).is_nan());
        let (ll, g) = power_law::log_likelihood_with_gradient(&t, &m, 5.0, &p);
        assert!(ll.is_nan() && g.iter().all(|v| v.is_nan()));
    }
    // Invalid cascades give NaN likelihoods.
    assert!(power_law::log_likelihood(&t, &m, 2.0, &ok).is_nan());
    assert!(power_law::log_likelihood_naive(&[1.0, 0.0], &[1.0; 2], 5.0, &ok).is_nan());
    assert!(power_law::log_likelihood(&[], &[], 5.0, &ok).is_nan());
    // E[m^β] must be finite.
    assert!(PowerLawParams::from_branching(0.5, 1.4, 10.0, 0.5, &marks()).is_err());
    assert!(PowerLawParams::from_branching(0.0, 0.5, 10.0, 0.5, &marks()).is_err());
    assert!(marks().excitation_moment(1.4).is_infinite());
    assert!(marks().excitation_moment(-0.1).is_nan());
}

#[test]
fn excitation_moment_matches_sampling() {
    // Finite variance of m^β (tail exponent (α − 1)/β = 4): a tight check, and mu < 1 where
    // the clamp to 1 matters.
    for d in [
        MarkDistribution::new(2.4, 10.0).unwrap(),
        MarkDistribution::new(3.0, 0.2).unwrap(),
    ] {
        let beta = (d.alpha - 1.0) / 4.0;
        let mut rng = StdRng::seed_from_u64(5);
        let xs: Vec<f64> = (0..200_000)
            .map(|_| d.sample(&mut rng).max(1.0).powf(beta))
            .collect();
        let (mean, se) = mean_and_std_error(&xs);
        let want = d.excitation_moment(beta);
        assert!(
            (mean - want).abs() <= 5.0 * se,
            "{d:?}: {mean} ± {se} vs {want}"
        );
    }
    let d = marks();
    assert!((d.excitation_moment(1.0) - d.mean()).abs() < 1e-12);
    assert_eq!(d.excitation_moment(0.0), 1.0);
}
