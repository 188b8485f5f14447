//! Benchmarks of the log-likelihoods (fast and naive), their gradients and the fits, for both
//! kernels, on simulated cascades of 100, 1,000 and 10,000 events. The `fit` group times the
//! exponential fit (MAP and MLE) next to the former L-BFGS solver on the same cascades
//! (`exponential_{map,mle}_lbfgs`), so that before and after come from one run.
//!
//! Throughput is in events, so criterion reports time per event next to the time per call.
//! The naive O(n²) references run for 100 and 1,000 events only (10,000 would take ~0.1–1 s
//! per call). Measurement times are set here so that the whole run takes a few minutes on two
//! cores: `cargo bench -p tweetoscope-hawkes` (add `-- --quick` for a faster, rougher run, or a
//! filter such as `-- power_law` for one group).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use rand::{rngs::StdRng, SeedableRng};
use tweetoscope_hawkes::power_law::{self, PowerLawCascade, PowerLawParams};
use tweetoscope_hawkes::simulate::simulate_cascade_from;
use tweetoscope_hawkes::{log_likelihood_naive, Cascade, FitConfig, MarkDistribution};

const SIZES: [usize; 3] = [100, 1_000, 10_000];
/// The naive references only run up to this many events.
const NAIVE_MAX: usize = 1_000;

/// Exponential-kernel parameters of the simulations and evaluations.
const P: f64 = 0.02;
const BETA: f64 = 1.0 / 600.0;

/// A cascade of exactly `n` events (times, marks, horizon one second after the last).
struct Data {
    times: Vec<f64>,
    marks: Vec<f64>,
    horizon: f64,
}

impl Data {
    fn from_events(events: Vec<(f64, f64)>, n: usize) -> Self {
        assert_eq!(events.len(), n, "simulation too short for the benchmark");
        let (times, marks): (Vec<f64>, Vec<f64>) = events.into_iter().unzip();
        let horizon = times[n - 1] + 1.0;
        Self {
            times,
            marks,
            horizon,
        }
    }
}

fn exponential_data(n: usize) -> Data {
    let marks = MarkDistribution::default();
    // n* = 0.7 and a first mark large enough for ≥ 10,000 events.
    for seed in 0.. {
        let mut rng = StdRng::seed_from_u64(seed);
        let events = simulate_cascade_from(1e6, P, BETA, &marks, f64::INFINITY, n, &mut rng);
        if events.len() == n {
            return Data::from_events(events, n);
        }
    }
    unreachable!()
}

fn power_law_params() -> PowerLawParams {
    PowerLawParams::from_branching(0.7, 0.8, 60.0, 0.6, &MarkDistribution::default())
        .expect("valid parameters")
}

fn power_law_data(n: usize) -> Data {
    let marks = MarkDistribution::default();
    let params = power_law_params();
    for seed in 0.. {
        let mut rng = StdRng::seed_from_u64(seed);
        let events =
            power_law::simulate_cascade_from(1e7, &params, &marks, f64::INFINITY, n, &mut rng);
        if events.len() == n {
            return Data::from_events(events, n);
        }
    }
    unreachable!()
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
}

fn exponential(c: &mut Criterion) {
    let data: Vec<Data> = SIZES.iter().map(|&n| exponential_data(n)).collect();
    for gradient in [false, true] {
        let name = if gradient {
            "exponential/log_likelihood_with_gradient"
        } else {
            "exponential/log_likelihood"
        };
        let mut group = c.benchmark_group(name);
        configure(&mut group);
        for d in &data {
            let n = d.times.len();
            group.throughput(Throughput::Elements(n as u64));
            let cascade = Cascade::new(&d.times, &d.marks, d.horizon).expect("valid cascade");
            group.bench_function(BenchmarkId::new("fast", n), |b| {
                if gradient {
                    b.iter(|| cascade.log_likelihood_with_gradient(black_box(P), black_box(BETA)))
                } else {
                    b.iter(|| cascade.log_likelihood(black_box(P), black_box(BETA)))
                }
            });
            if n <= NAIVE_MAX {
                group.sampling_mode(SamplingMode::Flat);
                group.bench_function(BenchmarkId::new("naive", n), |b| {
                    b.iter(|| {
                        log_likelihood_naive(&d.times, &d.marks, d.horizon, black_box(P), BETA)
                    })
                });
                group.sampling_mode(SamplingMode::Auto);
            }
        }
        group.finish();
    }
}

fn power_law(c: &mut Criterion) {
    let data: Vec<Data> = SIZES.iter().map(|&n| power_law_data(n)).collect();
    let params = power_law_params();
    for gradient in [false, true] {
        let name = if gradient {
            "power_law/log_likelihood_with_gradient"
        } else {
            "power_law/log_likelihood"
        };
        let mut group = c.benchmark_group(name);
        configure(&mut group);
        for d in &data {
            let n = d.times.len();
            group.throughput(Throughput::Elements(n as u64));
            // Prepared once (decay table), as in a fit.
            let cascade =
                PowerLawCascade::new(&d.times, &d.marks, d.horizon).expect("valid cascade");
            group.bench_function(BenchmarkId::new("fast", n), |b| {
                if gradient {
                    b.iter(|| cascade.log_likelihood_with_gradient(black_box(&params)))
                } else {
                    b.iter(|| cascade.log_likelihood(black_box(&params)))
                }
            });
            if !gradient {
                // One-shot: validation and decays computed on the fly, no table.
                group.bench_function(BenchmarkId::new("one_shot", n), |b| {
                    b.iter(|| {
                        power_law::log_likelihood(&d.times, &d.marks, d.horizon, black_box(&params))
                    })
                });
            }
            if n <= NAIVE_MAX {
                group.sampling_mode(SamplingMode::Flat);
                group.bench_function(BenchmarkId::new("naive", n), |b| {
                    b.iter(|| {
                        power_law::log_likelihood_naive(
                            &d.times,
                            &d.marks,
                            d.horizon,
                            black_box(&params),
                        )
                    })
                });
                group.sampling_mode(SamplingMode::Auto);
            }
        }
        group.finish();
    }
}

fn fits(c: &mut Criterion) {
    let configs = [("map", FitConfig::default()), ("mle", FitConfig::mle())];
    let mut group = c.benchmark_group("fit");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for &n in &SIZES {
        group.throughput(Throughput::Elements(n as u64));
        let d = exponential_data(n);
        let cascade = Cascade::new(&d.times, &d.marks, d.horizon).expect("valid cascade");
        // The profiled fit (`fit`) and, on the same cascade, the former L-BFGS solver.
        for (name, config) in &configs {
            group.bench_function(BenchmarkId::new(format!("exponential_{name}"), n), |b| {
                b.iter(|| {
                    tweetoscope_hawkes::fit(&d.times, &d.marks, black_box(d.horizon), config)
                        .expect("fit")
                })
            });
            group.bench_function(
                BenchmarkId::new(format!("exponential_{name}_lbfgs"), n),
                |b| b.iter(|| config.fit_cascade_lbfgs(black_box(&cascade)).expect("fit")),
            );
        }
        let config = FitConfig::default();
        let d = power_law_data(n);
        group.bench_function(BenchmarkId::new("power_law_mle", n), |b| {
            b.iter(|| {
                power_law::fit(&d.times, &d.marks, black_box(d.horizon), &config).expect("fit")
            })
        });
    }
    group.finish();
}

mod group {
    // The function criterion_group! defines has no doc comment.
    #![allow(missing_docs)]
    criterion::criterion_group!(benches, super::exponential, super::power_law, super::fits);
}
criterion_main!(group::benches);
