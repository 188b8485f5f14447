//! `tweetoscope bench`: a seeded synthetic replay of at least `--tweets` tweets through every
//! stage (embedded broker, or real Kafka with `--brokers`), reporting end-to-end throughput, fits
//! per second, the latency from a cascade's window closing to its prediction, and peak memory.

use std::sync::Arc;

use clap::Args;
use serde::Serialize;

use crate::config::{ConfigError, KafkaArgs, RunArgs};
use crate::metrics::Metrics;
use crate::run::{run_pipeline, RunSummary};

/// Options of `bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Tweets to replay at least (the number of synthetic cascades is chosen to reach it).
    #[arg(long, default_value_t = 1_000_000, help_heading = "Bench")]
    pub tweets: u64,
    /// Every option of `run` (its --cascades is replaced).
    #[command(flatten)]
    pub run: RunArgs,
}

/// Benchmark figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BenchReport {
    /// The run's own summary.
    pub run: RunSummary,
    /// Cascades fitted per second over the run.
    pub fits_per_second: f64,
    /// Mean duration of one fit, in microseconds.
    pub mean_fit_micros: f64,
    /// Window close → prediction latency, median, in milliseconds.
    pub latency_p50_ms: f64,
    /// Window close → prediction latency, 99th percentile, in milliseconds.
    pub latency_p99_ms: f64,
    /// Peak resident memory of the process (VmHWM), in MiB.
    pub peak_rss_mib: f64,
    /// Cores available.
    pub cores: usize,
}

/// Mean realised size of the synthetic cascades calibrated on the NEWS index (measured on seeds
/// 42 and 7: 139 tweets per cascade); a margin makes the target reached.
const TWEETS_PER_CASCADE: u64 = 125;

/// Peak resident set size of this process in MiB, from /proc (NaN elsewhere).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Runs the benchmark.
pub async fn bench(
    kafka_args: &KafkaArgs,
    args: &BenchArgs,
    metrics: Arc<Metrics>,
) -> anyhow::Result<BenchReport> {
    if args.tweets == 0 {
        return Err(ConfigError("invalid value 0 for --tweets: at least 1".into()).into());
    }
    let mut run = args.run.clone();
    run.generator.cascades = args.tweets.div_ceil(TWEETS_PER_CASCADE) as usize;
    run.validate()?;
    let summary = run_pipeline(kafka_args, &run, metrics.clone(), None).await?;
    let fits = metrics.fit_seconds.get_sample_count();
    let latencies = metrics.latencies.snapshot();
    Ok(BenchReport {
        fits_per_second: fits as f64 / summary.seconds,
        mean_fit_micros: if fits == 0 {
            f64::NAN
        } else {
            1e6 * metrics.fit_seconds.get_sample_sum() / fits as f64
        },
        latency_p50_ms: 1e3 * tweetoscope_stats::quantile(&latencies, 0.5),
        latency_p99_ms: 1e3 * tweetoscope_stats::quantile(&latencies, 0.99),
        peak_rss_mib: peak_rss_mib(),
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        run: summary,
    })
}

impl BenchReport {
    /// The figures as text.
    pub fn to_text(&self) -> String {
        format!(
            "Tweetoscope bench on {} ({} cores): {} tweets, {} cascades in {:.1} s\n\
             end-to-end throughput   {:>10.0} tweets/s\n\
             fits                    {:>10.0} cascades/s (mean fit {:.0} µs)\n\
             window close → predict  p50 {:.1} ms, p99 {:.1} ms ({} predictions)\n\
             peak memory (RSS)       {:>10.1} MiB\n\
             complete                {}\n",
            if self.run.embedded {
                "the embedded broker"
            } else {
                "Kafka"
            },
            self.cores,
            self.run.tweets,
            self.run.cascades,
            self.run.seconds,
            self.run.tweets_per_second,
            self.fits_per_second,
            self.mean_fit_micros,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.run
                .windows
                .values()
                .map(|w| w.predictions)
                .sum::<usize>(),
            self.peak_rss_mib,
            self.run.complete
        )
    }
}
