//! Dashboard stage: reads `alerts` and posts those predicted at or above a threshold to
//! Alertmanager (`POST /api/v2/alerts`); keeps the most popular predictions for reports.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::Message;
use tweetoscope_messages::{Alert, Malformed};

use super::StageEnv;
use crate::config::{AlertOn, DashboardArgs};
use crate::events::{AlertDeadLettered, AlertDelivered, AlertNotDelivered, InternalEvent as _};
use crate::kafka::{dead_letter, handler, Handled};
use crate::metrics::Metrics;

const STAGE: &str = "dashboard";

/// The most popular predictions seen, one entry per cascade (its newest window).
#[derive(Debug, Clone)]
pub struct TopCascades {
    inner: Arc<Mutex<Vec<Alert>>>,
    size: usize,
}

impl TopCascades {
    /// Keeps at most `size` cascades.
    pub fn new(size: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Vec::new())),
            size,
        }
    }

    /// Offers an alert; a later window replaces an earlier one of the same cascade.
    pub fn offer(&self, alert: &Alert) {
        let mut top = self.inner.lock().expect("top lock");
        if let Some(existing) = top.iter_mut().find(|a| a.cid == alert.cid) {
            if alert.t_obs >= existing.t_obs {
                *existing = alert.clone();
            }
        } else {
            top.push(alert.clone());
        }
        top.sort_by(|a, b| b.n_tot.cmp(&a.n_tot).then(a.cid.cmp(&b.cid)));
        top.truncate(self.size);
    }

    /// The kept alerts, most popular first.
    pub fn snapshot(&self) -> Vec<Alert> {
        self.inner.lock().expect("top lock").clone()
    }
}

/// Severity of a popularity alert: critical at twice the threshold.
pub fn severity(predicted: u64, threshold: u64) -> &'static str {
    if predicted >= threshold.saturating_mul(2) {
        "critical"
    } else {
        "warning"
    }
}

/// The size an alert is judged by: its prediction, or the bound of its interval that `on`
/// names when it has one.
pub fn judged_size(alert: &Alert, on: AlertOn) -> f64 {
    let bound = match on {
        AlertOn::Predicted => None,
        AlertOn::LowerBound => alert.n_low,
        AlertOn::UpperBound => alert.n_high,
    };
    bound.unwrap_or(alert.n_tot as f64)
}

/// Whether an alert is worth sending.
pub fn is_popular(alert: &Alert, threshold: u64, on: AlertOn) -> bool {
    judged_size(alert, on) >= threshold as f64
}

/// An interval bound as an annotation (empty when unknown).
fn bound(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v:.0}"))
}

/// The Alertmanager v2 body for one alert.
pub fn alertmanager_body(alert: &Alert, threshold: u64) -> serde_json::Value {
    serde_json::json!([{
        "labels": {
            "alertname": "PopularTweet",
            "service": "tweetoscope",
            "cid": alert.cid.0,
            "window": alert.t_obs.to_string(),
            "severity": severity(alert.n_tot, threshold),
        },
        "annotations": {
            "summary": format!("Tweet {} is predicted to reach {} retweets", alert.cid, alert.n_tot),
            "predicted_size": alert.n_tot.to_string(),
            "predicted_low": bound(alert.n_low),
            "predicted_high": bound(alert.n_high),
            "observed": alert.n_obs.to_string(),
            "model_version": alert.model_version.to_string(),
            "msg": alert.msg,
        },
    }])
}

/// Posts one alert.
pub async fn post(
    client: &reqwest::Client,
    url: &reqwest::Url,
    alert: &Alert,
    threshold: u64,
) -> Result<(), String> {
    let target = url.join("api/v2/alerts").map_err(|e| e.to_string())?;
    let request = client
        .post(target)
        .json(&alertmanager_body(alert, threshold));
    super::send_http(request, "Alertmanager").await
}

/// How long and how often an alert is posted again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The first wait after a failed post; it doubles after each one.
    pub first_wait: Duration,
    /// The longest wait.
    pub max_wait: Duration,
    /// Give up once this long has passed since the first post.
    pub give_up_after: Duration,
}

impl RetryPolicy {
    /// Waits from 0.5 s to 15 s, giving up after `give_up_after`.
    pub fn new(give_up_after: Duration) -> Self {
        Self {
            first_wait: Duration::from_millis(500),
            max_wait: Duration::from_secs(15),
            give_up_after,
        }
    }
}

/// What became of an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Alertmanager accepted it, at this attempt.
    Delivered {
        /// Posts made (1: the first one went through).
        attempts: u32,
    },
    /// Alertmanager did not accept it in time.
    GaveUp {
        /// Posts made.
        attempts: u32,
        /// The last error.
        error: String,
    },
}

/// Posts `alert` until Alertmanager accepts it or `policy` gives up, waiting a jittered,
/// doubling time between posts; each failed post is told (and counted).
pub async fn deliver(
    client: &reqwest::Client,
    url: &reqwest::Url,
    alert: &Alert,
    threshold: u64,
    policy: RetryPolicy,
    metrics: &Metrics,
) -> Delivery {
    let started = Instant::now();
    let mut wait = policy.first_wait;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let error = match post(client, url, alert, threshold).await {
            Ok(()) => {
                AlertDelivered.emit(metrics);
                return Delivery::Delivered { attempts };
            }
            Err(e) => e,
        };
        AlertNotDelivered {
            cid: &alert.cid.0,
            error: error.clone(),
        }
        .emit(metrics);
        let pause = super::jittered(wait, rand::random::<f64>());
        if started.elapsed() + pause > policy.give_up_after {
            return Delivery::GaveUp { attempts, error };
        }
        tokio::time::sleep(pause).await;
        wait = (wait * 2).min(policy.max_wait);
    }
}

/// Runs the dashboard until shutdown, keeping the most popular predictions in `top`.
pub async fn run(env: StageEnv, args: DashboardArgs, top: TopCascades) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let metrics = env.metrics.clone();
    let threshold = args.alert_threshold;
    let alert_on = args.alert_on;
    let url = args.alertmanager_url.clone();
    let policy = RetryPolicy::new(Duration::from_secs_f64(args.alert_retry_for));
    tracing::info!(threshold, ?alert_on, alertmanager = ?url.as_ref().map(|u| u.as_str()), "dashboard started");
    let input = env.input(STAGE, &env.topics.alerts_topic);
    let handler = handler(move |message| {
        let alert = match Alert::parse(message.payload().unwrap_or_default()) {
            Ok(a) => a,
            Err(m) => return Handled::Malformed(m),
        };
        top.offer(&alert);
        if !is_popular(&alert, threshold, alert_on) {
            metrics.alerts_handled.inc();
            return Handled::Now(Vec::new());
        }
        tracing::info!(cid = %alert.cid, window = alert.t_obs, predicted = alert.n_tot, low = ?alert.n_low, high = ?alert.n_high, "popular tweet");
        let Some(url) = url.clone() else {
            metrics.alerts_handled.inc();
            return Handled::Now(Vec::new());
        };
        let client = client.clone();
        let metrics = metrics.clone();
        let given_up = dead_letter(
            STAGE,
            message,
            &Malformed::new(format!(
                "Alertmanager did not accept the alert within --alert-retry-for {} s",
                policy.give_up_after.as_secs_f64()
            )),
        );
        Handled::Later(Box::pin(async move {
            let delivery = deliver(&client, &url, &alert, threshold, policy, &metrics).await;
            metrics.alerts_handled.inc();
            match delivery {
                Delivery::Delivered { .. } => Vec::new(),
                Delivery::GaveUp { attempts, error } => {
                    AlertDeadLettered {
                        cid: &alert.cid.0,
                        attempts,
                        error,
                    }
                    .emit(&metrics);
                    vec![given_up]
                }
            }
        }))
    });
    env.consume(input, |_| Ok(handler)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tweetoscope_messages::AlertTag;

    fn alert(cid: &str, window: u64, n: u64) -> Alert {
        Alert {
            kind: AlertTag::Alert,
            cid: cid.into(),
            msg: "m".into(),
            t_obs: window,
            n_tot: n,
            n_obs: 12,
            model_version: 2,
            n_low: None,
            n_high: None,
        }
    }

    #[test]
    fn alerts_on_the_lower_bound_need_a_likely_popular_cascade() {
        let mut a = alert("a", 600, 800);
        assert!(is_popular(&a, 500, AlertOn::Predicted));
        // Without an interval the lower-bound rule falls back to the prediction.
        assert!(is_popular(&a, 500, AlertOn::LowerBound));
        a.n_low = Some(300.0);
        a.n_high = Some(2000.0);
        assert!(is_popular(&a, 500, AlertOn::Predicted));
        assert!(
            !is_popular(&a, 500, AlertOn::LowerBound),
            "only possibly popular"
        );
        a.n_low = Some(520.0);
        assert!(is_popular(&a, 500, AlertOn::LowerBound));
        let body = alertmanager_body(&a, 500);
        assert_eq!(body[0]["annotations"]["predicted_low"], "520");
        assert_eq!(body[0]["annotations"]["predicted_high"], "2000");
    }

    #[test]
    fn alerts_on_the_upper_bound_include_possibly_popular_cascades() {
        let mut a = alert("a", 600, 300);
        // Without an interval the upper-bound rule falls back to the prediction too.
        assert!(!is_popular(&a, 500, AlertOn::UpperBound));
        a.n_low = Some(150.0);
        a.n_high = Some(620.0);
        assert!(!is_popular(&a, 500, AlertOn::Predicted));
        assert!(is_popular(&a, 500, AlertOn::UpperBound), "possibly popular");
        a.n_high = Some(480.0);
        assert!(!is_popular(&a, 500, AlertOn::UpperBound));
        assert_eq!(judged_size(&a, AlertOn::UpperBound), 480.0);
        assert_eq!(judged_size(&a, AlertOn::LowerBound), 150.0);
        assert_eq!(judged_size(&a, AlertOn::Predicted), 300.0);
    }

    #[test]
    fn top_keeps_the_newest_window_per_cascade() {
        let top = TopCascades::new(2);
        top.offer(&alert("a", 600, 100));
        top.offer(&alert("b", 600, 300));
        top.offer(&alert("a", 1200, 80));
        top.offer(&alert("c", 600, 50));
        let kept: Vec<_> = top
            .snapshot()
            .into_iter()
            .map(|a| (a.cid.0, a.t_obs, a.n_tot))
            .collect();
        assert_eq!(kept, vec![("b".into(), 600, 300), ("a".into(), 1200, 80)]);
    }

    #[test]
    fn alertmanager_payload_carries_cid_window_and_size() {
        let body = alertmanager_body(&alert("tw42", 600, 1200), 500);
        assert_eq!(body[0]["labels"]["cid"], "tw42");
        assert_eq!(body[0]["labels"]["window"], "600");
        assert_eq!(body[0]["labels"]["severity"], "critical");
        assert_eq!(body[0]["annotations"]["predicted_size"], "1200");
        assert_eq!(severity(600, 500), "warning");
    }

    /// An HTTP server answering the n-th request with `statuses[n]` (the last one after), and
    /// counting the requests.
    async fn stub_server(
        statuses: Vec<u16>,
    ) -> (reqwest::Url, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // The head, then as many body bytes as Content-Length says.
                loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                    if n == 0 {
                        break;
                    }
                }
                let n = count.fetch_add(1, Ordering::SeqCst);
                let status = statuses[n.min(statuses.len() - 1)];
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        (reqwest::Url::parse(&url).unwrap(), served)
    }

    fn quick(give_up_ms: u64) -> RetryPolicy {
        RetryPolicy {
            first_wait: Duration::from_millis(20),
            max_wait: Duration::from_millis(80),
            give_up_after: Duration::from_millis(give_up_ms),
        }
    }

    /// Delivers one alert to a server answering `statuses`, retrying for `give_up_ms`: what
    /// became of it, the posts the server saw, and the metrics.
    async fn deliver_to(statuses: Vec<u16>, give_up_ms: u64) -> (Delivery, usize, Arc<Metrics>) {
        let (url, served) = stub_server(statuses).await;
        let metrics = Metrics::new();
        let delivery = deliver(
            &reqwest::Client::new(),
            &url,
            &alert("a", 600, 900),
            500,
            quick(give_up_ms),
            &metrics,
        )
        .await;
        let served = served.load(std::sync::atomic::Ordering::SeqCst);
        (delivery, served, metrics)
    }

    #[tokio::test]
    async fn an_alert_is_posted_again_until_alertmanager_accepts_it() {
        let (delivery, served, metrics) = deliver_to(vec![503, 503, 200], 10_000).await;
        assert_eq!(delivery, Delivery::Delivered { attempts: 3 });
        assert_eq!(served, 3);
        assert_eq!(
            (metrics.alert_failures.get(), metrics.alerts_sent.get()),
            (2, 1)
        );
    }

    #[tokio::test]
    async fn an_alert_refused_for_too_long_is_given_up_with_the_last_error() {
        let (delivery, served, metrics) = deliver_to(vec![503], 300).await;
        let Delivery::GaveUp { attempts, error } = delivery else {
            panic!("{delivery:?}")
        };
        assert!(attempts >= 3, "{attempts} posts in 300 ms");
        assert_eq!(served, attempts as usize);
        assert!(error.contains("503"), "{error}");
        assert_eq!(metrics.alerts_sent.get(), 0);
    }
}
