//! Mark distribution and simulation tests.

use rand::{rngs::StdRng, SeedableRng};
use tweetoscope_hawkes::simulate::{p_for_expected_size, simulate_cascade, simulate_cascade_from};
use tweetoscope_hawkes::{HawkesError, MarkDistribution};

fn mean_and_std_error(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

#[test]
fn mark_distribution_validation_and_moments() {
    let d = MarkDistribution::default();
    assert_eq!((d.alpha, d.mu), (2.4, 10.0));
    assert!((d.mean() - 35.0).abs() < 1e-12);
    assert!((MarkDistribution::new(3.0, 2.0).unwrap().mean() - 4.0).abs() < 1e-12);
    for (alpha, mu) in [
        (2.0, 10.0),
        (1.5, 10.0),
        (2.4, 0.0),
        (2.4, -1.0),
        (f64::NAN, 1.0),
        (3.0, f64::INFINITY),
    ] {
        match MarkDistribution::new(alpha, mu) {
            Err(HawkesError::InvalidMarkDistribution { alpha: a, mu: m }) => {
                assert!(a.total_cmp(&alpha).is_eq() && m.total_cmp(&mu).is_eq());
            }
            other => panic!("alpha = {alpha}, mu = {mu}: {other:?}"),
        }
    }
}

#[test]
fn mark_sample_mean_and_median_agree_with_the_formulas() {
    let mut rng = StdRng::seed_from_u64(3);
    // Finite variance (alpha = 5): a tight check of the mean, within 5 standard errors.
    let d = MarkDistribution::new(5.0, 10.0).unwrap();
    let xs: Vec<f64> = (0..200_000).map(|_| d.sample(&mut rng)).collect();
    assert!(xs.iter().all(|&x| x >= d.mu));
    let (mean, se) = mean_and_std_error(&xs);
    assert!(
        (mean - d.mean()).abs() < 5.0 * se,
        "mean {mean} vs {} (se {se})",
        d.mean()
    );

    // Default (alpha = 2.4, infinite variance): the sample mean converges slowly, so only a
    // generous 20% check, plus the median (robust) within 2%.
    let d = MarkDistribution::default();
    let mut xs: Vec<f64> = (0..400_000).map(|_| d.sample(&mut rng)).collect();
    assert!(xs.iter().all(|&x| x >= d.mu));
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    assert!(
        (mean / d.mean() - 1.0).abs() < 0.2,
        "mean {mean} vs {}",
        d.mean()
    );
    xs.sort_by(f64::total_cmp);
    let median = xs[xs.len() / 2];
    assert!(
        (median / d.median() - 1.0).abs() < 0.02,
        "median {median} vs {}",
        d.median()
    );
}

#[test]
fn simulated_cascades_are_well_formed() {
    let marks = MarkDistribution::default();
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..200 {
        let ev = simulate_cascade(0.025, 1.0 / 300.0, &marks, 3600.0, 500, &mut rng);
        assert!(!ev.is_empty() && ev.len() <= 500);
        assert_eq!(ev[0].0, 0.0);
        assert!(ev.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(ev
            .iter()
            .all(|&(t, m)| (0.0..3600.0).contains(&t) && m >= marks.mu));
    }
    // The cap on the number of events.
    let ev = simulate_cascade_from(1e6, 0.02, 1.0 / 600.0, &marks, 3600.0, 100, &mut rng);
    assert_eq!(ev.len(), 100);
    assert_eq!(ev[0], (0.0, 1e6));
    // Degenerate arguments.
    assert!(simulate_cascade(0.02, 0.01, &marks, 600.0, 0, &mut rng).is_empty());
    assert!(simulate_cascade(0.02, 0.01, &marks, 0.0, 10, &mut rng).is_empty());
    assert_eq!(
        simulate_cascade_from(50.0, 0.0, 0.01, &marks, 600.0, 10, &mut rng),
        vec![(0.0, 50.0)]
    );
    assert_eq!(
        simulate_cascade_from(50.0, 0.01, f64::NAN, &marks, 600.0, 10, &mut rng).len(),
        1
    );
    // With an infinite horizon a subcritical cascade dies out on its own.
    for _ in 0..50 {
        let ev = simulate_cascade(0.02, 1.0 / 60.0, &marks, f64::INFINITY, 1_000_000, &mut rng);
        assert!(ev.len() < 1_000_000);
    }
}

/// With a negligible branching factor every retweet is a direct child of the first tweet, so
/// the children count is Poisson(p·m0) and their delays are Exp(beta): this checks the thinning.
#[test]
fn thinning_gives_exponential_delays_and_poisson_counts() {
    let marks = MarkDistribution::default();
    let (p, beta, m0) = (1e-6, 1.0 / 500.0, 1e7); // p·m0 = 10, n* = 3.5e-5
    let mut rng = StdRng::seed_from_u64(5);
    let mut counts = Vec::new();
    let mut delays = Vec::new();
    for _ in 0..600 {
        let ev = simulate_cascade_from(m0, p, beta, &marks, f64::INFINITY, 10_000, &mut rng);
        counts.push((ev.len() - 1) as f64);
        delays.extend(ev[1..].iter().map(|e| e.0));
    }
    let (mean_count, se) = mean_and_std_error(&counts);
    assert!(
        (mean_count - 10.0).abs() < 5.0 * se,
        "count {mean_count} (se {se})"
    );
    let (mean_delay, se) = mean_and_std_error(&delays);
    assert!(
        (mean_delay - 500.0).abs() < 5.0 * se,
        "delay {mean_delay} (se {se})"
    );
    // Median of Exp(beta) is ln 2 / beta: the fraction below it is 1/2 ± 5 standard errors.
    let below = delays
        .iter()
        .filter(|&&t| t < std::f64::consts::LN_2 / beta)
        .count() as f64;
    let frac = below / delays.len() as f64;
    let se = (0.25 / delays.len() as f64).sqrt();
    assert!((frac - 0.5).abs() < 5.0 * se, "fraction {frac}");
}

#[test]
fn p_for_expected_size_solves_the_size_equation_and_caps_branching() {
    let marks = MarkDistribution::default();
    for (target, m0) in [(2.0, 10.0), (90.0, 500.0), (1000.0, 3e4)] {
        let p = p_for_expected_size(target, m0, &marks, 0.99);
        let size = 1.0 + p * m0 / (1.0 - p * marks.mean());
        assert!((size / target - 1.0).abs() < 1e-12, "{size} vs {target}");
    }
    let p = p_for_expected_size(1e9, 1.0, &marks, 0.9);
    assert!((p * marks.mean() - 0.9).abs() < 1e-12);
    assert_eq!(p_for_expected_size(f64::INFINITY, 1.0, &marks, 0.9), p);
    assert_eq!(p_for_expected_size(1.0, 100.0, &marks, 0.9), 0.0);
    assert_eq!(p_for_expected_size(f64::NAN, 100.0, &marks, 0.9), 0.0);
    // Marks below 1 count as 1.
    assert_eq!(
        p_for_expected_size(5.0, 0.0, &marks, 0.99),
        p_for_expected_size(5.0, 1.0, &marks, 0.99)
    );
}

/// Simulated sizes follow the target in expectation (marks with finite variance, alpha = 4, so
/// the sample mean of the sizes settles): mean within 5 standard errors of the target.
#[test]
fn simulated_sizes_match_the_expected_size() {
    let marks = MarkDistribution::new(4.0, 10.0).unwrap();
    let (target, m0) = (10.0, 50.0);
    let p = p_for_expected_size(target, m0, &marks, 0.99);
    let mut rng = StdRng::seed_from_u64(17);
    let sizes: Vec<f64> = (0..4000)
        .map(|_| {
            simulate_cascade_from(
                m0,
                p,
                1.0 / 600.0,
                &marks,
                f64::INFINITY,
                1_000_000,
                &mut rng,
            )
            .len() as f64
        })
        .collect();
    let (mean, se) = mean_and_std_error(&sizes);
    assert!(
        (mean - target).abs() < 5.0 * se,
        "mean size {mean} (se {se})"
    );
    assert!(se < 0.05 * target, "too noisy to test anything: se {se}");
}
