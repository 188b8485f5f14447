//! `tweetoscope run`: every stage as a task of this process, on the embedded broker unless
//! `--brokers` is given; shows progress and ends with a summary once every cascade that reached a
//! window has its prediction error, or when nothing has moved for `--stall-timeout` seconds.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::{KafkaArgs, RunArgs};
use crate::kafka::processing::REJOIN_DEADLINE;
use crate::kafka::{EmbeddedBroker, KafkaSettings};
use crate::metrics::Metrics;
use crate::stages::dashboard::TopCascades;
use crate::stages::generator::GeneratorReport;
use crate::stages::monitor::ErrorBoard;
use crate::stages::{self, Stage, StageEnv};
use crate::telemetry::{LogQueue, STAGE_SPAN};
use tweetoscope_stats::{mean, median};

/// Errors of one window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowSummary {
    /// Predictions whose error is known.
    pub predictions: usize,
    /// Median ARE of the served predictions.
    pub median_are: f64,
    /// Mean ARE of the served predictions.
    pub mean_are: f64,
    /// Median ARE of the Hawkes prediction alone.
    pub median_are_hawkes: f64,
    /// Mean ARE of the Hawkes prediction alone.
    pub mean_are_hawkes: f64,
    /// Predictions a random forest corrected (made once a model existed).
    pub forest_predictions: usize,
    /// Median ARE of those predictions.
    pub forest_median_are: f64,
    /// Median ARE of the Hawkes prediction alone on the same cascades.
    pub forest_median_are_hawkes: f64,
    /// Predictions with an 80 % interval.
    pub interval_predictions: usize,
    /// Share of those whose interval held the true size.
    pub interval_coverage: f64,
}

/// One of the most popular predictions.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TopEntry {
    /// Cascade id.
    pub cid: String,
    /// Window of the prediction.
    pub window: u64,
    /// Predicted final size.
    pub predicted: u64,
    /// Tweets observed when predicting.
    pub observed: u64,
    /// Lower bound of the 80 % prediction interval (none without a forest).
    pub low: Option<f64>,
    /// Upper bound of the 80 % prediction interval.
    pub high: Option<f64>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunSummary {
    /// Bootstrap servers used (the embedded broker's when no --brokers).
    pub brokers: String,
    /// Whether the broker was the embedded one.
    pub embedded: bool,
    /// Cascades started by the collector.
    pub cascades: u64,
    /// Tweets replayed.
    pub tweets: u64,
    /// Wall time from start to summary.
    pub seconds: f64,
    /// Tweets per second until every expected prediction had its error (after that, the run
    /// waits for the learner's trainings on the last samples and the dashboard's last alerts).
    pub tweets_per_second: f64,
    /// Seconds from start until every expected prediction had its error (none: never).
    pub seconds_to_last_prediction: Option<f64>,
    /// (cascade, window) pairs that reached their window with enough tweets (sizes emitted).
    pub expected_predictions: u64,
    /// Whether every expected prediction got its error before the end.
    pub complete: bool,
    /// Errors per window.
    pub windows: BTreeMap<u64, WindowSummary>,
    /// The most popular predictions.
    pub top: Vec<TopEntry>,
    /// Malformed messages dead-lettered, all stages.
    pub dead_letters: u64,
    /// Fits that failed.
    pub fit_failures: u64,
    /// Models trained.
    pub models_trained: u64,
}

fn sum_counter(counter: &prometheus::IntCounterVec) -> u64 {
    use prometheus::core::Collector;
    counter
        .collect()
        .iter()
        .flat_map(|family| {
            family
                .get_metric()
                .iter()
                .map(|m| m.get_counter().get_value() as u64)
        })
        .sum()
}

/// Longest paced warm-up of a `run` (see `--warm-up-speed-up`): a replay too small to train a
/// model for every window is not paced to its end.
const WARM_UP_LIMIT: Duration = Duration::from_secs(5);

/// Runs the whole pipeline; `log_queue` (if any) is published on the logs topic.
pub async fn run_pipeline(
    kafka_args: &KafkaArgs,
    args: &RunArgs,
    metrics: Arc<Metrics>,
    log_queue: Option<LogQueue>,
) -> anyhow::Result<RunSummary> {
    let started = Instant::now();
    let topics = kafka_args.topics.clone();
    let (embedded, brokers) = match &kafka_args.brokers {
        Some(b) => (None, b.clone()),
        None => {
            let broker =
                EmbeddedBroker::start(&topics.all(), &topics.compacted(), kafka_args.partitions)?;
            let bootstrap = broker.bootstrap().to_owned();
            (Some(broker), bootstrap)
        }
    };
    let mut kafka = KafkaSettings::new(kafka_args, brokers.clone())?;
    if embedded.is_some() {
        kafka.tune_for_embedded_broker();
    }
    tracing::info!(brokers = %brokers, embedded = embedded.is_some(), "pipeline starting");
    let (stop, shutdown) = watch::channel(false);
    // The embedded broker was started with every topic.
    let (env, shipper) = StageEnv::connect(
        kafka,
        kafka_args,
        embedded.is_none(),
        metrics.clone(),
        shutdown,
        log_queue,
    )
    .await?;
    let board = ErrorBoard::new(args.monitor.error_window as usize);
    let top = TopCascades::new(args.dashboard.top);
    // On a broker of their own the stages are supervised as separate processes are: a broker
    // restart fails a stage, which starts again from its committed state. The embedded broker
    // cannot go away, so there a failed stage is a bug and ends the run.
    let supervised = embedded.is_none();
    let mut stages: Vec<(&str, JoinHandle<anyhow::Result<()>>)> =
        Stage::pipeline(args, &board, &top)
            .into_iter()
            .map(|stage| {
                let env = env.clone();
                let name = stage.name();
                let task = async move {
                    if supervised {
                        stage.supervise(env).await
                    } else {
                        stage.run(env).await
                    }
                };
                (name, tokio::spawn(task))
            })
            .collect();
    let span = tracing::info_span!(STAGE_SPAN, name = "generator");
    // The embedded broker drops the oldest messages past 100,000 per partition.
    let backpressure = embedded
        .is_some()
        .then_some(stages::generator::Backpressure { max_ahead: 50_000 });
    // Paced until the predictor has a model for every window (see RunArgs::warm_up_speed_up).
    // Without a warm-up (`--speed-up` paces the replay, or it is turned off), it starts over.
    let warms_up = args.warm_up_speed_up > 0.0 && args.generator.speed_up == 0.0;
    let (warm_up_over, warm_up_until) = tokio::sync::watch::channel(!warms_up);
    let warm_up = warms_up.then(|| stages::generator::WarmUp {
        speed_up: args.warm_up_speed_up,
        until: warm_up_until,
    });
    let generator_task = {
        let (env, generator_args) = (env.clone(), args.generator.clone());
        async move {
            let replay = || {
                stages::generator::run_paced(
                    env.clone(),
                    generator_args.clone(),
                    backpressure,
                    warm_up.clone(),
                )
            };
            if supervised {
                // A restarted generator resumes after what its transactions committed.
                stages::supervise("generator", env.shutdown.clone(), replay).await
            } else {
                replay().await
            }
        }
    };
    let mut generator: Option<JoinHandle<anyhow::Result<GeneratorReport>>> =
        Some(tokio::spawn(generator_task.instrument(span)));
    let mut report = None;
    let interactive = std::io::stderr().is_terminal();
    let mut last_signature = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut last_change = Instant::now();
    let mut last_line = Instant::now();
    let mut complete = false;
    let mut last_prediction = None;
    let sources = args.generator.sources;
    // On a broker of its own, a stage whose consumer lost its group after an outage waits up to
    // REJOIN_DEADLINE before its supervisor rebuilds it: that wait is not a stall.
    let stall_timeout = if supervised {
        args.stall_timeout + REJOIN_DEADLINE.as_secs_f64()
    } else {
        args.stall_timeout
    };
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if !*warm_up_over.borrow() {
            let models = args.cascade.windows.iter().all(|w| {
                metrics
                    .model_version
                    .with_label_values(&["predictor", &w.to_string()])
                    .get()
                    > 0
            });
            if models || started.elapsed() > WARM_UP_LIMIT {
                // send_replace: a generator that has stopped listening (or restarts later) must
                // still see the warm-up over, and so must this loop; `send` would leave the value
                // as it was when no receiver is left.
                warm_up_over.send_replace(true);
                tracing::info!(
                    seconds = started.elapsed().as_secs_f64(),
                    models,
                    "warm-up over (the predictor has a model for every window, or {} s passed): \
                     replaying as fast as possible",
                    WARM_UP_LIMIT.as_secs()
                );
            }
        }
        if let Some(handle) = generator.as_mut() {
            if handle.is_finished() {
                report = Some(handle.await??);
                generator = None;
            }
        }
        if let Some((name, _)) = stages.iter().find(|(_, h)| h.is_finished()) {
            let name = *name;
            let index = stages
                .iter()
                .position(|(n, _)| *n == name)
                .expect("present");
            let (_, handle) = stages.swap_remove(index);
            let _ = stop.send(true);
            return match handle.await? {
                Ok(()) => Err(anyhow::anyhow!("the {name} stage stopped unexpectedly")),
                Err(e) => Err(e.context(format!("the {name} stage failed"))),
            };
        }
        let tweets = sum_counter(&metrics.generator_tweets);
        let cascades = Metrics::count(&metrics.collector_tweets, &["started"]);
        // Committed outputs, not produced ones: after a stage restart (`--brokers`), the outputs
        // of its aborted transaction are produced again, and counted once.
        let expected = Metrics::count(&metrics.committed, &["collector", &topics.properties_topic]);
        let fitted = Metrics::count(&metrics.committed, &["estimator", &topics.properties_topic]);
        let predicted = board.count();
        let ended = metrics.sources_ended.get();
        // What the learner and the dashboard have finished with: the samples and alerts whose
        // offsets they committed (after training on them; after Alertmanager accepted, or the
        // alert was given up, dead-lettered or not popular), not only read.
        let samples_out = Metrics::count(&metrics.committed, &["predictor", &topics.samples_topic]);
        let samples_in = Metrics::count(
            &metrics.inputs_committed,
            &["learner", &topics.samples_topic],
        );
        let alerts_out = Metrics::count(&metrics.committed, &["predictor", &topics.alerts_topic]);
        let alerts_in = Metrics::count(
            &metrics.inputs_committed,
            &["dashboard", &topics.alerts_topic],
        );
        let signature = (
            sum_counter(&metrics.consumed),
            fitted,
            predicted,
            samples_in,
            alerts_in,
        );
        if signature != last_signature {
            last_signature = signature;
            last_change = Instant::now();
        }
        let line = format!(
            "tweets {tweets} | cascades seen {cascades}, finished windows {expected} | fitted {fitted} | predicted {predicted}"
        );
        if interactive {
            eprint!("\r{line}   ");
        } else if last_line.elapsed() >= Duration::from_secs(5) {
            eprintln!("{line}");
            last_line = Instant::now();
        }
        let predictions_done = report.is_some() && ended >= sources && predicted >= expected;
        if predictions_done && last_prediction.is_none() {
            last_prediction = Some(started.elapsed().as_secs_f64());
        }
        // Every stat has its sample, in the predictor's same transaction: `predicted` (the stats
        // the monitor read) bounds the samples from below even when the predictor's own tally of
        // its last commit is not in yet (it is counted just after the commit returns).
        if predictions_done
            && samples_in >= samples_out.max(predicted)
            && alerts_in >= alerts_out.max(predicted)
        {
            complete = true;
            break;
        }
        if report.is_some() && last_change.elapsed().as_secs_f64() > stall_timeout {
            tracing::warn!(
                expected,
                predicted,
                samples_out,
                samples_in,
                alerts_out,
                alerts_in,
                "no progress for {} s: stopping with predictions missing",
                stall_timeout
            );
            break;
        }
    }
    if interactive {
        eprintln!();
    }
    let _ = stop.send(true);
    for (name, handle) in stages {
        match tokio::time::timeout(Duration::from_secs(60), handle).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::error!(stage = name, error = %format!("{e:#}"), "stage failed while stopping")
            }
            Ok(Err(e)) => tracing::error!(stage = name, error = %e, "stage panicked"),
            Err(_) => tracing::error!(stage = name, "stage did not stop within 60 s"),
        }
    }
    if let Some(shipper) = shipper {
        let _ = shipper.await;
    }
    drop(embedded);
    let report = report.unwrap_or_default();
    let seconds = started.elapsed().as_secs_f64();
    let windows = board
        .snapshot()
        .into_iter()
        .map(|(w, e)| {
            (
                w,
                WindowSummary {
                    predictions: e.total as usize,
                    median_are: median(&e.are),
                    mean_are: mean(&e.are),
                    median_are_hawkes: median(&e.are_hawkes),
                    mean_are_hawkes: mean(&e.are_hawkes),
                    forest_predictions: e.with_model.len(),
                    forest_median_are: median(
                        &e.with_model.iter().map(|p| p.0).collect::<Vec<_>>(),
                    ),
                    forest_median_are_hawkes: median(
                        &e.with_model.iter().map(|p| p.1).collect::<Vec<_>>(),
                    ),
                    interval_predictions: e.interval_held.len(),
                    interval_coverage: e.interval_coverage(),
                },
            )
        })
        .collect();
    Ok(RunSummary {
        brokers,
        embedded: kafka_args.brokers.is_none(),
        cascades: Metrics::count(&metrics.collector_tweets, &["started"]),
        // After a restart (`--brokers`), the replay's part its first attempts committed counts.
        tweets: report.tweets + report.resumed,
        seconds,
        tweets_per_second: (report.tweets + report.resumed) as f64
            / last_prediction.unwrap_or(seconds),
        seconds_to_last_prediction: last_prediction,
        expected_predictions: Metrics::count(
            &metrics.committed,
            &["collector", &topics.properties_topic],
        ),
        complete,
        windows,
        top: top
            .snapshot()
            .into_iter()
            .map(|a| TopEntry {
                cid: a.cid.0,
                window: a.t_obs,
                predicted: a.n_tot,
                observed: a.n_obs,
                low: a.n_low,
                high: a.n_high,
            })
            .collect(),
        dead_letters: sum_counter(&metrics.malformed),
        fit_failures: sum_counter(&metrics.fit_failures),
        models_trained: sum_counter(&metrics.trainings),
    })
}

impl RunSummary {
    /// The summary as text for people.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Tweetoscope run on {} ({}): {} cascades, {} tweets in {:.1} s ({:.0} tweets/s{})",
            if self.embedded {
                "the embedded broker"
            } else {
                "Kafka"
            },
            self.brokers,
            self.cascades,
            self.tweets,
            self.seconds,
            self.tweets_per_second,
            self.seconds_to_last_prediction
                .filter(|&s| self.seconds - s >= 0.5)
                .map_or(String::new(), |s| format!(
                    " until the last prediction, at {s:.1} s; then the learner's last trainings"
                )),
        );
        let got: usize = self.windows.values().map(|w| w.predictions).sum();
        let _ = writeln!(
            out,
            "predictions with known error: {got} of {} expected{}",
            self.expected_predictions,
            if self.complete {
                ""
            } else {
                " (INCOMPLETE: see the warnings above)"
            }
        );
        let _ = writeln!(
            out,
            "\n{:>8} {:>12} {:>11} {:>9} {:>19} {:>17}",
            "window",
            "predictions",
            "median ARE",
            "mean ARE",
            "median ARE Hawkes",
            "mean ARE Hawkes"
        );
        for (w, s) in &self.windows {
            let _ = writeln!(
                out,
                "{:>7}s {:>12} {:>11.3} {:>9.3} {:>19.3} {:>17.3}",
                w, s.predictions, s.median_are, s.mean_are, s.median_are_hawkes, s.mean_are_hawkes
            );
        }
        if self.windows.values().any(|s| s.forest_predictions > 0) {
            let _ = writeln!(
                out,
                "\nPredictions made once a forest existed (same cascades, with and without it):\n{:>8} {:>12} {:>17} {:>19} {:>22}",
                "window", "predictions", "median ARE (RF)", "median ARE Hawkes", "80% interval coverage"
            );
            for (w, s) in &self.windows {
                let coverage = if s.interval_predictions == 0 {
                    "-".to_owned()
                } else {
                    format!(
                        "{:.0}% of {}",
                        100.0 * s.interval_coverage,
                        s.interval_predictions
                    )
                };
                let _ = writeln!(
                    out,
                    "{:>7}s {:>12} {:>17.3} {:>19.3} {coverage:>22}",
                    w, s.forest_predictions, s.forest_median_are, s.forest_median_are_hawkes
                );
            }
        } else {
            let _ = writeln!(
                out,
                "\nNo prediction was made with a forest yet (models come from the first cascades' errors; try --cascades 2000 or --speed-up)."
            );
        }
        if !self.top.is_empty() {
            let _ = writeln!(
                out,
                "\nTop predicted cascades:\n{:>10} {:>8} {:>10} {:>17} {:>9}",
                "cascade", "window", "predicted", "80% interval", "observed"
            );
            for t in &self.top {
                let interval = match (t.low, t.high) {
                    (Some(lo), Some(hi)) => format!("{lo:.0}–{hi:.0}"),
                    _ => "-".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "{:>10} {:>7}s {:>10} {interval:>17} {:>9}",
                    t.cid, t.window, t.predicted, t.observed
                );
            }
        }
        let _ = writeln!(
            out,
            "\ndead letters: {}, fit failures: {}, models trained: {}",
            self.dead_letters, self.fit_failures, self.models_trained
        );
        out
    }
}
