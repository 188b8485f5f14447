//! Monitor stage: reads `stats`, keeps the relative errors per window, and pushes their summary
//! to a Prometheus Pushgateway with an async HTTP PUT.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::Message;
use tweetoscope_messages::Stat;
use tweetoscope_stats::{mean, median};

use super::{Input, StageEnv};
use crate::config::MonitorArgs;
use crate::events::{InternalEvent as _, Pushed};
use crate::kafka::{handler, Handled};

const STAGE: &str = "monitor";

/// Relative errors of one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowErrors {
    /// ARE of each prediction, in arrival order.
    pub are: Vec<f64>,
    /// ARE of the Hawkes prediction alone.
    pub are_hawkes: Vec<f64>,
    /// (served ARE, Hawkes-alone ARE) of the predictions a random forest corrected.
    pub with_model: Vec<(f64, f64)>,
    /// For each prediction with an 80 % interval: whether the true size fell inside it.
    pub interval_held: Vec<bool>,
}

impl WindowErrors {
    /// Share of the predictions with an interval whose truth it held (NaN without any).
    pub fn interval_coverage(&self) -> f64 {
        if self.interval_held.is_empty() {
            return f64::NAN;
        }
        self.interval_held.iter().filter(|&&h| h).count() as f64 / self.interval_held.len() as f64
    }
}

/// Errors per window, shared with whoever reports them.
#[derive(Debug, Clone, Default)]
pub struct ErrorBoard(Arc<Mutex<BTreeMap<u64, WindowErrors>>>);

impl ErrorBoard {
    /// Records one stat.
    pub fn add(&self, stat: &Stat) {
        let mut board = self.0.lock().expect("board lock");
        let w = board.entry(stat.t_obs).or_default();
        w.are.push(stat.are);
        w.are_hawkes.push(stat.are_hawkes);
        if stat.model_version > 0 {
            w.with_model.push((stat.are, stat.are_hawkes));
        }
        if let (Some(low), Some(high)) = (stat.n_low, stat.n_high) {
            w.interval_held
                .push((low..=high).contains(&(stat.n_tot as f64)));
        }
    }

    /// A copy of the errors per window.
    pub fn snapshot(&self) -> BTreeMap<u64, WindowErrors> {
        self.0.lock().expect("board lock").clone()
    }

    /// Number of stats recorded.
    pub fn count(&self) -> usize {
        self.0
            .lock()
            .expect("board lock")
            .values()
            .map(|w| w.are.len())
            .sum()
    }

    /// The Prometheus text pushed to the Pushgateway.
    pub fn exposition(&self) -> String {
        let board = self.snapshot();
        let mut out = String::new();
        type Family = (&'static str, &'static str, fn(&WindowErrors) -> f64);
        let families: [Family; 6] = [
            (
                "tweetoscope_are_median",
                "Median absolute relative error of the predictions",
                |w| median(&w.are),
            ),
            (
                "tweetoscope_are_mean",
                "Mean absolute relative error of the predictions",
                |w| mean(&w.are),
            ),
            (
                "tweetoscope_are_last",
                "Absolute relative error of the newest prediction",
                |w| *w.are.last().unwrap_or(&f64::NAN),
            ),
            (
                "tweetoscope_are_hawkes_median",
                "Median absolute relative error of the Hawkes prediction alone",
                |w| median(&w.are_hawkes),
            ),
            (
                "tweetoscope_are_count",
                "Predictions whose error is known",
                |w| w.are.len() as f64,
            ),
            (
                "tweetoscope_interval_coverage",
                "Share of the predictions with an 80% interval whose true size fell inside it",
                WindowErrors::interval_coverage,
            ),
        ];
        for (name, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (window, errors) in &board {
                let _ = writeln!(out, "{name}{{window=\"{window}\"}} {}", value(errors));
            }
        }
        out
    }
}

/// Pushes the board to `{url}/metrics/job/{job}` (PUT replaces the group).
pub async fn push(
    client: &reqwest::Client,
    url: &reqwest::Url,
    job: &str,
    board: &ErrorBoard,
) -> Result<(), String> {
    let target = url
        .join(&format!("metrics/job/{job}"))
        .map_err(|e| e.to_string())?;
    let request = client
        .put(target)
        .header("Content-Type", "text/plain; version=0.0.4")
        .body(board.exposition());
    super::send_http(request, "Pushgateway").await
}

/// Runs the monitor until shutdown, recording into `board`.
pub async fn run(env: StageEnv, args: MonitorArgs, board: ErrorBoard) -> anyhow::Result<()> {
    // A group of its own each start: the board is rebuilt from every stat still in the topic.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let group = format!(
        "{}-monitor-{}-{nanos}",
        env.kafka.group_prefix,
        std::process::id()
    );
    let (helper_env, stop_helpers) = env.for_helpers();
    let pusher = args.pushgateway_url.clone().map(|url| {
        let board = board.clone();
        let metrics = env.metrics.clone();
        let mut shutdown = helper_env.shutdown.clone();
        let job = args.push_job.clone();
        let every = Duration::from_secs_f64(args.push_interval);
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut tick = tokio::time::interval(every);
            loop {
                let stopping = tokio::select! {
                    _ = tick.tick() => false,
                    _ = shutdown.changed() => true,
                };
                let pushed = push(&client, &url, &job, &board).await;
                Pushed {
                    error: pushed.err().map(|e| format!("{e:#}")),
                }
                .emit(&metrics);
                if stopping {
                    break;
                }
            }
        })
    });
    tracing::info!(pushgateway = ?args.pushgateway_url.as_ref().map(|u| u.as_str()), "monitor started");
    let recorder = board.clone();
    let input = Input {
        group,
        ..env.input(STAGE, &env.topics.stats_topic)
    };
    let result = env
        .consume(input, |_| {
            Ok(handler(move |message| {
                match Stat::parse(message.payload().unwrap_or_default()) {
                    Ok(stat) => {
                        recorder.add(&stat);
                        Handled::Now(Vec::new())
                    }
                    Err(m) => Handled::Malformed(m),
                }
            }))
        })
        .await;
    stop_helpers.stop();
    if let Some(p) = pusher {
        let _ = p.await;
    }
    for (window, errors) in board.snapshot() {
        tracing::info!(
            window,
            predictions = errors.are.len(),
            median_are = median(&errors.are),
            "prediction errors"
        );
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use tweetoscope_messages::StatTag;

    #[test]
    fn medians_and_exposition() {
        let board = ErrorBoard::default();
        for (window, are) in [(600, 0.125), (600, 0.375), (1200, 0.0625)] {
            board.add(&Stat {
                kind: StatTag::Stat,
                cid: "c".into(),
                t_obs: window,
                are,
                n_pred: 1.0,
                n_tot: 1,
                are_hawkes: 2.0 * are,
                model_version: 0,
                n_low: None,
                n_high: None,
            });
        }
        // Intervals of 600 s: [0, 2] holds the truth 1, [3, 4] does not; 1200 s has none.
        for (low, high) in [(0.0, 2.0), (3.0, 4.0)] {
            board.add(&Stat {
                kind: StatTag::Stat,
                cid: "d".into(),
                t_obs: 600,
                are: 0.5,
                n_pred: 1.5,
                n_tot: 1,
                are_hawkes: 0.5,
                model_version: 1,
                n_low: Some(low),
                n_high: Some(high),
            });
        }
        let text = board.exposition();
        assert!(
            text.contains("tweetoscope_are_median{window=\"600\"} 0.4375"),
            "{text}"
        );
        assert!(
            text.contains("tweetoscope_interval_coverage{window=\"600\"} 0.5"),
            "{text}"
        );
        assert!(
            text.contains("tweetoscope_interval_coverage{window=\"1200\"} NaN"),
            "{text}"
        );
        assert!(
            text.contains("tweetoscope_are_count{window=\"1200\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tweetoscope_are_hawkes_median{window=\"600\"} 0.5"),
            "{text}"
        );
        assert!(text.contains("# TYPE tweetoscope_are_last gauge"));
        assert_eq!(board.count(), 5);
    }
}
