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
    /// Resident memory (VmRSS, MiB) when the collector had read 20, 40, 60, 80 and 100 % of the
    /// tweets: flat once the pipeline is warm if every stage's memory is bounded.
    pub rss_by_progress_mib: Vec<f64>,
    /// Resident memory growth from 40 % of the tweets read to the end, in MiB.
    pub rss_growth_after_40_percent_mib: f64,
    /// Cores available.
    pub cores: usize,
}

/// Mean realised size of the synthetic cascades calibrated on the NEWS index (measured on seeds
/// 42 and 7: 139 tweets per cascade); a margin makes the target reached.
const TWEETS_PER_CASCADE: u64 = 125;

/// A memory figure of this process in MiB from /proc/self/status (`VmHWM`: peak, `VmRSS`: now;
/// NaN elsewhere).
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Peak resident set size of this process in MiB, from /proc (NaN elsewhere).
pub fn peak_rss_mib() -> f64 {
    status_mib("VmHWM")
}

/// Resident set size of this process now, in MiB (NaN elsewhere).
pub fn rss_mib() -> f64 {
    status_mib("VmRSS")
}

/// The resident memory at the first sample taken once `share` of `total` tweets were read, for
/// each share; samples are (tweets read, MiB) in time order. NaN for a share never reached.
fn rss_at_shares(samples: &[(u64, f64)], total: u64, shares: &[f64]) -> Vec<f64> {
    shares
        .iter()
        .map(|share| {
            let target = (share * total as f64).ceil() as u64;
            samples
                .iter()
                .find(|(read, _)| *read >= target)
                .map_or(f64::NAN, |(_, mib)| *mib)
        })
        .collect()
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
    // Resident memory against the collector's progress, twice a second.
    let (stop_sampling, mut stopped) = tokio::sync::watch::channel(false);
    let sampler = {
        let metrics = metrics.clone();
        let tweets_topic = kafka_args.topics.tweets_topic.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let read = Metrics::count(&metrics.consumed, &["collector", &tweets_topic]);
                samples.push((read, rss_mib()));
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                    _ = stopped.changed() => break,
                }
            }
            let read = Metrics::count(&metrics.consumed, &["collector", &tweets_topic]);
            samples.push((read, rss_mib()));
            samples
        })
    };
    let summary = run_pipeline(kafka_args, &run, metrics.clone(), None).await;
    let _ = stop_sampling.send(true);
    let samples = sampler.await.unwrap_or_default();
    let summary = summary?;
    let total = samples.last().map_or(0, |s| s.0);
    let rss_by_progress_mib = rss_at_shares(&samples, total, &[0.2, 0.4, 0.6, 0.8, 1.0]);
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
        rss_growth_after_40_percent_mib: rss_by_progress_mib[4] - rss_by_progress_mib[1],
        rss_by_progress_mib,
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
             memory at 20..100 %     {} MiB (growth after 40 %: {:+.1} MiB)\n\
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
            self.rss_by_progress_mib
                .iter()
                .map(|m| format!("{m:.0}"))
                .collect::<Vec<_>>()
                .join(" / "),
            self.rss_growth_after_40_percent_mib,
            self.run.complete
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_read_at_the_first_sample_past_each_share_of_the_tweets() {
        let samples = [(0, 10.0), (15, 11.0), (20, 12.0), (55, 13.0), (100, 14.0)];
        let at = rss_at_shares(&samples, 100, &[0.2, 0.4, 0.6, 1.0]);
        assert_eq!(at[..2], [12.0, 13.0]);
        assert_eq!(at[2..], [14.0, 14.0]);
        assert!(
            rss_at_shares(&samples, 200, &[1.0])[0].is_nan(),
            "never reached"
        );
    }

    #[test]
    fn this_process_has_a_resident_size_within_its_peak() {
        let (now, peak) = (rss_mib(), peak_rss_mib());
        if cfg!(target_os = "linux") {
            assert!(
                now > 0.0 && now <= peak,
                "VmRSS {now} MiB, VmHWM {peak} MiB"
            );
        }
    }
}
