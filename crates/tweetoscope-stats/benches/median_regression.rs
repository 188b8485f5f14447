//! Cost of the learner's growth model: a median regression on learner-sized data (3 features,
//! heavy-tailed targets like log growths) and its 10-fold cross-fitted residuals.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_main, Criterion, Throughput};
use tweetoscope_stats::{cross_fitted_residuals, MedianRegression};

/// Deterministic pseudo-random rows shaped like (ln n, ln late share, ln √followers) and a
/// log growth with a heavy right tail.
fn data(n: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|_| vec![1.0 + next() * 5.0, -next() * 3.0, 1.0 + next() * 4.0])
        .collect();
    let targets = rows
        .iter()
        .map(|r| {
            let u: f64 = next().max(1e-12);
            0.5 - 0.1 * r[0] + 0.3 * r[1] + 0.05 * r[2] + 0.4 * (-u.ln()) - 0.3
        })
        .collect();
    (rows, targets)
}

fn median_regression(c: &mut Criterion) {
    let mut group = c.benchmark_group("median_regression");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for n in [1_000, 5_000] {
        let (rows, targets) = data(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("fit, 3 features, {n} rows"), |b| {
            b.iter(|| MedianRegression::fit(black_box(&rows), black_box(&targets)))
        });
        group.bench_function(format!("10-fold cross-fitted residuals, {n} rows"), |b| {
            b.iter(|| cross_fitted_residuals(black_box(&rows), black_box(&targets), 10))
        });
    }
    group.finish();
}

fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    median_regression(&mut criterion);
}

criterion_main!(benches);
