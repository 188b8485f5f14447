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

/// Relative errors of one window: the newest predictions (at most the board's capacity), and how
/// many there were in all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowErrors {
    /// ARE of each recent prediction, oldest first.
    pub are: Vec<f64>,
    /// ARE of the Hawkes prediction alone, for the same predictions.
    pub are_hawkes: Vec<f64>,
    /// (served ARE, Hawkes-alone ARE) of the recent predictions a random forest corrected.
    pub with_model: Vec<(f64, f64)>,
    /// For each recent prediction with an 80 % interval: whether the true size fell inside it.
    pub interval_held: Vec<bool>,
    /// Predictions whose error is known, since the board started (not bounded).
    pub total: u64,
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

/// Predictions kept per window by default (see [`ErrorBoard::new`]).
pub const DEFAULT_ERROR_WINDOW: usize = 10_000;

/// The newest `capacity` values of a series.
#[derive(Debug, Clone, Default)]
struct Recent<T>(std::collections::VecDeque<T>);

impl<T: Clone> Recent<T> {
    fn push(&mut self, value: T, capacity: usize) {
        if self.0.len() == capacity {
            self.0.pop_front();
        }
        self.0.push_back(value);
    }

    fn to_vec(&self) -> Vec<T> {
        self.0.iter().cloned().collect()
    }
}

#[derive(Debug, Clone, Default)]
struct WindowSeries {
    are: Recent<f64>,
    are_hawkes: Recent<f64>,
    with_model: Recent<(f64, f64)>,
    interval_held: Recent<bool>,
    total: u64,
}

#[derive(Debug)]
struct Board {
    capacity: usize,
    windows: BTreeMap<u64, WindowSeries>,
    /// The (cascade, window) of the newest stats, to record a stat read twice only once.
    recent: std::collections::HashSet<(String, u64)>,
    /// The same keys, oldest first, so that the oldest is forgotten past [`RECENT_KEYS`].
    recent_order: std::collections::VecDeque<(String, u64)>,
}

/// How many (cascade, window) keys the board remembers to ignore a stat read again. A processing
/// loop that abandons its uncommitted work (a commit that failed or timed out) reads again the
/// stats handled since its last commit (reading stops while a commit is in progress, so that is
/// one commit interval's worth of stats and those in flight): they must not count twice. About
/// 2 MB at most.
pub const RECENT_KEYS: usize = 20_000;

/// Errors per window, shared with whoever reports them. Memory is bounded: each window keeps the
/// errors of its newest `capacity` predictions (a sliding window), so the pushed median, mean
/// and interval coverage describe the recent predictions, and the count all of them.
#[derive(Debug, Clone)]
pub struct ErrorBoard(Arc<Mutex<Board>>);

impl Default for ErrorBoard {
    fn default() -> Self {
        Self::new(DEFAULT_ERROR_WINDOW)
    }
}

impl ErrorBoard {
    /// A board keeping the newest `capacity` predictions of each window (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self(Arc::new(Mutex::new(Board {
            capacity: capacity.max(1),
            windows: BTreeMap::new(),
            recent: std::collections::HashSet::new(),
            recent_order: std::collections::VecDeque::new(),
        })))
    }

    /// Records one stat; false (and nothing recorded) if the stat of the same cascade and window
    /// is among the [`RECENT_KEYS`] newest, i.e. was read before.
    pub fn add(&self, stat: &Stat) -> bool {
        let mut board = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = (stat.cid.0.clone(), stat.t_obs);
        if !board.recent.insert(key.clone()) {
            return false;
        }
        board.recent_order.push_back(key);
        if board.recent_order.len() > RECENT_KEYS {
            if let Some(old) = board.recent_order.pop_front() {
                board.recent.remove(&old);
            }
        }
        let capacity = board.capacity;
        let w = board.windows.entry(stat.t_obs).or_default();
        w.total += 1;
        w.are.push(stat.are, capacity);
        w.are_hawkes.push(stat.are_hawkes, capacity);
        if stat.model_version > 0 {
            w.with_model.push((stat.are, stat.are_hawkes), capacity);
        }
        if let (Some(low), Some(high)) = (stat.n_low, stat.n_high) {
            w.interval_held
                .push((low..=high).contains(&(stat.n_tot as f64)), capacity);
        }
        true
    }

    /// A copy of the errors per window.
    pub fn snapshot(&self) -> BTreeMap<u64, WindowErrors> {
        let board = self.0.lock().unwrap_or_else(|e| e.into_inner());
        board
            .windows
            .iter()
            .map(|(window, s)| {
                let errors = WindowErrors {
                    are: s.are.to_vec(),
                    are_hawkes: s.are_hawkes.to_vec(),
                    with_model: s.with_model.to_vec(),
                    interval_held: s.interval_held.to_vec(),
                    total: s.total,
                };
                (*window, errors)
            })
            .collect()
    }

    /// Forgets every stat: a restarted monitor records them again from the start of the topic.
    pub fn clear(&self) {
        let mut board = self.0.lock().unwrap_or_else(|e| e.into_inner());
        board.windows.clear();
        board.recent.clear();
        board.recent_order.clear();
    }

    /// Number of stats recorded since the board started.
    pub fn count(&self) -> u64 {
        let board = self.0.lock().unwrap_or_else(|e| e.into_inner());
        board.windows.values().map(|w| w.total).sum()
    }

    /// The Prometheus text pushed to the Pushgateway.
    pub fn exposition(&self) -> String {
        let board = self.snapshot();
        let mut out = String::new();
        type Family = (&'static str, &'static str, fn(&WindowErrors) -> f64);
        let families: [Family; 6] = [
            (
                "tweetoscope_are_median",
                "Median absolute relative error of the recent predictions (the monitor's --error-window newest)",
                |w| median(&w.are),
            ),
            (
                "tweetoscope_are_mean",
                "Mean absolute relative error of the recent predictions (the monitor's --error-window newest)",
                |w| mean(&w.are),
            ),
            (
                "tweetoscope_are_last",
                "Absolute relative error of the newest prediction",
                |w| *w.are.last().unwrap_or(&f64::NAN),
            ),
            (
                "tweetoscope_are_hawkes_median",
                "Median absolute relative error of the Hawkes prediction alone, recent predictions",
                |w| median(&w.are_hawkes),
            ),
            (
                "tweetoscope_are_count",
                "Predictions whose error is known, since the monitor started",
                |w| w.total as f64,
            ),
            (
                "tweetoscope_interval_coverage",
                "Share of the recent predictions with an 80% interval whose true size fell inside it",
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

/// How long the monitor, stopping, keeps retrying its last push.
pub const FINAL_PUSH_RETRY_FOR: Duration = Duration::from_secs(30);

/// Pushes the board one last time, retried with a jittered back-off (0.5 s, doubling up to 5 s)
/// for at most [`FINAL_PUSH_RETRY_FOR`]; whether the Pushgateway accepted it.
async fn push_final(
    client: &reqwest::Client,
    url: &reqwest::Url,
    job: &str,
    board: &ErrorBoard,
    metrics: &crate::metrics::Metrics,
) -> bool {
    let deadline = tokio::time::Instant::now() + FINAL_PUSH_RETRY_FOR;
    let mut backoff = Duration::from_millis(500);
    loop {
        let pushed = push(client, url, job, board).await;
        let accepted = pushed.is_ok();
        Pushed {
            error: pushed.err().map(|e| format!("{e:#}")),
        }
        .emit(metrics);
        if accepted {
            return true;
        }
        let wait = super::jittered(backoff, rand::random::<f64>());
        if tokio::time::Instant::now() + wait > deadline {
            tracing::error!(
                "the final figures were not pushed: the Pushgateway refused them for {} s",
                FINAL_PUSH_RETRY_FOR.as_secs()
            );
            return false;
        }
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
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
                if stopping {
                    // The last figures: a failed push is not followed by a later one, so it is
                    // retried (a Pushgateway being restarted delays them, never loses them).
                    push_final(&client, &url, &job, &board, &metrics).await;
                    break;
                }
                // A failed push is retried by the next one, which carries newer figures.
                let pushed = push(&client, &url, &job, &board).await;
                Pushed {
                    error: pushed.err().map(|e| format!("{e:#}")),
                }
                .emit(&metrics);
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
                        // A stat read again after the loop abandoned its uncommitted work is
                        // not recorded twice (`add` says so by returning false).
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
            predictions = errors.total,
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
        for (i, (window, are)) in [(600, 0.125), (600, 0.375), (1200, 0.0625)]
            .into_iter()
            .enumerate()
        {
            board.add(&Stat {
                kind: StatTag::Stat,
                cid: format!("c{i}").as_str().into(),
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
        for (i, (low, high)) in [(0.0, 2.0), (3.0, 4.0)].into_iter().enumerate() {
            board.add(&Stat {
                kind: StatTag::Stat,
                cid: format!("d{i}").as_str().into(),
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

    #[test]
    fn the_board_keeps_the_newest_predictions_of_each_window_and_counts_all() {
        let board = ErrorBoard::new(3);
        for i in 0..10 {
            board.add(&Stat {
                kind: StatTag::Stat,
                cid: format!("c{i}").as_str().into(),
                t_obs: 600,
                are: f64::from(i),
                n_pred: 1.0,
                n_tot: 1,
                are_hawkes: 0.0,
                model_version: 1,
                n_low: Some(0.0),
                n_high: Some(if i % 2 == 0 { 2.0 } else { 0.5 }),
            });
        }
        let errors = &board.snapshot()[&600];
        assert_eq!(errors.are, [7.0, 8.0, 9.0]);
        assert_eq!(errors.with_model.len(), 3);
        assert_eq!(errors.interval_held, [false, true, false]);
        assert_eq!((errors.total, board.count()), (10, 10));
        let text = board.exposition();
        assert!(
            text.contains("tweetoscope_are_median{window=\"600\"} 8"),
            "{text}"
        );
        assert!(
            text.contains("tweetoscope_are_count{window=\"600\"} 10"),
            "{text}"
        );
    }
    #[test]
    fn a_stat_read_again_counts_once() {
        let board = ErrorBoard::new(3);
        let stat = |cid: &str, window: u64, are: f64| Stat {
            kind: StatTag::Stat,
            cid: cid.into(),
            t_obs: window,
            are,
            n_pred: 1.0,
            n_tot: 2,
            are_hawkes: are,
            model_version: 0,
            n_low: None,
            n_high: None,
        };
        assert!(board.add(&stat("c", 600, 0.5)));
        assert!(board.add(&stat("c", 1200, 0.25)), "another window");
        // Read again after the loop abandoned its uncommitted work.
        assert!(!board.add(&stat("c", 600, 0.5)));
        assert_eq!(board.count(), 2);
        assert_eq!(board.snapshot()[&600].are, [0.5]);
        // A rebuilt monitor reads the topic from its start into a cleared board.
        board.clear();
        assert!(board.add(&stat("c", 600, 0.5)));
        assert_eq!(board.count(), 1);
        // Only the newest RECENT_KEYS keys are remembered.
        for i in 0..RECENT_KEYS {
            assert!(board.add(&stat(&format!("n{i}"), 600, 0.5)));
        }
        assert!(!board.add(&stat("n1", 600, 0.5)), "still remembered");
        assert!(board.add(&stat("c", 600, 0.5)), "forgotten: the oldest key");
        assert_eq!(board.count(), RECENT_KEYS as u64 + 2);
    }

    #[test]
    fn a_cleared_board_is_empty_for_every_holder_of_it() {
        let board = ErrorBoard::new(3);
        let summary_view = board.clone();
        board.add(&Stat {
            kind: StatTag::Stat,
            cid: "c".into(),
            t_obs: 600,
            are: 0.5,
            n_pred: 1.0,
            n_tot: 2,
            are_hawkes: 0.5,
            model_version: 0,
            n_low: None,
            n_high: None,
        });
        assert_eq!(summary_view.count(), 1);
        board.clear();
        assert_eq!(summary_view.count(), 0);
        assert!(summary_view.snapshot().is_empty());
    }
}
