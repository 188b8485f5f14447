//! Likelihood tests: the O(n) recursion against the O(n²) double sum, the analytic gradient
//! against finite differences, G1, and robustness at the corners of the parameter box.

use rand::{rngs::StdRng, Rng, SeedableRng};
use tweetoscope_hawkes::simulate::simulate_cascade_from;
use tweetoscope_hawkes::{
    g1, log_likelihood, log_likelihood_naive, log_likelihood_with_gradient, Cascade, FitConfig,
    MarkDistribution, Prior, BETA_MAX, BETA_MIN, P_MIN,
};

/// Parameter pairs spanning the box (but not so extreme that the naive sum underflows).
const PARAMS: [(f64, f64); 6] = [
    (0.02, 1.0 / 600.0),
    (0.001, 1e-4),
    (0.028, 1.0 / 60.0),
    (1e-6, 2e-6),
    (0.005, 0.003),
    (1e-8, 1e-5),
];

/// Uniform random times over `span` (first at 0, with a few ties), power-law marks with a few
/// below 1, and optionally a few astronomically large ones.
fn random_cascade(rng: &mut StdRng, n: usize, span: f64, huge_marks: bool) -> (Vec<f64>, Vec<f64>) {
    let marks_dist = MarkDistribution::default();
    let mut times: Vec<f64> = (0..n).map(|_| rng.gen::<f64>() * span).collect();
    times[0] = 0.0;
    times.sort_by(f64::total_cmp);
    times[n / 2] = times[n / 2 - 1];
    let mut marks: Vec<f64> = (0..n).map(|_| marks_dist.sample(rng)).collect();
    marks[3] = 0.0;
    marks[7] = 0.4;
    marks[11] = -3.0;
    if huge_marks {
        marks[5] = 1e155;
        marks[n - 2] = 3e152;
    }
    (times, marks)
}

fn cascades() -> Vec<(Vec<f64>, Vec<f64>, f64)> {
    let mut rng = StdRng::seed_from_u64(7);
    let mut out = Vec::new();
    for (n, span) in [(60, 600.0), (250, 3600.0), (400, 86_400.0)] {
        let (t, m) = random_cascade(&mut rng, n, span, false);
        out.push((t, m, span + 30.0));
    }
    let (t, m) = random_cascade(&mut rng, 120, 1200.0, true);
    out.push((t, m, 1500.0));
    // A simulated (bursty) cascade.
    let marks = MarkDistribution::default();
    let ev = simulate_cascade_from(2000.0, 0.02, 1.0 / 300.0, &marks, 3600.0, 600, &mut rng);
    assert!(ev.len() > 20, "simulated cascade too short: {}", ev.len());
    let (t, m): (Vec<f64>, Vec<f64>) = ev.into_iter().unzip();
    out.push((t, m, 3600.0));
    out
}

fn rel_err(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn analytic_log_likelihood_matches_naive_double_sum() {
    for (times, marks, horizon) in cascades() {
        for (p, beta) in PARAMS {
            let fast = log_likelihood(&times, &marks, horizon, p, beta);
            let naive = log_likelihood_naive(&times, &marks, horizon, p, beta);
            assert!(naive.is_finite());
            assert!(
                rel_err(fast, naive) < 1e-9,
                "n = {}, p = {p}, beta = {beta}: fast {fast} vs naive {naive}",
                times.len()
            );
            // The gradient variant returns the same value.
            let (with_grad, _) = log_likelihood_with_gradient(&times, &marks, horizon, p, beta);
            assert!(rel_err(with_grad, naive) < 1e-9);
        }
    }
}

#[test]
fn absolute_times_are_shifted_to_the_first_event() {
    for (times, marks, horizon) in cascades() {
        let shifted: Vec<f64> = times.iter().map(|t| t + 12_345.0).collect();
        for (p, beta) in PARAMS {
            let a = log_likelihood(&times, &marks, horizon, p, beta);
            let b = log_likelihood(&shifted, &marks, horizon, p, beta);
            assert!(rel_err(b, a) < 1e-9, "{a} vs {b}");
            let c = log_likelihood_naive(&shifted, &marks, horizon, p, beta);
            assert!(rel_err(c, a) < 1e-9, "{a} vs naive {c}");
        }
    }
}

#[test]
fn marks_below_one_count_as_one() {
    let times = [0.0, 10.0, 25.0, 26.0];
    let low = [0.0, -4.0, 0.5, 1.0];
    let ones = [1.0; 4];
    for (p, beta) in PARAMS {
        let a = log_likelihood(&times, &low, 100.0, p, beta);
        let b = log_likelihood(&times, &ones, 100.0, p, beta);
        assert_eq!(a, b);
        assert_eq!(
            log_likelihood_naive(&times, &low, 100.0, p, beta),
            log_likelihood_naive(&times, &ones, 100.0, p, beta)
        );
    }
}

#[test]
fn analytic_gradient_matches_central_finite_differences() {
    for (times, marks, horizon) in cascades() {
        let k = (times.len() - 1) as f64;
        for (p, beta) in PARAMS {
            let (_, grad) = log_likelihood_with_gradient(&times, &marks, horizon, p, beta);
            let h_p = 1e-5 * p;
            let h_b = 1e-5 * beta;
            let ll = |p: f64, b: f64| log_likelihood(&times, &marks, horizon, p, b);
            let fd = [
                (ll(p + h_p, beta) - ll(p - h_p, beta)) / (2.0 * h_p),
                (ll(p, beta + h_b) - ll(p, beta - h_b)) / (2.0 * h_b),
            ];
            // Relative 1e-5, measured against the natural scale (n−1)/θ of each component
            // (the gradient itself can be near zero).
            for (i, scale) in [k / p, k / beta].into_iter().enumerate() {
                let err = (grad[i] - fd[i]).abs();
                assert!(
                    err <= 1e-5 * (grad[i].abs() + scale),
                    "n = {}, p = {p}, beta = {beta}, component {i}: analytic {} vs fd {}",
                    times.len(),
                    grad[i],
                    fd[i]
                );
            }
        }
    }
}

#[test]
fn g1_matches_direct_sum() {
    for (times, marks, horizon) in cascades() {
        for (p, beta) in PARAMS {
            let direct: f64 = times
                .iter()
                .zip(&marks)
                .map(|(t, m)| p * m.max(1.0) * (-beta * (horizon - (t - times[0]))).exp())
                .sum();
            let fast = g1(&times, &marks, horizon, p, beta);
            assert!(rel_err(fast, direct) < 1e-9, "{fast} vs {direct}");
            let c = Cascade::new(&times, &marks, horizon).unwrap();
            assert_eq!(c.g1(p, beta), fast);
        }
    }
}

#[test]
fn objective_is_finite_at_the_box_corners_even_where_the_naive_sum_underflows() {
    // Two events 10 days apart, observed for 10 more days: e^{−βΔ} underflows at β = 1/60.
    let ten_days = 864_000.0;
    let times = [0.0, 60.0, ten_days, ten_days + 5.0];
    let marks = [300.0, 0.0, 2e6, 12.0];
    let horizon = 2.0 * ten_days;
    let bounds = FitConfig::default().bounds().unwrap();
    assert_eq!(bounds.p_min, P_MIN);
    assert_eq!((bounds.beta_min, bounds.beta_max), (BETA_MIN, BETA_MAX));
    let prior = Prior::default();
    for p in [bounds.p_min, bounds.p_max] {
        for beta in [bounds.beta_min, bounds.beta_max] {
            let (ll, grad) = log_likelihood_with_gradient(&times, &marks, horizon, p, beta);
            assert!(
                ll.is_finite() && grad.iter().all(|g| g.is_finite()),
                "p = {p}, beta = {beta}"
            );
            assert!(prior.log_density(p, beta).is_finite());
        }
    }
    assert_eq!(
        log_likelihood_naive(&times, &marks, horizon, 0.01, BETA_MAX),
        f64::NEG_INFINITY
    );
    // The exact value there, in log space: ln A_3 = −βΔ + ln(m_1 e^{−60β} + 1).
    let (p, b) = (0.01, BETA_MAX);
    let ln_a2 = (300.0f64).ln() - 60.0 * b;
    let ln_a3 = ((300.0 * (-60.0 * b).exp()) + 1.0).ln() - (ten_days - 60.0) * b;
    let ln_a4 = (((300.0 * (-ten_days * b).exp() + 1.0 * (-(ten_days - 60.0) * b).exp()) + 2e6)
        .ln())
        - 5.0 * b;
    let comp: f64 = times
        .iter()
        .zip(&marks)
        .map(|(t, m)| m.max(1.0) * (1.0 - (-b * (horizon - t)).exp()))
        .sum();
    let expected = 3.0 * (p * b).ln() + ln_a2 + ln_a3 + ln_a4 - p * comp;
    let got = log_likelihood(&times, &marks, horizon, p, b);
    assert!(rel_err(got, expected) < 1e-12, "{got} vs {expected}");
}

#[test]
fn invalid_inputs_give_nan() {
    let t = [0.0, 1.0, 2.0];
    let m = [1.0, 2.0, 3.0];
    let nan = |v: f64| v.is_nan();
    assert!(nan(log_likelihood(&t, &m, 2.0, 0.01, 0.01))); // horizon not after last event
    assert!(nan(log_likelihood(&[0.0, 2.0, 1.0], &m, 5.0, 0.01, 0.01))); // unsorted
    assert!(nan(log_likelihood(&t, &m[..2], 5.0, 0.01, 0.01))); // length mismatch
    assert!(nan(log_likelihood(&[], &[], 5.0, 0.01, 0.01))); // empty
    assert!(nan(log_likelihood(
        &t,
        &[1.0, f64::NAN, 1.0],
        5.0,
        0.01,
        0.01
    )));
    assert!(nan(log_likelihood(&t, &m, 5.0, 0.0, 0.01))); // p not positive
    assert!(nan(log_likelihood(&t, &m, 5.0, 0.01, -1.0))); // beta not positive
    assert!(nan(log_likelihood_naive(&t, &m, 2.0, 0.01, 0.01)));
    assert!(
        log_likelihood_with_gradient(&t, &m, f64::INFINITY, 0.01, 0.01)
            .0
            .is_nan()
    );
    assert!(nan(g1(&t, &m, 5.0, f64::NAN, 0.01)));
    // A single event is a valid cascade: only the compensator remains.
    let single = log_likelihood(&[0.0], &[50.0], 100.0, 0.01, 0.02);
    assert!(rel_err(single, -0.01 * 50.0 * (1.0 - (-2.0f64).exp())) < 1e-12);
}
