//! Prometheus metrics of every stage and the HTTP endpoint that serves them.
//!
//! One [`Metrics`] per process; stages label their series with `stage`, so `tweetoscope run` (all
//! stages in one process) and one-stage-per-process deployments export the same names.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::liveness::{Liveness, STALL_LIMIT, STALL_LOGGED_AFTER};

/// Every metric the stages export.
pub struct Metrics {
    registry: Registry,
    /// Messages read, by stage and topic.
    pub consumed: IntCounterVec,
    /// Messages written, by stage and topic.
    pub produced: IntCounterVec,
    /// Malformed messages sent to the dead-letter topic, by stage and topic.
    pub malformed: IntCounterVec,
    /// Messages whose delivery to Kafka failed, by stage and topic.
    pub produce_failures: IntCounterVec,
    /// Time from receiving a message to having its outputs delivered, by stage.
    pub processing_seconds: HistogramVec,
    /// Messages behind the end of each assigned partition, by stage, topic and partition.
    pub consumer_lag: IntGaugeVec,
    /// Tweets replayed by the generator, by source.
    pub generator_tweets: IntCounterVec,
    /// What the collector did with each tweet, by outcome.
    pub collector_tweets: IntCounterVec,
    /// Cascades held in memory by the collector.
    pub open_cascades: IntGauge,
    /// Sources whose end-of-stream marker the collector has handled.
    pub sources_ended: IntCounter,
    /// Duration of one Hawkes fit.
    pub fit_seconds: Histogram,
    /// Fits that failed, by reason.
    pub fit_failures: IntCounterVec,
    /// Relative errors of the predictions, by window.
    pub are: HistogramVec,
    /// Predictions (alerts) made, by window.
    pub predictions: IntCounterVec,
    /// Join entries the predictor dropped because its pending table was full.
    pub join_evictions: IntCounter,
    /// Pending half-joined (cascade, window) entries held by the predictor.
    pub join_pending: IntGauge,
    /// Version of the newest random forest, by window (learner: trained; predictor: in use).
    pub model_version: IntGaugeVec,
    /// Samples in the learner's training window, by window.
    pub training_samples: IntGaugeVec,
    /// Training runs of the learner, by window.
    pub trainings: IntCounterVec,
    /// Alerts posted to Alertmanager.
    pub alerts_sent: IntCounter,
    /// Alerts that Alertmanager did not accept.
    pub alert_failures: IntCounter,
    /// Pushes to the Pushgateway.
    pub pushes: IntCounter,
    /// Pushes to the Pushgateway that failed.
    pub push_failures: IntCounter,
    /// Log records shown by the logger, by level.
    pub logs_shown: IntCounterVec,
    /// Log records dropped because the shipping queue was full.
    pub logs_dropped: IntCounter,
    /// Always 1, labelled with the version.
    pub build_info: IntGaugeVec,
    /// Wall time from a cascade's window closing (series emitted) to its prediction.
    pub prediction_latency: Histogram,
    /// Seconds since each running processing loop last made progress, by stage (the longest if
    /// a stage has several; set from [`Metrics::liveness`] at each rendering).
    pub loop_stalled_seconds: IntGaugeVec,
    /// Progress of the processing loops (the liveness probe).
    pub liveness: Liveness,
    /// The same latencies, kept exactly (up to a bound) for benchmark reports.
    latencies: std::sync::Mutex<Vec<f64>>,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Arc<Self> {
        let r = Registry::new();
        let latency_buckets = prometheus::exponential_buckets(0.000_1, 2.5, 14).expect("buckets");
        let processing_seconds = HistogramVec::new(
            HistogramOpts::new(
                "tweetoscope_processing_seconds",
                "Time from receiving a message to having its outputs delivered",
            )
            .buckets(latency_buckets.clone()),
            &["stage"],
        )
        .expect("valid metric");
        r.register(Box::new(processing_seconds.clone()))
            .expect("unique metric");
        let fit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "tweetoscope_estimator_fit_seconds",
                "Duration of one Hawkes fit",
            )
            .buckets(prometheus::exponential_buckets(0.000_01, 2.5, 14).expect("buckets")),
        )
        .expect("valid metric");
        r.register(Box::new(fit_seconds.clone()))
            .expect("unique metric");
        let are = HistogramVec::new(
            HistogramOpts::new(
                "tweetoscope_predictor_are",
                "Absolute relative error of the final-size predictions",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0,
            ]),
            &["window"],
        )
        .expect("valid metric");
        r.register(Box::new(are.clone())).expect("unique metric");
        let prediction_latency = Histogram::with_opts(
            HistogramOpts::new(
                "tweetoscope_prediction_latency_seconds",
                "Wall time from a cascade's window closing to its prediction",
            )
            .buckets(latency_buckets.clone()),
        )
        .expect("valid metric");
        r.register(Box::new(prediction_latency.clone()))
            .expect("unique metric");
        let m = Metrics {
            loop_stalled_seconds: gauge_vec(
                &r,
                "tweetoscope_processing_loop_stalled_seconds",
                "Seconds since the processing loop last made progress",
                &["stage"],
            ),
            liveness: Liveness::default(),
            prediction_latency,
            latencies: std::sync::Mutex::new(Vec::new()),
            consumed: counter_vec(
                &r,
                "tweetoscope_messages_consumed_total",
                "Messages read",
                &["stage", "topic"],
            ),
            produced: counter_vec(
                &r,
                "tweetoscope_messages_produced_total",
                "Messages written",
                &["stage", "topic"],
            ),
            malformed: counter_vec(
                &r,
                "tweetoscope_malformed_messages_total",
                "Malformed messages sent to the dead-letter topic",
                &["stage", "topic"],
            ),
            produce_failures: counter_vec(
                &r,
                "tweetoscope_produce_failures_total",
                "Messages whose delivery to Kafka failed",
                &["stage", "topic"],
            ),
            processing_seconds,
            consumer_lag: gauge_vec(
                &r,
                "tweetoscope_consumer_lag_messages",
                "Messages behind the end of each assigned partition",
                &["stage", "topic", "partition"],
            ),
            generator_tweets: counter_vec(
                &r,
                "tweetoscope_generator_tweets_total",
                "Tweets replayed by the generator",
                &["source"],
            ),
            collector_tweets: counter_vec(
                &r,
                "tweetoscope_collector_tweets_total",
                "Tweets handled by the collector, by outcome",
                &["outcome"],
            ),
            open_cascades: gauge(
                &r,
                "tweetoscope_collector_open_cascades",
                "Cascades held in memory by the collector",
            ),
            sources_ended: counter(
                &r,
                "tweetoscope_collector_sources_ended_total",
                "Sources whose end-of-stream marker the collector handled",
            ),
            fit_seconds,
            fit_failures: counter_vec(
                &r,
                "tweetoscope_estimator_fit_failures_total",
                "Hawkes fits that failed",
                &["reason"],
            ),
            are,
            predictions: counter_vec(
                &r,
                "tweetoscope_predictor_predictions_total",
                "Predictions made",
                &["window"],
            ),
            join_evictions: counter(
                &r,
                "tweetoscope_predictor_join_evictions_total",
                "Half-joined entries dropped because the pending table was full",
            ),
            join_pending: gauge(
                &r,
                "tweetoscope_predictor_join_pending",
                "Half-joined (cascade, window) entries waiting for their other half",
            ),
            model_version: gauge_vec(
                &r,
                "tweetoscope_model_version",
                "Version of the newest random forest",
                &["stage", "window"],
            ),
            training_samples: gauge_vec(
                &r,
                "tweetoscope_learner_training_samples",
                "Samples in the learner's training window",
                &["window"],
            ),
            trainings: counter_vec(
                &r,
                "tweetoscope_learner_trainings_total",
                "Training runs",
                &["window"],
            ),
            alerts_sent: counter(
                &r,
                "tweetoscope_dashboard_alerts_sent_total",
                "Alerts posted to Alertmanager",
            ),
            alert_failures: counter(
                &r,
                "tweetoscope_dashboard_alert_failures_total",
                "Alerts that Alertmanager did not accept",
            ),
            pushes: counter(
                &r,
                "tweetoscope_monitor_pushes_total",
                "Pushes to the Pushgateway",
            ),
            push_failures: counter(
                &r,
                "tweetoscope_monitor_push_failures_total",
                "Failed pushes to the Pushgateway",
            ),
            logs_shown: counter_vec(
                &r,
                "tweetoscope_logger_records_total",
                "Log records shown",
                &["level"],
            ),
            logs_dropped: counter(
                &r,
                "tweetoscope_log_records_dropped_total",
                "Log records dropped because the shipping queue was full",
            ),
            build_info: gauge_vec(&r, "tweetoscope_build_info", "Always 1", &["version"]),
            registry: r,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Arc::new(m)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.loop_stalled_seconds.reset();
        for stall in self.liveness.stalls() {
            let gauge = self.loop_stalled_seconds.with_label_values(&[stall.stage]);
            gauge.set(gauge.get().max(stall.for_.as_secs() as i64));
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("text format is UTF-8")
    }

    /// Keeps one latency for [`Metrics::latencies`] (the first million).
    pub fn record_latency(&self, seconds: f64) {
        let mut all = self.latencies.lock().expect("latency lock");
        if all.len() < 1_000_000 {
            all.push(seconds);
        }
    }

    /// The recorded window-close-to-prediction latencies, in seconds.
    pub fn latencies(&self) -> Vec<f64> {
        self.latencies.lock().expect("latency lock").clone()
    }

    /// Current value of a counter (used for progress reports).
    pub fn count(counter: &IntCounterVec, labels: &[&str]) -> u64 {
        counter.with_label_values(labels).get()
    }
}

/// Set once the stage has started, for the readiness probe.
#[derive(Debug, Default, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the process ready.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Watches the processing loops of the process from a thread of its own (it works even when every
/// runtime worker is blocked): every 5 s, it logs the stalls longer than 30 s, every 30 s while
/// they last, with what the loop was doing.
pub fn spawn_stall_watchdog(metrics: Arc<Metrics>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("stall-watchdog".into())
        .spawn(move || {
            let mut logged: std::collections::HashMap<&'static str, std::time::Instant> =
                std::collections::HashMap::new();
            loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                for stall in metrics.liveness.stalls() {
                    let due = logged
                        .get(stall.stage)
                        .is_none_or(|at| at.elapsed() >= STALL_LOGGED_AFTER);
                    if stall.for_ >= STALL_LOGGED_AFTER && due {
                        logged.insert(stall.stage, std::time::Instant::now());
                        if stall.for_ > STALL_LIMIT {
                            tracing::error!(stage = stall.stage, stalled_s = stall.for_.as_secs(), doing = stall.doing, "processing loop stuck: /healthz now fails so that the process is restarted");
                        } else {
                            tracing::warn!(stage = stall.stage, stalled_s = stall.for_.as_secs(), doing = stall.doing, "processing loop making no progress");
                        }
                    }
                }
            }
        })
        .map(drop)
}

/// Serves `GET /metrics`, `GET /healthz` (alive: no processing loop stalled for longer than
/// [`STALL_LIMIT`]) and `GET /readyz` (started) on `addr`.
/// Returns the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Readiness,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            let readiness = readiness.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut len = 0;
                // Read until the end of the request head (or the buffer is full).
                while len < buf.len() {
                    match tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        socket.read(&mut buf[len..]),
                    )
                    .await
                    {
                        Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                        Ok(Ok(n)) => len += n,
                    }
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf[..len]);
                let path = head.split_whitespace().nth(1).unwrap_or("");
                let (status, content_type, body) = match path {
                    "/metrics" => (
                        "200 OK",
                        "text/plain; version=0.0.4; charset=utf-8",
                        metrics.render(),
                    ),
                    "/healthz" => {
                        let stuck = metrics.liveness.stuck(STALL_LIMIT);
                        if stuck.is_empty() {
                            ("200 OK", "text/plain", "ok\n".to_owned())
                        } else {
                            let lines = stuck.iter().map(|s| format!("{s}\n")).collect();
                            ("503 Service Unavailable", "text/plain", lines)
                        }
                    }
                    "/readyz" if readiness.is_ready() => {
                        ("200 OK", "text/plain", "ready\n".to_owned())
                    }
                    "/readyz" => (
                        "503 Service Unavailable",
                        "text/plain",
                        "starting\n".to_owned(),
                    ),
                    _ => (
                        "404 Not Found",
                        "text/plain",
                        "try /metrics, /healthz or /readyz\n".to_owned(),
                    ),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        socket
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
            .await
            .expect("request");
        let mut response = String::new();
        socket
            .read_to_string(&mut response)
            .await
            .expect("response");
        response
    }

    #[tokio::test]
    async fn healthz_fails_naming_the_loop_once_it_is_stalled_past_the_limit() {
        let metrics = Metrics::new();
        let addr = serve(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics.clone(),
            Readiness::default(),
        )
        .await
        .expect("serve");
        let beat = metrics.liveness.register("predictor");
        beat.beat("committing the transaction");
        let healthy = get(addr, "/healthz").await;
        assert!(healthy.starts_with("HTTP/1.1 200"), "{healthy}");

        beat.backdate(STALL_LIMIT + Duration::from_secs(10));
        assert!(
            metrics
                .render()
                .contains("tweetoscope_processing_loop_stalled_seconds{stage=\"predictor\"} 34"),
            "the stall is exported"
        );
        let stuck = get(addr, "/healthz").await;
        assert!(stuck.starts_with("HTTP/1.1 503"), "{stuck}");
        assert!(
            stuck.contains("predictor: no progress for 34")
                && stuck.contains("while committing the transaction"),
            "{stuck}"
        );

        // A loop that ended is not a stuck one.
        beat.stopped();
        let ended = get(addr, "/healthz").await;
        assert!(ended.starts_with("HTTP/1.1 200"), "{ended}");
        assert!(
            !metrics
                .render()
                .contains("tweetoscope_processing_loop_stalled_seconds{"),
            "a loop that ended has no stall series"
        );
    }
}
