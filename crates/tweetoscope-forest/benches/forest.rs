//! Training and prediction cost of the random forest on learner-sized data (3 features).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_main, Criterion, Throughput};
use tweetoscope_forest::{fit_rows, ForestParams};

/// Deterministic pseudo-random rows shaped like (β, n*, G1) and a noisy target.
fn data(n: usize) -> (Vec<[f64; 3]>, Vec<f64>) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let rows: Vec<[f64; 3]> = (0..n)
        .map(|_| [next() * 1e-2, next(), next() * 100.0])
        .collect();
    let targets = rows
        .iter()
        .map(|r| (r[1] * 3.0).sin() + r[2] / 50.0 + next() * 0.1)
        .collect();
    (rows, targets)
}

fn forest(c: &mut Criterion) {
    // The learner's settings: 100 trees, depth 8, leaves of 10 or more.
    let params = ForestParams {
        n_trees: 100,
        max_depth: 8,
        min_samples_leaf: 10,
        seed: 1,
        ..ForestParams::default()
    };
    let mut group = c.benchmark_group("forest");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for n in [1_000, 5_000] {
        let (rows, targets) = data(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("train 100 trees on {n} samples"), |b| {
            b.iter(|| black_box(fit_rows(&rows, &targets, &params).expect("fits")))
        });
    }
    let (rows, targets) = data(5_000);
    let model = fit_rows(&rows, &targets, &params).expect("fits");
    group.throughput(Throughput::Elements(1));
    group.bench_function("predict one row (100 trees)", |b| {
        b.iter(|| black_box(model.predict_one(black_box(&rows[17]))))
    });
    group.finish();
}

mod group {
    // The function criterion_group! defines has no doc comment.
    #![allow(missing_docs)]
    criterion::criterion_group!(benches, super::forest);
}
criterion_main!(group::benches);
