//! `tweetoscope bench`: a seeded synthetic replay of at least `--tweets` tweets through every
//! stage (embedded broker, or real Kafka with `--brokers`), reporting end-to-end throughput, fits
//! per second, the latency from a cascade's window closing to its prediction, and peak memory;
//! and, before and after the pipeline, the same number of messages through a processing loop
//! that does nothing (the [pass-through ceiling](PassThroughReport)), with the pipeline's rate as
//! a share of each and of their mean.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use rdkafka::consumer::Consumer as _;
use rdkafka::Message as _;
use serde::Serialize;
use tweetoscope_messages::{SourceRecordRef, TweetKind, TweetRef};

use crate::config::{ConfigError, KafkaArgs, RunArgs};
use crate::kafka::{
    create_topics, handler, process, EmbeddedBroker, Handled, KafkaSettings, LoopSettings,
    Outgoing, Sink,
};
use crate::metrics::Metrics;
use crate::run::{run_pipeline, RunSummary};

/// Options of `bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Tweets to replay at least (the number of synthetic cascades is chosen to reach it).
    #[arg(long, default_value_t = 1_000_000, help_heading = "Bench")]
    pub tweets: u64,
    /// Skip the pass-through ceiling (the same number of messages through a processing loop that
    /// does nothing, timed before and after the pipeline).
    #[arg(long, help_heading = "Bench")]
    pub no_pass_through: bool,
    /// Every option of `run` (its --cascades is replaced).
    #[command(flatten)]
    pub run: RunArgs,
}

/// The ceiling of the pipeline on the same kind of broker: as many retweets of the generator's
/// form and size as the pipeline's tweets, produced as the generator produces them (keyed by
/// source, in transactions of
/// [`EVENTS_PER_TRANSACTION`](crate::stages::generator::EVENTS_PER_TRANSACTION) unless
/// `--no-transactions`), then read and written again by one processing loop that does nothing
/// else, with the pipeline's commit interval and guarantees.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PassThroughReport {
    /// Messages produced, re-produced and committed.
    pub messages: u64,
    /// From the first message produced to the last input committed by the loop.
    pub seconds: f64,
    /// `messages / seconds`.
    pub messages_per_second: f64,
    /// The pipeline's tweets/s as a share of `messages_per_second`.
    pub pipeline_share: f64,
}

impl PassThroughReport {
    /// The same report, its [`Self::pipeline_share`] that of `pipeline_tweets_per_second`.
    fn with_pipeline_rate(self, pipeline_tweets_per_second: f64) -> Self {
        Self {
            pipeline_share: pipeline_tweets_per_second / self.messages_per_second,
            ..self
        }
    }
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
    /// Peak resident memory of the process (VmHWM) during the pipeline, in MiB (on Linux the
    /// peak is reset after the pass-through run before the pipeline; elsewhere it may include
    /// that run).
    pub peak_rss_mib: f64,
    /// Resident memory (VmRSS, MiB) when the collector had read 20, 40, 60, 80 and 100 % of the
    /// tweets: flat once the pipeline is warm if every stage's memory is bounded.
    pub rss_by_progress_mib: Vec<f64>,
    /// Resident memory growth from 40 % of the tweets read to the end, in MiB.
    pub rss_growth_after_40_percent_mib: f64,
    /// Cores available.
    pub cores: usize,
    /// The pass-through ceiling timed after the pipeline, unless `--no-pass-through`.
    pub pass_through: Option<PassThroughReport>,
    /// The pass-through ceiling timed before the pipeline (`--tweets` messages), unless
    /// `--no-pass-through`. The machine's speed can drift between the runs (other loads on its
    /// host): the two ceilings show by how much.
    pub pass_through_before: Option<PassThroughReport>,
    /// The pipeline's tweets/s as a share of the mean of the two ceilings, unless
    /// `--no-pass-through`.
    pub pipeline_share_of_mean_ceiling: Option<f64>,
    /// Each stage's share of the work, by stage name.
    pub stages: Vec<StageFigures>,
}

/// What one stage of the pipeline did during a bench.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageFigures {
    /// The stage.
    pub stage: String,
    /// Messages it read.
    pub messages: u64,
    /// Those messages over the run's duration (until the last prediction).
    pub messages_per_second: f64,
    /// Wall time its loop spent handling messages (from reading one to handing its outputs to
    /// the producer, `tweetoscope_processing_seconds`), per million messages. All stages share
    /// one process here, so CPU time per stage is not measured; for stages whose work runs on
    /// other threads (the estimator's fits, the learner's trainings) this includes the wait for
    /// those threads.
    pub handling_seconds_per_million: f64,
}

/// Every stage that read a message, with its figures over `seconds`, in the pipeline's order.
fn stage_figures(metrics: &Metrics, seconds: f64) -> Vec<StageFigures> {
    use prometheus::core::Collector as _;
    let mut messages: Vec<(String, u64)> = Vec::new();
    for family in metrics.consumed.collect() {
        for metric in family.get_metric() {
            let Some(stage) = metric.get_label().iter().find(|l| l.name() == "stage") else {
                continue;
            };
            let count = metric.get_counter().get_value() as u64;
            match messages.iter_mut().find(|(s, _)| s == stage.value()) {
                Some((_, total)) => *total += count,
                None => messages.push((stage.value().to_owned(), count)),
            }
        }
    }
    let order = |stage: &str| {
        PIPELINE_ORDER
            .iter()
            .position(|s| *s == stage)
            .unwrap_or(PIPELINE_ORDER.len())
    };
    messages.sort_by(|a, b| order(&a.0).cmp(&order(&b.0)).then(a.0.cmp(&b.0)));
    messages
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(stage, count)| {
            let handling = metrics
                .processing_seconds
                .with_label_values(&[&stage])
                .get_sample_sum();
            StageFigures {
                messages_per_second: count as f64 / seconds,
                handling_seconds_per_million: handling * 1e6 / count as f64,
                messages: count,
                stage,
            }
        })
        .collect()
}

/// The stages in the order a tweet meets them (the order of [`StageFigures`]).
const PIPELINE_ORDER: [&str; 7] = [
    "collector",
    "estimator",
    "predictor",
    "learner",
    "monitor",
    "dashboard",
    "logger",
];

/// The stage name of the pass-through loop (metrics labels, transactional id).
const PASS_THROUGH_STAGE: &str = "pass-through";
/// The stage name of the pass-through's producer of input.
const PASS_THROUGH_SOURCE: &str = "pass-through-source";
/// Sources the pass-through's input is keyed by, as the generator's default.
const PASS_THROUGH_SOURCES: u64 = 3;
/// How far the input may run ahead of the loop on the embedded broker, as the generator's.
const PASS_THROUGH_MAX_AHEAD: u64 = 50_000;

/// The pass-through's input: retweets as the generator writes them for a synthetic cascade (150
/// retweets a cascade here), the same fields with texts of the same form and size, so that the
/// ceiling moves messages of the pipeline's size; written as the generator writes its own, into
/// a buffer, from texts made once per cascade.
#[derive(Debug)]
struct PassThroughTweets {
    /// The `info` of every tweet (a synthetic cascade's parameters).
    info: String,
    /// The cascade whose texts are made, its `msg` and its id.
    cascade: Option<(u64, String, String)>,
}

impl PassThroughTweets {
    fn new() -> Self {
        Self {
            info: tweetoscope_replay::synthetic::origin_label(0.021_309, 0.000_889, 0.745_8),
            cascade: None,
        }
    }

    /// Appends the payload of input message `index` to `out`.
    fn write(&mut self, index: u64, out: &mut Vec<u8>) {
        let cascade = index / 150;
        if self.cascade.as_ref().is_none_or(|(c, _, _)| *c != cascade) {
            self.cascade = Some((
                cascade,
                tweetoscope_replay::cascade_text(cascade),
                cascade.to_string(),
            ));
        }
        let (_, msg, id) = self.cascade.as_ref().expect("made above");
        SourceRecordRef::Tweet(TweetRef {
            kind: TweetKind::Retweet,
            msg: Cow::Borrowed(msg),
            // Event times on a source clock of the synthetic replay's magnitude (its origin).
            t: 500_000_000.0 + index as f64 * 0.371_9,
            m: 1_000.0 + (index % 9_000) as f64,
            tweet_id: Cow::Borrowed(id),
            info: Cow::Borrowed(&self.info),
        })
        .write_payload(out);
    }
}

/// Runs the pass-through ceiling with `messages` messages (see [`PassThroughReport`]) on a broker
/// of its own when the pipeline's is embedded, else on new topics of `kafka_args`' brokers; its
/// [`PassThroughReport::pipeline_share`] is NaN until the pipeline's rate is known.
pub async fn pass_through(
    kafka_args: &KafkaArgs,
    messages: u64,
) -> anyhow::Result<PassThroughReport> {
    let suffix = format!("{}-{}", std::process::id(), crate::kafka::now_ms());
    let input = format!("pass-through-in-{suffix}");
    let output = format!("pass-through-out-{suffix}");
    let topics = [input.clone(), output.clone()];
    let (embedded, brokers) = match &kafka_args.brokers {
        Some(b) => (None, b.clone()),
        None => {
            let broker = EmbeddedBroker::start(&topics, &[], kafka_args.partitions)?;
            let bootstrap = broker.bootstrap().to_owned();
            (Some(broker), bootstrap)
        }
    };
    let mut settings = KafkaSettings::new(kafka_args, brokers)?;
    if embedded.is_some() {
        settings.tune_for_embedded_broker();
    } else {
        create_topics(&settings, &topics, &[], kafka_args.partitions).await?;
    }
    let transactional = settings.transactions;
    let metrics = Metrics::new();
    let consumer = settings.consumer_in_group(
        &format!("{}-pass-through-{suffix}", kafka_args.group_prefix),
        PASS_THROUGH_STAGE,
        metrics.clone(),
    )?;
    consumer
        .subscribe(&[input.as_str()])
        .context("cannot subscribe the pass-through loop")?;
    let sink = Sink::new(
        settings
            .stage_producer(PASS_THROUGH_STAGE, &metrics)
            .await?,
    );
    let echo = {
        let output = output.clone();
        handler(move |message| {
            Handled::Now(vec![Outgoing {
                topic: output.clone(),
                key: message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
                partition: None,
                payload: message.payload().map(<[u8]>::to_vec),
                headers: Vec::new(),
            }])
        })
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut loop_settings = LoopSettings::new(PASS_THROUGH_STAGE);
    loop_settings.commit_interval = settings.commit_interval;
    loop_settings.transactional = transactional;
    let running = tokio::spawn(process(
        loop_settings,
        consumer,
        sink,
        metrics.clone(),
        shutdown,
        echo,
    ));

    let source = Sink::new(
        settings
            .stage_producer(PASS_THROUGH_SOURCE, &metrics)
            .await?,
    );
    let consumed_counter = metrics
        .consumed
        .with_label_values(&[PASS_THROUGH_STAGE, &input]);
    let consumed = || consumed_counter.get();
    let committed = || Metrics::count(&metrics.inputs_committed, &[PASS_THROUGH_STAGE, &input]);
    let keys: Vec<String> = (0..PASS_THROUGH_SOURCES as usize)
        .map(tweetoscope_replay::source_name)
        .collect();
    let started = Instant::now();
    if transactional {
        source.begin_transaction()?;
    }
    let mut tweets = PassThroughTweets::new();
    let mut payload = Vec::with_capacity(256);
    for index in 0..messages {
        if embedded.is_some() {
            while index > consumed() + PASS_THROUGH_MAX_AHEAD {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        payload.clear();
        tweets.write(index, &mut payload);
        let key = &keys[(index % PASS_THROUGH_SOURCES) as usize];
        let last = index + 1 == messages;
        if transactional
            && (last || (index + 1) % crate::stages::generator::EVENTS_PER_TRANSACTION == 0)
        {
            let record = Outgoing::keyed(&input, key.as_str(), payload.clone());
            source.commit_transaction_with(record, !last).await?;
        } else {
            source.enqueue_keyed(&input, key, &payload).await;
        }
    }
    source.settled().await;
    let failed = source.failures_total();
    if failed > 0 {
        anyhow::bail!("pass-through: {failed} input message(s) not delivered");
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while committed() < messages {
        if running.is_finished() || Instant::now() > deadline {
            let _ = stop.send(true);
            let ended = running.await.context("the pass-through loop panicked")?;
            ended?;
            anyhow::bail!(
                "pass-through: {} of {messages} inputs committed, then {}",
                committed(),
                if Instant::now() > deadline {
                    "nothing for 600 s"
                } else {
                    "the loop ended"
                }
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    running.await.context("the pass-through loop panicked")??;
    // The clients go before their broker: a client left connected would log its lost
    // connection as errors at the end of a successful run.
    drop(source);
    drop(embedded);
    // Every input was written again exactly once, or the figure is not a ceiling of this loop.
    let outputs = Metrics::count(&metrics.committed, &[PASS_THROUGH_STAGE, &output]);
    if outputs != messages {
        anyhow::bail!("pass-through: {outputs} outputs committed for {messages} inputs");
    }
    let messages_per_second = messages as f64 / seconds;
    Ok(PassThroughReport {
        messages,
        seconds,
        messages_per_second,
        pipeline_share: f64::NAN,
    })
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

/// Resets the peak resident set size of this process (`VmHWM`) to the current one (Linux ≥ 4.0:
/// `5` written to /proc/self/clear_refs); false where that cannot be done.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
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
    // A benchmark replays as fast as possible from the start.
    run.warm_up_speed_up = 0.0;
    run.validate()?;
    let ceiling_before = if args.no_pass_through {
        None
    } else {
        let report = pass_through(kafka_args, args.tweets).await?;
        if !reset_peak_rss() {
            tracing::warn!(
                "cannot reset the peak resident size: the pipeline's peak includes the pass-through run before it"
            );
        }
        Some(report)
    };
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
    // The pipeline's peak, before the pass-through's own broker and clients.
    let peak_rss = peak_rss_mib();
    let pipeline_rate = summary.tweets_per_second;
    let ceiling_after = if args.no_pass_through {
        None
    } else {
        Some(pass_through(kafka_args, summary.tweets).await?)
    };
    let pipeline_share_of_mean_ceiling = ceiling_before
        .as_ref()
        .zip(ceiling_after.as_ref())
        .map(|(b, a)| pipeline_rate / ((b.messages_per_second + a.messages_per_second) / 2.0));
    let stages = stage_figures(
        &metrics,
        summary
            .seconds_to_last_prediction
            .unwrap_or(summary.seconds),
    );
    Ok(BenchReport {
        stages,
        pass_through: ceiling_after.map(|c| c.with_pipeline_rate(pipeline_rate)),
        pass_through_before: ceiling_before.map(|c| c.with_pipeline_rate(pipeline_rate)),
        pipeline_share_of_mean_ceiling,
        fits_per_second: fits as f64 / summary.seconds,
        mean_fit_micros: if fits == 0 {
            f64::NAN
        } else {
            1e6 * metrics.fit_seconds.get_sample_sum() / fits as f64
        },
        latency_p50_ms: 1e3 * tweetoscope_stats::quantile(&latencies, 0.5),
        latency_p99_ms: 1e3 * tweetoscope_stats::quantile(&latencies, 0.99),
        peak_rss_mib: peak_rss,
        rss_growth_after_40_percent_mib: rss_by_progress_mib[4] - rss_by_progress_mib[1],
        rss_by_progress_mib,
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        run: summary,
    })
}

impl BenchReport {
    /// The per-stage lines of the text.
    fn stages_text(&self) -> String {
        let mut text = String::from(
            "per stage                 messages   messages/s   handling s per 1M messages\n",
        );
        for s in &self.stages {
            text.push_str(&format!(
                "  {:<18} {:>12} {:>12.0} {:>12.2}\n",
                s.stage, s.messages, s.messages_per_second, s.handling_seconds_per_million
            ));
        }
        text
    }

    /// The figures as text.
    pub fn to_text(&self) -> String {
        format!(
            "Tweetoscope bench on {} ({} cores): {} tweets, {} cascades in {:.1} s\n\
             end-to-end throughput   {:>10.0} tweets/s\n\
             fits                    {:>10.0} cascades/s (mean fit {:.0} µs)\n\
             window close → predict  p50 {:.1} ms, p99 {:.1} ms ({} predictions)\n\
             peak memory (RSS)       {:>10.1} MiB\n\
             memory at 20..100 %     {} MiB (growth after 40 %: {:+.1} MiB)\n\
             complete                {}\n{}{}",
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
            self.run.complete,
            self.stages_text(),
            ceilings_text(
                self.pass_through_before.as_ref(),
                self.pass_through.as_ref(),
                self.pipeline_share_of_mean_ceiling
            )
        )
    }
}

/// The lines of the text on the pass-through ceilings timed `before` and `after` the pipeline
/// and the pipeline's `share` of their mean (none without them).
fn ceilings_text(
    before: Option<&PassThroughReport>,
    after: Option<&PassThroughReport>,
    share: Option<f64>,
) -> String {
    let mut text = String::new();
    for (when, ceiling) in [("before", before), ("after", after)] {
        if let Some(p) = ceiling {
            text.push_str(&format!(
                "pass-through ceiling {when:<6} the pipeline {:>10.0} messages/s ({} messages, \
                 {:.1} s): the pipeline runs at {:.0} % of it\n",
                p.messages_per_second,
                p.messages,
                p.seconds,
                100.0 * p.pipeline_share
            ));
        }
    }
    if let (Some(share), Some(before), Some(after)) = (share, before, after) {
        text.push_str(&format!(
            "pipeline share         {:>10.0} % of the two ceilings' mean (they differ by {:+.0} %: \
             a share read against either one is that uncertain)\n",
            100.0 * share,
            100.0 * (after.messages_per_second / before.messages_per_second - 1.0)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tweetoscope_messages::{CascadeId, Tweet};

    #[test]
    fn stage_figures_sum_each_stage_over_its_topics_in_the_pipeline_order() {
        let metrics = Metrics::new();
        metrics
            .consumed
            .with_label_values(&["predictor", "cascade_properties"])
            .inc_by(300);
        metrics
            .consumed
            .with_label_values(&["predictor", "models"])
            .inc_by(100);
        metrics
            .consumed
            .with_label_values(&["collector", "tweets"])
            .inc_by(2_000);
        metrics.consumed.with_label_values(&["learner", "samples"]);
        for _ in 0..4 {
            metrics
                .processing_seconds
                .with_label_values(&["predictor"])
                .observe(0.001);
        }
        metrics
            .processing_seconds
            .with_label_values(&["collector"])
            .observe(0.01);
        let figures = stage_figures(&metrics, 2.0);
        let names: Vec<&str> = figures.iter().map(|f| f.stage.as_str()).collect();
        assert_eq!(
            names,
            ["collector", "predictor"],
            "a stage that read nothing is left out"
        );
        assert_eq!(figures[1].messages, 400);
        assert!((figures[1].messages_per_second - 200.0).abs() < 1e-9);
        assert!((figures[1].handling_seconds_per_million - 10.0).abs() < 1e-9);
        assert!((figures[0].handling_seconds_per_million - 5.0).abs() < 1e-9);
    }

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

    fn kafka_args(extra: &[&str]) -> KafkaArgs {
        let argv = ["tweetoscope", "bench", "--metrics-addr", "off"];
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(argv.iter().chain(extra))
            .expect("options");
        match cli.command {
            crate::cli::Command::Bench(c) => c.kafka,
            _ => unreachable!("a bench command"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pass_through_writes_every_message_again_once_with_and_without_transactions() {
        for extra in [&[][..], &["--no-transactions"][..]] {
            let report = pass_through(&kafka_args(extra), 12_000)
                .await
                .unwrap_or_else(|e| panic!("pass-through {extra:?}: {e:#}"));
            assert_eq!(report.messages, 12_000, "{extra:?}");
            assert!(report.seconds > 0.0, "{extra:?}");
            let rate = 12_000.0 / report.seconds;
            assert!((report.messages_per_second - rate).abs() < 1e-6 * rate);
            assert!(report.pipeline_share.is_nan(), "no pipeline rate yet");
            let report = report.with_pipeline_rate(1_000.0);
            assert!((report.pipeline_share - 1_000.0 / rate).abs() < 1e-9);
        }
    }

    #[test]
    fn a_tweet_of_the_pass_through_is_a_retweet_the_collector_reads_of_the_generators_size() {
        let mut tweets = PassThroughTweets::new();
        let mut payload = Vec::new();
        for index in 0..=301 {
            payload.clear();
            tweets.write(index, &mut payload);
        }
        let tweet: Tweet = serde_json::from_slice(&payload).expect("a tweet");
        assert_eq!(tweet.kind, TweetKind::Retweet);
        assert_eq!(tweet.tweet_id, CascadeId::from("2"));
        // A retweet of the synthetic replay `bench` runs, with an id of as many digits.
        let cascades = tweetoscope_replay::synthetic::SyntheticCascades::new(Default::default());
        let generated = tweetoscope_replay::Replay::new(Default::default(), cascades)
            .find_map(|e| match e.record {
                tweetoscope_messages::SourceRecord::Tweet(t)
                    if t.kind == TweetKind::Retweet && t.tweet_id.0.len() == 1 =>
                {
                    Some(tweetoscope_messages::to_payload(&t))
                }
                _ => None,
            })
            .expect("a retweet of a cascade with a one-digit id");
        let (ours, theirs) = (payload.len() as i64, generated.len() as i64);
        assert!(
            (ours - theirs).abs() <= 8,
            "pass-through {ours} bytes, generator {theirs} bytes: {}",
            String::from_utf8_lossy(&generated)
        );
    }

    #[test]
    fn the_peak_resident_size_is_reset_to_the_current_one() {
        if !cfg!(target_os = "linux") {
            return;
        }
        // 256 MiB touched then freed (an allocation this large is a mapping of its own, given
        // back to the system when freed) stay in the peak until it is reset. Other tests of this
        // binary run meanwhile: the margins leave them 128 MiB.
        let block = vec![1u8; 256 << 20];
        assert_eq!(std::hint::black_box(&block)[(128 << 20) + 7], 1);
        drop(block);
        let spiked = peak_rss_mib();
        assert!(reset_peak_rss(), "clear_refs refused");
        let reset = peak_rss_mib();
        assert!(
            reset <= spiked - 128.0,
            "peak {spiked} MiB before the reset, {reset} MiB after"
        );
    }

    #[test]
    fn the_text_gives_both_ceilings_and_the_share_of_their_mean() {
        let ceiling = |rate: f64| PassThroughReport {
            messages: 1_000,
            seconds: 1_000.0 / rate,
            messages_per_second: rate,
            pipeline_share: f64::NAN,
        };
        let (before, after) = (
            ceiling(400.0).with_pipeline_rate(300.0),
            ceiling(500.0).with_pipeline_rate(300.0),
        );
        let text = ceilings_text(Some(&before), Some(&after), Some(300.0 / 450.0));
        assert!(
            text.contains("before the pipeline        400 messages/s"),
            "{text}"
        );
        assert!(text.contains("runs at 75 % of it"), "{text}");
        assert!(text.contains("runs at 60 % of it"), "{text}");
        assert!(
            text.contains("67 % of the two ceilings' mean (they differ by +25 %"),
            "{text}"
        );
        assert_eq!(ceilings_text(None, None, None), "");
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
