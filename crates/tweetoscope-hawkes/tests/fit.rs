//! Fit tests: recovery of known parameters from simulated cascades, optimality against a grid,
//! MAP behaviour with few events, bounds, input errors and prediction.

use rand::{rngs::StdRng, SeedableRng};
use tweetoscope_hawkes::simulate::{simulate_cascade, simulate_cascade_from};
use tweetoscope_hawkes::{
    fit, log_likelihood, predict_final_size, random_forest_target, FitConfig, HawkesError,
    MarkDistribution, Prior,
};

/// Events strictly before `t_obs`, as (times, marks).
fn observed(events: &[(f64, f64)], t_obs: f64) -> (Vec<f64>, Vec<f64>) {
    events.iter().filter(|e| e.0 < t_obs).copied().unzip()
}

/// Recovery on long simulated cascades. Each case starts from a very influential first tweet so
/// one cascade holds thousands of events; it is simulated to extinction, observed up to
/// `t_obs` and fitted. Over 30 seeds per case (explored while writing this test), the largest
/// errors were 5% (case 1) and 10% (case 2) on beta, 3% and 5% on n*, 0.2% and 5% on the final
/// size; the tolerances leave a margin of several standard deviations.
#[test]
fn mle_and_map_recover_known_parameters_from_long_simulated_cascades() {
    const TOL_BETA: f64 = 0.15;
    const TOL_N_STAR: f64 = 0.08;
    const TOL_SIZE: f64 = 0.12;
    let marks = MarkDistribution::default();
    // (p, beta, first mark, t_obs): a nearly complete cascade (t_obs = 24/beta, n* = 0.7) and a
    // truncated one (t_obs = 2/beta, n* = 0.175).
    let cases = [
        (0.02, 1.0 / 600.0, 1e5, 14_400.0),
        (0.005, 1.0 / 3600.0, 1e6, 7_200.0),
    ];
    for (case, &(p, beta, m0, t_obs)) in cases.iter().enumerate() {
        let n_star = p * marks.mean();
        for seed in 0..3u64 {
            let mut rng = StdRng::seed_from_u64(1000 * case as u64 + seed);
            let events =
                simulate_cascade_from(m0, p, beta, &marks, f64::INFINITY, 1_000_000, &mut rng);
            let (times, ms) = observed(&events, t_obs);
            assert!(
                times.len() >= 3000,
                "case {case}: only {} events",
                times.len()
            );
            for config in [FitConfig::mle(), FitConfig::default()] {
                let f = fit(&times, &ms, t_obs, &config).unwrap();
                let what = format!(
                    "case {case}, seed {seed}, prior {}: {f:?}",
                    config.prior.is_some()
                );
                assert!((f.beta / beta - 1.0).abs() <= TOL_BETA, "beta: {what}");
                assert!((f.n_star / n_star - 1.0).abs() <= TOL_N_STAR, "n*: {what}");
                let size = f.predicted_size(1.0).unwrap();
                assert!(
                    (size / events.len() as f64 - 1.0).abs() <= TOL_SIZE,
                    "size {size} vs {}: {what}",
                    events.len()
                );
                if config.prior.is_none() {
                    // The maximum likelihood beats the true parameters.
                    let ll_true = log_likelihood(&times, &ms, t_obs, p, beta);
                    assert!(f.log_objective >= ll_true - 1e-9, "{ll_true}: {what}");
                }
            }
        }
    }
}

/// Log-posterior (or log-likelihood) as the fit defines it.
fn objective(
    times: &[f64],
    marks: &[f64],
    horizon: f64,
    config: &FitConfig,
    p: f64,
    b: f64,
) -> f64 {
    log_likelihood(times, marks, horizon, p, b)
        + config.prior.map_or(0.0, |pr| pr.log_density(p, b))
}

/// Small and odd cascades: a burst, long gaps, tiny and huge marks, a single retweet.
fn odd_cascades() -> Vec<(Vec<f64>, Vec<f64>, f64)> {
    let mut out = vec![
        (vec![0.0, 1.0], vec![10.0, 10.0], 600.0),
        (
            (0..50).map(|i| i as f64 * 0.02).collect(),
            vec![0.0; 50],
            600.0,
        ),
        (vec![0.0, 777_600.0], vec![1e7, 3.0], 800_000.0),
        (
            vec![0.0, 5.0, 9.0, 60.0, 3000.0, 3001.0, 3002.0],
            vec![50.0, 2e6, 1.0, 10.0, 400.0, 0.5, 30.0],
            3600.0,
        ),
    ];
    let marks = MarkDistribution::default();
    let mut rng = StdRng::seed_from_u64(42);
    while out.len() < 10 {
        let events = simulate_cascade(0.025, 1.0 / 900.0, &marks, 3600.0, 400, &mut rng);
        if events.len() >= 5 {
            let (t, m) = events.into_iter().unzip();
            out.push((t, m, 3600.0));
        }
    }
    out
}

/// The fit is at least as good as the best point of a 60×60 grid over the box, stays inside
/// the box and returns consistent derived quantities.
#[test]
fn fit_beats_a_dense_grid_and_stays_in_the_box() {
    for config in [FitConfig::mle(), FitConfig::default()] {
        let bounds = config.bounds().unwrap();
        for (times, marks, horizon) in odd_cascades() {
            let f = fit(&times, &marks, horizon, &config).unwrap();
            let what = format!("prior {}, n {}: {f:?}", config.prior.is_some(), times.len());
            assert!(f.p >= bounds.p_min && f.p <= bounds.p_max, "p: {what}");
            assert!(
                f.beta >= bounds.beta_min && f.beta <= bounds.beta_max,
                "beta: {what}"
            );
            assert!(f.n_star <= config.max_branching, "{what}");
            assert_eq!(f.n_obs, times.len());
            assert!(f.iterations <= config.max_iterations);
            let own = objective(&times, &marks, horizon, &config, f.p, f.beta);
            assert!((f.log_objective - own).abs() <= 1e-9 * own.abs(), "{what}");
            assert!(f.g1.is_finite() && f.g1 >= 0.0, "{what}");
            assert!(f.predicted_size(1.0).unwrap() >= times.len() as f64);

            let k = 60;
            let mut grid_best = f64::NEG_INFINITY;
            for i in 0..=k {
                let p = bounds.p_min * (bounds.p_max / bounds.p_min).powf(i as f64 / k as f64);
                for j in 0..=k {
                    let b = bounds.beta_min
                        * (bounds.beta_max / bounds.beta_min).powf(j as f64 / k as f64);
                    grid_best = grid_best.max(objective(&times, &marks, horizon, &config, p, b));
                }
            }
            assert!(grid_best.is_finite());
            assert!(
                f.log_objective >= grid_best - 1e-7 * grid_best.abs(),
                "grid found {grid_best}: {what}"
            );
        }
    }
}

/// With 2 or 3 events the MAP estimate of p stays near the prior (median 0.018), where the MLE
/// does not; the MAP point is the better one for the posterior.
#[test]
fn map_with_few_events_stays_near_the_prior() {
    let prior = Prior::default().log_space().unwrap();
    let median_p = prior.mean_log_p.exp();
    let cases = [
        (vec![0.0, 30.0], vec![200.0, 50.0], 600.0),
        (vec![0.0, 30.0, 200.0], vec![200.0, 50.0, 10.0], 600.0),
    ];
    for (times, marks, horizon) in cases {
        let map_config = FitConfig::default();
        let map = fit(&times, &marks, horizon, &map_config).unwrap();
        let mle = fit(&times, &marks, horizon, &FitConfig::mle()).unwrap();
        let what = format!("MAP {map:?}, MLE {mle:?}");
        assert!((map.p / median_p).ln().abs() < 0.2, "{what}");
        assert!((mle.p / median_p).ln().abs() > 0.5, "{what}");
        let at_mle = objective(&times, &marks, horizon, &map_config, mle.p, mle.beta);
        assert!(map.log_objective > at_mle, "{what}");
    }
}

#[test]
fn zero_iterations_return_the_starting_point_inside_the_box() {
    let (times, marks, horizon) = ([0.0, 10.0, 50.0, 55.0], [100.0, 20.0, 5.0, 300.0], 600.0);
    for full in [FitConfig::default(), FitConfig::mle()] {
        let config = FitConfig {
            max_iterations: 0,
            ..full
        };
        let bounds = config.bounds().unwrap();
        let f0 = fit(&times, &marks, horizon, &config).unwrap();
        assert_eq!(f0.iterations, 0);
        assert!(f0.p >= bounds.p_min && f0.p <= bounds.p_max);
        assert!(f0.beta >= bounds.beta_min && f0.beta <= bounds.beta_max);
        // The start is chosen, not the middle of the box, and the solver improves on it.
        let centre = objective(
            &times,
            &marks,
            horizon,
            &config,
            (bounds.p_min * bounds.p_max).sqrt(),
            (bounds.beta_min * bounds.beta_max).sqrt(),
        );
        assert!(f0.log_objective > centre, "{f0:?} vs centre {centre}");
        let f = fit(&times, &marks, horizon, &full).unwrap();
        assert!(f.iterations > 0);
        assert!(f.log_objective >= f0.log_objective, "{f:?} vs {f0:?}");
    }
}

#[test]
fn invalid_inputs_give_the_right_errors() {
    let cfg = FitConfig::default();
    let t = [0.0, 10.0, 20.0];
    let m = [5.0, 5.0, 5.0];
    assert_eq!(
        fit(&[0.0], &[5.0], 60.0, &cfg),
        Err(HawkesError::TooFewEvents { n: 1, needed: 2 })
    );
    assert_eq!(
        fit(&[], &[], 60.0, &cfg),
        Err(HawkesError::TooFewEvents { n: 0, needed: 2 })
    );
    assert_eq!(
        fit(&t, &m[..2], 60.0, &cfg),
        Err(HawkesError::LengthMismatch { times: 3, marks: 2 })
    );
    assert_eq!(
        fit(&[0.0, f64::NAN, 20.0], &m, 60.0, &cfg),
        Err(HawkesError::NonFiniteTime { index: 1 })
    );
    assert_eq!(
        fit(&t, &[5.0, 5.0, f64::INFINITY], 60.0, &cfg),
        Err(HawkesError::NonFiniteMark { index: 2 })
    );
    assert!(matches!(
        fit(&t, &m, f64::NAN, &cfg),
        Err(HawkesError::NonFiniteHorizon { .. })
    ));
    assert_eq!(
        fit(&[0.0, 20.0, 10.0], &m, 60.0, &cfg),
        Err(HawkesError::UnsortedTimes {
            index: 2,
            previous: 20.0,
            time: 10.0
        })
    );
    assert_eq!(
        fit(&t, &m, 20.0, &cfg),
        Err(HawkesError::HorizonNotAfterLastEvent {
            horizon: 20.0,
            last: 20.0
        })
    );
    // The horizon is relative to the first event.
    let abs: Vec<f64> = t.iter().map(|x| x + 1e6).collect();
    assert!(fit(&abs, &m, 60.0, &cfg).is_ok());
    assert!(matches!(
        fit(&abs, &m, 15.0, &cfg),
        Err(HawkesError::HorizonNotAfterLastEvent { .. })
    ));
    for value in [0.0, 1.0, 1.5, -0.2, f64::NAN] {
        let c = FitConfig {
            max_branching: value,
            ..cfg
        };
        assert!(matches!(
            fit(&t, &m, 60.0, &c),
            Err(HawkesError::InvalidMaxBranching { .. })
        ));
    }
    let c = FitConfig {
        marks: MarkDistribution {
            alpha: 2.0,
            mu: 10.0,
        },
        ..cfg
    };
    assert!(matches!(
        fit(&t, &m, 60.0, &c),
        Err(HawkesError::InvalidMarkDistribution { .. })
    ));
    let c = FitConfig {
        marks: MarkDistribution {
            alpha: 2.0 + 1e-9,
            mu: 10.0,
        },
        ..cfg
    };
    assert!(matches!(
        fit(&t, &m, 60.0, &c),
        Err(HawkesError::EmptyParameterBox { .. })
    ));
    let bad_priors = [
        Prior {
            sigma_p: 0.0,
            ..Prior::default()
        },
        Prior {
            mu_beta: -1.0,
            ..Prior::default()
        },
        Prior {
            rho: 1.5,
            ..Prior::default()
        },
        Prior {
            rho: f64::NAN,
            ..Prior::default()
        },
        // ρσσ/(μμ) = −1.25: no log-normal has these moments.
        Prior {
            rho: -0.5,
            ..Prior::default()
        },
    ];
    for prior in bad_priors {
        let c = FitConfig {
            prior: Some(prior),
            ..cfg
        };
        assert!(
            matches!(fit(&t, &m, 60.0, &c), Err(HawkesError::InvalidPrior { .. })),
            "{prior:?}"
        );
        assert!(prior.log_density(0.01, 1e-3).is_nan());
    }
}

#[test]
fn prediction_matches_the_formula_and_refuses_supercritical() {
    let n = 40;
    let (g1, n_star) = (12.5, 0.6);
    let size = predict_final_size(n, g1, n_star, 1.0).unwrap();
    assert!((size - (40.0 + 12.5 / 0.4)).abs() < 1e-12);
    let size = predict_final_size(n, g1, n_star, 0.5).unwrap();
    assert!((size - (40.0 + 0.5 * 12.5 / 0.4)).abs() < 1e-12);
    assert_eq!(predict_final_size(n, 0.0, 0.0, 1.0), Ok(40.0));
    for bad in [1.0, 1.2, f64::INFINITY] {
        assert_eq!(
            predict_final_size(n, g1, bad, 1.0),
            Err(HawkesError::Supercritical { n_star: bad })
        );
    }
    assert!(matches!(
        predict_final_size(n, g1, f64::NAN, 1.0),
        Err(HawkesError::InvalidArgument { name: "n_star", .. })
    ));
    assert!(matches!(
        predict_final_size(n, -1.0, 0.5, 1.0),
        Err(HawkesError::InvalidArgument { name: "g1", .. })
    ));
    assert!(matches!(
        predict_final_size(n, 1.0, 0.5, f64::NAN),
        Err(HawkesError::InvalidArgument { name: "omega", .. })
    ));

    // W is the omega that predicts the true size exactly.
    let n_tot = 157;
    let w = random_forest_target(n, n_tot, g1, n_star);
    assert!((w - (117.0 * 0.4 / 12.5)).abs() < 1e-12);
    let exact = predict_final_size(n, g1, n_star, w).unwrap();
    assert!((exact - n_tot as f64).abs() < 1e-9);
    assert!(!random_forest_target(n, n_tot, 0.0, n_star).is_finite());

    // Through a fit.
    let f = fit(
        &[0.0, 5.0, 30.0],
        &[300.0, 40.0, 8.0],
        600.0,
        &FitConfig::default(),
    )
    .unwrap();
    let expected = 3.0 + f.g1 / (1.0 - f.n_star);
    assert!((f.predicted_size(1.0).unwrap() - expected).abs() < 1e-9 * expected);
}
