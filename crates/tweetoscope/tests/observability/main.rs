//! The observability stack against the real programs:
//! - Prometheus scraping a running pipeline evaluates every query of the provisioned dashboards and
//!   every recording and alerting rule of the repository, and forwards alerts to Alertmanager;
//! - the monitor's pushes reach a Pushgateway with the figures of the `stats` topic;
//! - cascades predicted above the threshold reach Alertmanager and its webhook receiver, and the
//!   repository's Alertmanager configuration delivers them to the chat webhook;
//! - with Alertmanager and the Pushgateway down for 30 s, every alert still arrives, once, and
//!   the Pushgateway ends with the final figures;
//! - a `tweetoscope run` ships its logs to Loki as snappy protobuf with the expected labels;
//! - a real server of the Loki push API (VictoriaLogs) stores those pushes with the labels as
//!   stream fields, and gives every stage's lines back to a LogsQL query;
//! - the dashboards are consistent with the provisioned data sources and the exported metrics.
//!
//! The tests that need the Debian packages prometheus, prometheus-pushgateway and
//! prometheus-alertmanager are ignored by default; scripts/tiers/observability.sh installs the
//! packages and runs `cargo test -p tweetoscope --test observability -- --include-ignored`. The
//! VictoriaLogs test is ignored too: it needs the victoria-logs binary the tier builds into
//! `.cache/bin` (or `TWEETOSCOPE_VICTORIA_LOGS`).

#[path = "../common/mod.rs"]
mod common;
mod grafana;
mod loki;
mod servers;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::core::Collector as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use servers::{eventually, HttpSink};
use tweetoscope::admin_server::{serve, Readiness};
use tweetoscope::config::{KafkaArgs, RunArgs};
use tweetoscope::kafka::EmbeddedBroker;
use tweetoscope::metrics::Metrics;
use tweetoscope::run::{run_pipeline, RunSummary};
use tweetoscope_messages::{Alert, Stat};

/// A pipeline on its own embedded broker, which outlives the run so that the topics can be read.
struct Pipeline {
    broker: EmbeddedBroker,
    common: KafkaArgs,
    run: RunArgs,
}

impl Pipeline {
    fn new(args: &[&str]) -> Pipeline {
        let (mut common, run) = common::run_options(args);
        let topics = common.topics.clone();
        let broker = EmbeddedBroker::start(&topics.all(), &topics.compacted(), common.partitions)
            .expect("embedded broker");
        common.brokers = Some(broker.bootstrap().to_owned());
        common.no_create_topics = true;
        Pipeline {
            broker,
            common,
            run,
        }
    }

    fn brokers(&self) -> &str {
        self.broker.bootstrap()
    }

    async fn run(&self, metrics: Arc<Metrics>) -> RunSummary {
        let summary = run_pipeline(&self.common, &self.run, metrics, None)
            .await
            .expect("pipeline run");
        assert!(summary.complete, "{}", summary.to_text());
        summary
    }

    fn read(&self, topic: &str) -> Vec<common::Record> {
        common::read_topic(self.brokers(), topic)
    }
}

/// `GET /api/v1/query`: the result list (a scalar or string result counts as one element), or
/// Prometheus' error.
async fn prom_query(
    client: &reqwest::Client,
    base: &str,
    expr: &str,
) -> Result<Vec<Value>, String> {
    prom_query_at(client, base, expr, None).await
}

/// [`prom_query`] evaluated at `at` (now if `None`).
async fn prom_query_at(
    client: &reqwest::Client,
    base: &str,
    expr: &str,
    at: Option<SystemTime>,
) -> Result<Vec<Value>, String> {
    let mut params = vec![("query", expr.to_owned())];
    if let Some(at) = at {
        let seconds = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        params.push(("time", format!("{seconds:.3}")));
    }
    let response = client
        .get(format!("{base}/api/v1/query"))
        .query(&params)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("answer is not JSON: {e}"))?;
    if body["status"] != "success" {
        return Err(format!("{}: {}", body["errorType"], body["error"]));
    }
    match body["data"]["resultType"].as_str() {
        Some("vector" | "matrix") => Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()),
        Some("scalar" | "string") => Ok(vec![body["data"]["result"].clone()]),
        other => Err(format!("unexpected result type {other:?}")),
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Result<Value, String> {
    client
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("GET {url}: not JSON: {e}"))
}

/// An Alertmanager configuration sending every alert, quickly, to `url`.
fn webhook_config(url: &str) -> String {
    format!(
        r#"route:
  receiver: test-webhook
  group_by: [alertname, cid, window]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test-webhook
    webhook_configs:
      - url: "{url}"
        send_resolved: false
"#
    )
}

/// Every alert the webhook receiver of [`webhook_config`] got so far, in order, keyed by its
/// (cid, window) labels; each request must be a POST to /webhook from that receiver.
fn webhook_alerts(sink: &HttpSink) -> Vec<((String, String), Value)> {
    let mut alerts = Vec::new();
    for request in sink.requests() {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/webhook")
        );
        let body: Value = serde_json::from_slice(&request.body).expect("JSON webhook");
        assert_eq!(body["receiver"], "test-webhook");
        for alert in body["alerts"].as_array().expect("alerts list") {
            let key = (
                alert["labels"]["cid"].as_str().unwrap_or("").to_owned(),
                alert["labels"]["window"].as_str().unwrap_or("").to_owned(),
            );
            alerts.push((key, alert.clone()));
        }
    }
    alerts
}

/// One sample of the Prometheus text format: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (name, labels, rest) = match line.find('{') {
                Some(open) => {
                    let close = line.rfind('}').expect("closing brace");
                    (
                        &line[..open],
                        loki::parse_labels(&line[open..=close]).expect("labels"),
                        &line[close + 1..],
                    )
                }
                None => {
                    let (name, rest) = line.split_once(' ').expect("name and value");
                    (name, BTreeMap::new(), rest)
                }
            };
            let value = rest.split_whitespace().next().expect("value");
            let value = match value {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            (name.to_owned(), labels, value)
        })
        .collect()
}

fn sample_names(text: &str) -> BTreeSet<String> {
    parse_exposition(text)
        .into_iter()
        .map(|(name, _, _)| name)
        .collect()
}

fn close_to(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

use tweetoscope_stats::median;

/// Dashboard queries and rules that may legitimately return no data on a short, healthy run.
/// Each still has to be accepted by Prometheus.
const EXPECTED_EMPTY: &[(&str, &str)] = &[
    ("rule TweetoscopeStageDown", "every scraped target is up"),
    ("rule TweetoscopePushgatewayDown", "the Pushgateway is up"),
    (
        "rule TweetoscopeStageStalled",
        "every processing loop keeps making progress",
    ),
    (
        "rule TweetoscopeConsumerLagGrowing",
        "a short run never lags 1000 messages behind",
    ),
    (
        "rule TweetoscopeTransactionHanging",
        "every transaction ends within its timeout",
    ),
    (
        "rule TweetoscopeProduceFailures",
        "the embedded broker accepts every message",
    ),
    (
        "rule TweetoscopeFitFailures",
        "fewer than 5% of the fits fail (usually none)",
    ),
    (
        "rule TweetoscopeAREDegraded",
        "the median ARE of the synthetic cascades stays well below 0.5",
    ),
    (
        "rule TweetoscopeJoinEvictions",
        "the predictor's join table never fills",
    ),
    (
        "rule TweetoscopeAlertDeliveryFailing",
        "Alertmanager accepts every alert",
    ),
    (
        "rule TweetoscopeMonitorPushFailing",
        "the Pushgateway accepts every push",
    ),
    (
        "rule TweetoscopePushgatewayStale",
        "the monitor pushes every second",
    ),
    (
        "rule TweetoscopeLogRecordsDropped",
        "run_pipeline gets no log queue here: nothing can be dropped",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Debian prometheus packages: run scripts/tiers/observability.sh"]
async fn prometheus_scraping_a_run_answers_every_dashboard_query_and_rule() {
    let root = servers::repo_root();
    let repo_config =
        std::fs::read_to_string(root.join("observability/prometheus/prometheus.yml")).unwrap();
    for needle in [
        "job_name: tweetoscope",
        "job_name: pushgateway",
        "honor_labels: true",
        "rules/*.yml",
    ] {
        assert!(
            repo_config.contains(needle),
            "observability/prometheus/prometheus.yml should contain {needle:?}: the rules and this test rely on it"
        );
    }
    let rules_dir = root.join("observability/prometheus/rules");
    let rules_in_files: usize = std::fs::read_dir(&rules_dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .map(|text| {
            text.lines()
                .filter(|l| {
                    let t = l.trim_start();
                    t.starts_with("- alert:") || t.starts_with("- record:")
                })
                .count()
        })
        .sum();

    // The stage endpoint, served for the whole test, like the process of `tweetoscope run`.
    let metrics = Metrics::new();
    let metrics_addr = serve(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        metrics.clone(),
        Readiness::default(),
    )
    .await
    .expect("serve metrics");
    let pushgateway = servers::pushgateway().await;
    let webhook = HttpSink::start().await;
    let webhook_url = webhook.url("/webhook");
    let alertmanager = servers::alertmanager(|_| webhook_config(&webhook_url)).await;
    // The scrape jobs of the repository's configuration (same names, honor_labels), on loopback
    // targets, with short intervals; the repository's rule files as they are.
    let prometheus = servers::prometheus(&format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - "{rules}/*.yml"
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["{alertmanager}"]
scrape_configs:
  - job_name: tweetoscope
    honor_labels: true
    static_configs:
      - targets: ["{metrics_addr}"]
        labels: {{stage: run}}
  - job_name: pushgateway
    honor_labels: true
    static_configs:
      - targets: ["{pushgateway}"]
"#,
        rules = rules_dir.display(),
        alertmanager = alertmanager.addr,
        pushgateway = pushgateway.addr,
    ))
    .await;
    let client = reqwest::Client::new();
    let prom = prometheus.url();
    let (c, p) = (&client, prom.as_str());

    // Scraped before the run, so that the counters' first increments count as increases.
    eventually(
        Duration::from_secs(60),
        "Prometheus to scrape the stage and the Pushgateway",
        move || async move {
            let up = prom_query(c, p, "up == 1").await?;
            let jobs: BTreeSet<&str> = up
                .iter()
                .filter_map(|s| s["metric"]["job"].as_str())
                .collect();
            if jobs.contains("tweetoscope") && jobs.contains("pushgateway") {
                Ok(())
            } else {
                Err(format!("up == 1: {up:?}"))
            }
        },
    )
    .await;

    let pipeline = Pipeline::new(&[
        "--cascades",
        "30",
        "--seed",
        "11",
        "--alert-threshold",
        "100",
        "--pushgateway-url",
        &pushgateway.url(),
        "--push-interval",
        "1",
        "--alertmanager-url",
        &alertmanager.url(),
        "--retrain-every",
        "10",
        "--trees",
        "10",
        "--stall-timeout",
        "60",
        "--no-log-topic",
    ]);
    // One malformed tweet, so that the dead-letter panels and alert have something to show.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", pipeline.brokers())
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(&pipeline.common.topics.tweets_topic)
                .key("source-0")
                .payload(&b"{not json"[..]),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let run_started = SystemTime::now();
    let summary = pipeline.run(metrics.clone()).await;
    // Some series exist only while the stages run (a running loop's stall gauge): once they are
    // gone from a scrape Prometheus marks them stale, and a query of them has no data however
    // soon after the run it comes. A query that answers at the middle of the run counts too.
    let mid_run = run_started + run_started.elapsed().unwrap_or_default() / 2;
    assert!(summary.dead_letters >= 1, "{}", summary.to_text());
    assert!(
        metrics.alerts_sent.get() > 0,
        "the threshold should make some cascades popular"
    );
    assert!(summary.models_trained > 0, "{}", summary.to_text());

    // Every rule as Prometheus loaded it.
    let rules = get_json(&client, &format!("{prom}/api/v1/rules"))
        .await
        .unwrap();
    let mut expressions: Vec<(String, String)> = Vec::new();
    for group in rules["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            expressions.push((
                format!("rule {}", rule["name"].as_str().unwrap()),
                rule["query"].as_str().unwrap().to_owned(),
            ));
        }
    }
    assert_eq!(
        expressions.len(),
        rules_in_files,
        "Prometheus should load every rule of {}",
        rules_dir.display()
    );
    // Every Prometheus query of the dashboards, variables replaced by concrete values.
    let mut variables: Vec<(String, String, String)> = Vec::new();
    for dashboard in grafana::dashboards() {
        for query in grafana::queries(&dashboard) {
            if query.datasource.1 != "prometheus" {
                continue;
            }
            let expr = grafana::substitute(&query.expr);
            match query.kind {
                grafana::QueryKind::Target => expressions.push((query.id, expr)),
                grafana::QueryKind::Variable { label } => variables.push((query.id, expr, label)),
            }
        }
    }
    let ids: BTreeSet<&str> = expressions.iter().map(|(id, _)| id.as_str()).collect();
    for (id, reason) in EXPECTED_EMPTY {
        assert!(
            ids.contains(id),
            "EXPECTED_EMPTY names {id:?} ({reason}), which is no longer a rule or panel query: update the list"
        );
    }
    let expected_empty: BTreeSet<&str> = EXPECTED_EMPTY.iter().map(|(id, _)| *id).collect();

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut pending: Vec<&(String, String)> = expressions.iter().collect();
    loop {
        let mut still = Vec::new();
        for entry in pending {
            let (id, expr) = entry;
            if expected_empty.contains(id.as_str()) {
                // Still sent, so that Prometheus accepts it.
                prom_query(&client, &prom, expr)
                    .await
                    .unwrap_or_else(|e| panic!("{id}: Prometheus rejects {expr:?}: {e}"));
                continue;
            }
            let mut answered = false;
            for at in [None, Some(mid_run)] {
                let result = prom_query_at(&client, &prom, expr, at)
                    .await
                    .unwrap_or_else(|e| panic!("{id}: Prometheus rejects {expr:?}: {e}"));
                if !result.is_empty() {
                    answered = true;
                    break;
                }
            }
            if !answered {
                still.push(entry);
            }
        }
        let mut missing_labels = Vec::new();
        for (id, expr, label) in &variables {
            let result = prom_query(&client, &prom, expr)
                .await
                .unwrap_or_else(|e| panic!("{id}: Prometheus rejects {expr:?}: {e}"));
            if !result
                .iter()
                .any(|s| s["metric"][label.as_str()].is_string())
            {
                missing_labels.push(format!("{id}: no series of {expr} has the label {label}"));
            }
        }
        pending = still;
        if pending.is_empty() && missing_labels.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no data, and not in EXPECTED_EMPTY:\n{}\n{}",
            pending
                .iter()
                .map(|(id, expr)| format!("  {id}: {expr}"))
                .collect::<Vec<_>>()
                .join("\n"),
            missing_labels.join("\n")
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Every rule evaluates without error.
    let rules = get_json(&client, &format!("{prom}/api/v1/rules"))
        .await
        .unwrap();
    for group in rules["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(
                rule["health"], "ok",
                "rule {}: {}",
                rule["name"], rule["lastError"]
            );
        }
    }

    // Prometheus forwards the alerts the run fired to Alertmanager, which also holds the
    // dashboard stage's PopularTweet alerts. The popular-tweets rule must hold for a minute
    // (`for: 1m`) from the dashboard's first alert, which may come near the end of a short run,
    // and the queries above may all have answered within a second: wait that minute and more.
    let am = alertmanager.url();
    let am = am.as_str();
    eventually(
        Duration::from_secs(120),
        "the dead-letter, popular-tweets and PopularTweet alerts in Alertmanager",
        move || async move {
            let alerts = get_json(c, &format!("{am}/api/v2/alerts")).await?;
            let names: BTreeSet<String> = alerts
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
                .collect();
            let dead_letters = alerts.as_array().into_iter().flatten().any(|a| {
                a["labels"]["alertname"] == "TweetoscopeDeadLetters"
                    && a["labels"]["stage"] == "collector"
                    && a["labels"]["topic"] == "tweets"
            });
            if dead_letters
                && names.contains("TweetoscopePopularTweets")
                && names.contains("PopularTweet")
            {
                Ok(())
            } else {
                Err(format!("alert names in Alertmanager: {names:?}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Debian prometheus packages: run scripts/tiers/observability.sh"]
async fn the_pushgateway_holds_the_are_figures_of_the_stats_topic() {
    let pushgateway = servers::pushgateway().await;
    let pipeline = Pipeline::new(&[
        "--cascades",
        "30",
        "--seed",
        "3",
        "--pushgateway-url",
        &pushgateway.url(),
        "--push-interval",
        "1",
        "--stall-timeout",
        "60",
        "--no-log-topic",
    ]);
    let metrics = Metrics::new();
    pipeline.run(metrics.clone()).await;
    assert!(metrics.pushes.get() >= 1);
    assert_eq!(metrics.push_failures.get(), 0);

    let mut are: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut are_hawkes: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for record in pipeline.read(&pipeline.common.topics.stats_topic) {
        let stat = Stat::parse(&record.payload).expect("valid stat");
        are.entry(stat.t_obs.to_string())
            .or_default()
            .push(stat.are);
        are_hawkes
            .entry(stat.t_obs.to_string())
            .or_default()
            .push(stat.are_hawkes);
    }
    assert!(!are.is_empty(), "the run should produce stats");

    let text = reqwest::get(format!("{}/metrics", pushgateway.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = parse_exposition(&text);
    let pushed = |name: &str, window: &str| -> f64 {
        let found: Vec<f64> = samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && labels.get("window").map(String::as_str) == Some(window)
                    && labels.get("job").map(String::as_str) == Some("tweetoscope")
            })
            .map(|(_, _, v)| *v)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {name}{{job=\"tweetoscope\",window=\"{window}\"}} expected in:\n{text}"
        );
        found[0]
    };
    let pushed_windows: BTreeSet<&str> = samples
        .iter()
        .filter(|(n, _, _)| n == "tweetoscope_are_count")
        .filter_map(|(_, labels, _)| labels.get("window").map(String::as_str))
        .collect();
    assert_eq!(
        pushed_windows,
        are.keys().map(String::as_str).collect(),
        "windows pushed"
    );
    for (window, values) in &are {
        assert_eq!(
            pushed("tweetoscope_are_count", window),
            values.len() as f64,
            "count, window {window}"
        );
        let expected_median = median(values);
        let got = pushed("tweetoscope_are_median", window);
        assert!(
            close_to(got, expected_median),
            "median, window {window}: pushed {got}, stats topic {expected_median}"
        );
        let expected_mean = values.iter().sum::<f64>() / values.len() as f64;
        let got = pushed("tweetoscope_are_mean", window);
        assert!(
            close_to(got, expected_mean),
            "mean, window {window}: pushed {got}, stats topic {expected_mean}"
        );
        let expected_hawkes = median(&are_hawkes[window]);
        let got = pushed("tweetoscope_are_hawkes_median", window);
        assert!(
            close_to(got, expected_hawkes),
            "Hawkes median, window {window}: pushed {got}, stats topic {expected_hawkes}"
        );
        let last = pushed("tweetoscope_are_last", window);
        assert!(
            values.iter().any(|v| close_to(*v, last)),
            "last ARE {last} of window {window} is none of the stats"
        );
    }
    // The Pushgateway accepted the last push as a whole.
    let failure = samples
        .iter()
        .find(|(n, l, _)| n == "push_failure_time_seconds" && l["job"] == "tweetoscope")
        .map(|(_, _, v)| *v);
    assert_eq!(failure, Some(0.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Debian prometheus packages: run scripts/tiers/observability.sh"]
async fn popular_tweets_reach_alertmanager_and_its_webhook_receiver() {
    let threshold: u64 = 150;
    let webhook = HttpSink::start().await;
    let webhook_url = webhook.url("/webhook");
    let alertmanager = servers::alertmanager(|_| webhook_config(&webhook_url)).await;
    let pipeline = Pipeline::new(&[
        "--cascades",
        "30",
        "--seed",
        "5",
        "--alert-threshold",
        &threshold.to_string(),
        "--alertmanager-url",
        &alertmanager.url(),
        "--stall-timeout",
        "60",
        "--no-log-topic",
    ]);
    let metrics = Metrics::new();
    pipeline.run(metrics.clone()).await;

    let alerts: Vec<Alert> = pipeline
        .read(&pipeline.common.topics.alerts_topic)
        .iter()
        .map(|r| Alert::parse(&r.payload).expect("valid alert"))
        .collect();
    let popular: BTreeMap<(String, String), u64> = alerts
        .iter()
        .filter(|a| a.n_tot >= threshold)
        .map(|a| ((a.cid.0.clone(), a.t_obs.to_string()), a.n_tot))
        .collect();
    let quiet: BTreeSet<(String, String)> = alerts
        .iter()
        .filter(|a| a.n_tot < threshold)
        .map(|a| (a.cid.0.clone(), a.t_obs.to_string()))
        .collect();
    assert!(
        !popular.is_empty() && !quiet.is_empty(),
        "the threshold {threshold} should split the {} predictions",
        alerts.len()
    );
    assert_eq!(
        metrics.alerts_sent.get() as usize,
        alerts.iter().filter(|a| a.n_tot >= threshold).count(),
        "one post per prediction at or above the threshold"
    );
    assert_eq!(metrics.alert_failures.get(), 0);

    let wanted = &popular;
    let sink = &webhook;
    let delivered = eventually(
        Duration::from_secs(60),
        "every popular cascade at the webhook receiver",
        move || async move {
            let delivered: BTreeMap<(String, String), Value> =
                webhook_alerts(sink).into_iter().collect();
            let missing: Vec<_> = wanted
                .keys()
                .filter(|k| !delivered.contains_key(*k))
                .collect();
            if missing.is_empty() {
                Ok(delivered)
            } else {
                Err(format!("not delivered yet: {missing:?}"))
            }
        },
    )
    .await;
    for ((cid, window), alert) in &delivered {
        let Some(predicted) = popular.get(&(cid.clone(), window.clone())) else {
            panic!("cascade {cid:?} (window {window:?}) delivered but not predicted at or above {threshold}: {alert}");
        };
        assert_eq!(alert["status"], "firing", "{alert}");
        assert_eq!(alert["labels"]["alertname"], "PopularTweet", "{alert}");
        assert_eq!(alert["labels"]["service"], "tweetoscope", "{alert}");
        assert_eq!(
            alert["annotations"]["predicted_size"],
            predicted.to_string(),
            "{alert}"
        );
        let severity = if *predicted >= 2 * threshold {
            "critical"
        } else {
            "warning"
        };
        assert_eq!(alert["labels"]["severity"], severity, "{alert}");
    }
}

/// Alertmanager and the Pushgateway down for 30 s while a run makes its first predictions: the
/// dashboard holds each popular alert (its offset uncommitted) and retries it until Alertmanager
/// is back, so every one reaches the webhook receiver, each once; the monitor's pushes fail
/// meanwhile, and the Pushgateway, back 20 s after Alertmanager, ends with the final figures of
/// the stats topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Debian prometheus packages: run scripts/tiers/observability.sh"]
async fn alerts_and_final_figures_survive_alertmanager_and_pushgateway_down_for_30_s() {
    let threshold: u64 = 150;
    let webhook = HttpSink::start().await;
    let webhook_url = webhook.url("/webhook");
    let mut alertmanager = servers::alertmanager(|_| webhook_config(&webhook_url)).await;
    let mut pushgateway = servers::pushgateway().await;
    let pipeline = Pipeline::new(&[
        "--cascades",
        "30",
        "--seed",
        "5",
        "--alert-threshold",
        &threshold.to_string(),
        "--alertmanager-url",
        &alertmanager.url(),
        "--pushgateway-url",
        &pushgateway.url(),
        "--push-interval",
        "1",
        "--stall-timeout",
        "120",
        "--no-log-topic",
    ]);
    let metrics = Metrics::new();
    let outage = async {
        // Down as soon as the replay starts, before any prediction can exist: an alert that
        // Alertmanager accepted but had not yet notified would die with it, which is not the
        // pipeline's doing.
        let deadline = Instant::now() + Duration::from_secs(60);
        while metrics.generator_tweets.collect()[0]
            .get_metric()
            .iter()
            .all(|m| m.get_counter().get_value() == 0.0)
        {
            assert!(Instant::now() < deadline, "the replay never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        alertmanager.stop();
        pushgateway.stop();
        assert_eq!(
            metrics.alerts_sent.get(),
            0,
            "an alert was accepted before the outage: the test would not show what it means to"
        );
        tokio::time::sleep(Duration::from_secs(30)).await;
        let alerts_refused = metrics.alert_failures.get();
        alertmanager.start_again().await;
        // The Pushgateway comes back 20 s later: by then the held alerts are delivered (the
        // dashboard's back-off is at most 15 s) and the run is stopping, so its figures arrive
        // by the monitor's retried last push.
        tokio::time::sleep(Duration::from_secs(20)).await;
        let pushes_refused = metrics.push_failures.get();
        pushgateway.start_again().await;
        (alerts_refused, pushes_refused)
    };
    let started = Instant::now();
    let run = async {
        let summary = pipeline.run(metrics.clone()).await;
        eprintln!("run ended after {:?}", started.elapsed());
        summary
    };
    let (_, (alerts_refused, pushes_refused)) = tokio::join!(run, outage);
    eprintln!(
        "pushes accepted {}, refused {}; {:?} after the start",
        metrics.pushes.get(),
        metrics.push_failures.get(),
        started.elapsed()
    );
    assert!(alerts_refused > 0, "no alert post failed during the outage");
    assert!(pushes_refused > 0, "no push failed during the outage");
    assert_eq!(metrics.alerts_dead_lettered.get(), 0, "no alert given up");

    let alerts: Vec<Alert> = pipeline
        .read(&pipeline.common.topics.alerts_topic)
        .iter()
        .map(|r| Alert::parse(&r.payload).expect("valid alert"))
        .collect();
    let popular: BTreeSet<(String, String)> = alerts
        .iter()
        .filter(|a| a.n_tot >= threshold)
        .map(|a| (a.cid.0.clone(), a.t_obs.to_string()))
        .collect();
    assert!(
        !popular.is_empty(),
        "the run should predict popular cascades"
    );
    assert_eq!(
        metrics.alerts_sent.get() as usize,
        popular.len(),
        "each popular alert accepted once"
    );
    let sink = &webhook;
    let wanted = &popular;
    let notified = eventually(
        Duration::from_secs(60),
        "every popular cascade at the webhook receiver after the outage",
        move || async move {
            let mut notified: BTreeMap<(String, String), usize> = BTreeMap::new();
            for (key, _) in webhook_alerts(sink) {
                *notified.entry(key).or_default() += 1;
            }
            let missing: Vec<_> = wanted
                .iter()
                .filter(|k| !notified.contains_key(*k))
                .collect();
            if missing.is_empty() {
                Ok(notified)
            } else {
                Err(format!("not notified yet: {missing:?}"))
            }
        },
    )
    .await;
    for (key, times) in &notified {
        assert!(popular.contains(key), "{key:?} notified but not popular");
        assert_eq!(*times, 1, "{key:?} notified {times} times");
    }

    // The Pushgateway holds the final figures: one ARE per stat of the topic, per window.
    let mut stats: BTreeMap<String, usize> = BTreeMap::new();
    for record in pipeline.read(&pipeline.common.topics.stats_topic) {
        let stat = Stat::parse(&record.payload).expect("valid stat");
        *stats.entry(stat.t_obs.to_string()).or_default() += 1;
    }
    let text = reqwest::get(format!("{}/metrics", pushgateway.url()))
        .await
        .expect("the Pushgateway answers")
        .text()
        .await
        .expect("text");
    let pushed: BTreeMap<String, usize> = parse_exposition(&text)
        .into_iter()
        .filter(|(n, l, _)| n == "tweetoscope_are_count" && l["job"] == "tweetoscope")
        .map(|(_, l, v)| (l["window"].clone(), v as usize))
        .collect();
    assert_eq!(
        pushed, stats,
        "pushed counts per window against the stats topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Debian prometheus packages: run scripts/tiers/observability.sh"]
async fn the_repository_alertmanager_config_posts_alerts_to_the_chat_webhook() {
    let chat = HttpSink::start().await;
    let chat_url = chat.url("/chat-hook");
    let smtp_port = servers::free_port();
    let repo = servers::repo_root().join("observability/alertmanager/alertmanager.yml");
    let original = std::fs::read_to_string(&repo).unwrap();
    assert!(
        original.contains("/etc/alertmanager/secrets/chat-webhook-url")
            && original.contains("/etc/alertmanager/secrets/smtp-password"),
        "the secrets are read from files"
    );
    let alertmanager = servers::alertmanager(|dir| {
        // The secrets, as the Kubernetes Secret would mount them; email to a closed local port.
        let secrets = dir.join("secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        std::fs::write(secrets.join("chat-webhook-url"), format!("{chat_url}\n")).unwrap();
        std::fs::write(secrets.join("smtp-password"), "not-a-secret\n").unwrap();
        original
            .replace(
                "/etc/alertmanager/secrets/",
                &format!("{}/", secrets.display()),
            )
            .replace("smtp.example.org:587", &format!("127.0.0.1:{smtp_port}"))
    })
    .await;

    // A popular tweet as the dashboard stage posts it (warning: chat only), and a pipeline alert
    // as Prometheus would send it.
    let popular = Alert::parse(
        br#"{"type":"alert","cid":"obs-42","msg":"hello","T_obs":600,"n_tot":700,"n_obs":37,"model_version":3}"#,
    )
    .unwrap();
    let client = reqwest::Client::new();
    let url = reqwest::Url::parse(&alertmanager.url()).unwrap();
    tweetoscope::stages::dashboard::post(&client, &url, &popular, 500)
        .await
        .expect("Alertmanager accepts the dashboard's alert");
    let pipeline_alert = json!([{
        "labels": {"alertname": "TweetoscopeDeadLetters", "service": "tweetoscope", "severity": "warning",
                   "stage": "collector", "topic": "tweets"},
        "annotations": {"summary": "Malformed messages on tweets went to tweets.dlq",
                        "description": "Stage collector dead-lettered messages."},
    }]);
    let response = client
        .post(format!("{}/api/v2/alerts", alertmanager.url()))
        .json(&pipeline_alert)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{response:?}");

    let sink = &chat;
    let messages = eventually(
        Duration::from_secs(90),
        "both alerts at the chat webhook",
        move || async move {
            let texts: Vec<Value> = sink
                .requests()
                .iter()
                .map(|r| {
                    assert_eq!(r.path, "/chat-hook");
                    serde_json::from_slice(&r.body).expect("JSON chat message")
                })
                .collect();
            let all = serde_json::to_string(&texts).unwrap();
            if all.contains("PopularTweet") && all.contains("TweetoscopeDeadLetters") {
                Ok(texts)
            } else {
                Err(format!("chat messages so far: {all}"))
            }
        },
    )
    .await;
    let attachment = |name: &str| -> Value {
        messages
            .iter()
            .flat_map(|m| m["attachments"].as_array().cloned().unwrap_or_default())
            .find(|a| a["title"].as_str().unwrap_or("").contains(name))
            .unwrap_or_else(|| panic!("no attachment titled with {name} in {messages:?}"))
    };
    let popular_text = attachment("PopularTweet")["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        popular_text.contains("cascade obs-42 (600 s window)")
            && popular_text.contains("predicted 700 retweets, 37 seen"),
        "{popular_text}"
    );
    let pipeline_text = attachment("TweetoscopeDeadLetters")["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        pipeline_text.contains("Malformed messages on tweets went to tweets.dlq"),
        "{pipeline_text}"
    );
    assert!(messages.iter().all(|m| m["channel"] == "#tweetoscope"));
}

/// Kills a child process on drop.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `tweetoscope run --cascades <cascades>` shipping its logs (info and above) to the Loki
/// base URL `loki_url`, and waits (at most 300 s) for it to succeed. Returns when it started and
/// ended, and the last lines of its standard error.
async fn run_shipping_logs_to(loki_url: &str, cascades: &str) -> (SystemTime, SystemTime, String) {
    let dir = servers::TempDir::new("loki");
    let stderr_path = dir.path().join("stderr.log");
    let started = SystemTime::now();
    let mut child = ChildGuard(
        std::process::Command::new(env!("CARGO_BIN_EXE_tweetoscope"))
            .args([
                "run",
                "--cascades",
                cascades,
                "--loki-url",
                loki_url,
                "--metrics-addr",
                "off",
                "--log",
                "info",
                "--alert-threshold",
                "1",
                "--no-log-topic",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start tweetoscope run"),
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "tweetoscope run did not end within 300 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let tail: String = stderr.lines().rev().take(20).collect::<Vec<_>>().join("\n");
    assert!(status.success(), "tweetoscope run failed: {tail}");
    (started, SystemTime::now(), tail)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_ships_its_logs_to_loki_as_snappy_protobuf_with_labels() {
    let loki = HttpSink::start().await;
    let (started, ended, tail) = run_shipping_logs_to(&loki.url(""), "20").await;

    let requests = loki.requests();
    assert!(
        !requests.is_empty(),
        "no push reached the Loki receiver: {tail}"
    );
    // (level, timestamp, parsed line) of every entry.
    let mut entries: Vec<(String, SystemTime, Value)> = Vec::new();
    let mut label_names = BTreeSet::new();
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/loki/api/v1/push");
        assert_eq!(
            request.headers.get("content-type").map(String::as_str),
            Some("application/x-protobuf")
        );
        assert_eq!(
            request.headers.get("content-encoding").map(String::as_str),
            Some("snappy")
        );
        let push = loki::decode_push(&request.body).unwrap();
        for stream in push.streams {
            let labels = loki::parse_labels(&stream.labels).unwrap();
            assert_eq!(
                labels.get("service").map(String::as_str),
                Some("tweetoscope")
            );
            assert_eq!(labels.get("process").map(String::as_str), Some("run"));
            let level = labels.get("level").cloned().unwrap_or_default();
            assert!(
                ["trace", "debug", "info", "warn", "error"].contains(&level.as_str()),
                "level label {level:?}"
            );
            label_names.extend(labels.keys().cloned());
            for entry in stream.entries {
                let ts = entry.timestamp.expect("entry timestamp");
                let at = UNIX_EPOCH
                    + Duration::new(
                        u64::try_from(ts.seconds).expect("timestamp after 1970"),
                        u32::try_from(ts.nanos).expect("nanos"),
                    );
                let line: Value = serde_json::from_str(&entry.line)
                    .unwrap_or_else(|e| panic!("line is not JSON ({e}): {}", entry.line));
                entries.push((level.clone(), at, line));
            }
        }
    }
    for (_, at, line) in &entries {
        assert!(
            *at + Duration::from_secs(5) >= started && *at <= ended + Duration::from_secs(5),
            "timestamp {at:?} outside the run: {line}"
        );
    }
    // Every stage's own lines, marked with the stage span's name.
    for stage in [
        "generator",
        "collector",
        "estimator",
        "predictor",
        "learner",
        "monitor",
        "dashboard",
    ] {
        assert!(
            entries
                .iter()
                .any(|(level, _, line)| level == "info" && line["name"] == stage),
            "no info line of the {stage} stage among {} entries",
            entries.len()
        );
    }
    // The fields the dashboards' LogQL extracts from the popular-tweet lines.
    let popular: Vec<&Value> = entries
        .iter()
        .filter(|(_, _, line)| line["message"] == "popular tweet")
        .map(|(_, _, line)| line)
        .collect();
    assert!(
        !popular.is_empty(),
        "--alert-threshold 1 makes every prediction popular"
    );
    for line in popular {
        assert!(
            line["cid"].is_string() && line["window"].is_u64() && line["predicted"].is_u64(),
            "{line}"
        );
        assert_eq!(line["name"], "dashboard", "{line}");
    }
    // The stream labels the dashboards select on are the ones shipped.
    for dashboard in grafana::dashboards() {
        for query in grafana::queries(&dashboard) {
            if query.datasource.0 != "loki" {
                continue;
            }
            let used = match &query.kind {
                grafana::QueryKind::Variable { label } => {
                    let mut used = stream_selector_labels(&query.expr);
                    used.insert(label.clone());
                    used
                }
                grafana::QueryKind::Target => stream_selector_labels(&query.expr),
            };
            assert!(!used.is_empty(), "{}: no stream selector", query.id);
            for label in used {
                assert!(
                    label_names.contains(&label),
                    "{}: selects on the label {label}, which the stages do not ship (they ship {label_names:?})",
                    query.id
                );
            }
        }
    }
}

/// `POST /select/logsql/query` of VictoriaLogs: one JSON object per matching entry, every value
/// a string.
async fn logsql_query(
    client: &reqwest::Client,
    base: &str,
    query: &str,
) -> Result<Vec<BTreeMap<String, String>>, String> {
    let response = client
        .post(format!("{base}/select/logsql/query"))
        .form(&[("query", query)])
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("{status}: {text}"));
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not a JSON entry ({e}): {l}")))
        .collect()
}

/// The same pushes as [`a_run_ships_its_logs_to_loki_as_snappy_protobuf_with_labels`], to a
/// real server of the Loki push API: VictoriaLogs, which stores the Loki labels as its stream
/// fields and parses the JSON lines of tracing-loki into fields (`message`, and `name`, the stage
/// span's field: the stage is no Loki label). tracing-loki cannot pass VictoriaLogs' `_msg_field`
/// (it drops the base URL's query, and the stages set no such header), so `_msg` holds
/// VictoriaLogs' placeholder and the text is in `message`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs victoria-logs: run scripts/tiers/observability.sh"]
async fn a_run_ships_its_logs_to_victoria_logs_through_the_loki_push_api() {
    let victoria = servers::victoria_logs().await;
    // tracing-loki appends `loki/api/v1/push` to the base URL, VictoriaLogs takes the pushes at
    // /insert/loki/api/v1/push: the trailing slash keeps /insert/.
    let (_, _, tail) = run_shipping_logs_to(&format!("{}/insert/", victoria.url()), "10").await;

    const STAGES: [&str; 7] = [
        "generator",
        "collector",
        "estimator",
        "predictor",
        "learner",
        "monitor",
        "dashboard",
    ];
    let client = reqwest::Client::new();
    let base = victoria.url();
    let (c, b) = (&client, base.as_str());
    // Entries become searchable within a second or so of their push.
    let entries = eventually(
        Duration::from_secs(30),
        "every stage's start line in VictoriaLogs",
        move || async move {
            let entries = logsql_query(
                c,
                b,
                r#"_stream:{service="tweetoscope",process="run"} | fields _stream, level, name, message"#,
            )
            .await?;
            let missing: Vec<&str> = STAGES
                .into_iter()
                .filter(|stage| {
                    !entries.iter().any(|e| {
                        e.get("name").map(String::as_str) == Some(stage)
                            && e.get("message") == Some(&format!("{stage} started"))
                    })
                })
                .collect();
            if missing.is_empty() {
                Ok(entries)
            } else {
                Err(format!(
                    "no start line of {missing:?} among {} entries",
                    entries.len()
                ))
            }
        },
    )
    .await;
    for entry in &entries {
        let stream = loki::parse_labels(&entry["_stream"]).unwrap();
        assert_eq!(
            stream.keys().map(String::as_str).collect::<Vec<_>>(),
            ["level", "process", "service"],
            "the Loki labels, and only they, are the stream fields: {entry:?}"
        );
        assert_eq!(entry.get("level"), stream.get("level"), "{entry:?}");
    }
    for stage in STAGES {
        let start = entries
            .iter()
            .find(|e| {
                e.get("name").map(String::as_str) == Some(stage)
                    && e.get("message") == Some(&format!("{stage} started"))
            })
            .expect("found above");
        assert_eq!(
            start.get("level").map(String::as_str),
            Some("info"),
            "{start:?}"
        );
    }
    // A field filter on a line's own field finds the collector's start line.
    let collector = logsql_query(
        &client,
        &base,
        r#"name:=collector message:="collector started" | fields name, message"#,
    )
    .await
    .unwrap();
    assert_eq!(collector.len(), 1, "{collector:?}; run: {tail}");
    assert!(
        victoria.log().lines().all(|l| !l.contains("\terror\t")),
        "victoria-logs reported errors:\n{}",
        victoria.log()
    );
}

/// Label names of the `{...}` stream selectors of a LogQL expression.
fn stream_selector_labels(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(open) = rest.find('{') {
        // `{{` is a line_format template, not a selector.
        if rest[open + 1..].starts_with('{') {
            rest = &rest[open + 2..];
            continue;
        }
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        for matcher in rest[open + 1..open + close].split(',') {
            let name: String = matcher
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
        rest = &rest[open + close + 1..];
    }
    names
}

/// Every series name the stages export (each labelled family given one label value, since
/// labelled families only appear once used), and those the monitor pushes.
fn exported_series_names() -> BTreeSet<String> {
    use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
    fn touch<T: MetricVecBuilder>(vec: &MetricVec<T>) {
        let labels = vec.desc()[0].variable_labels.len();
        let values = vec!["x"; labels];
        let _ = vec.with_label_values(&values);
    }
    let m = Metrics::new();
    touch(&m.consumed);
    touch(&m.produced);
    touch(&m.malformed);
    touch(&m.produce_failures);
    touch(&m.processing_seconds);
    touch(&m.consumer_lag);
    touch(&m.consumer_stable_offset);
    touch(&m.consumer_unstable_messages);
    touch(&m.generator_tweets);
    touch(&m.collector_tweets);
    touch(&m.fit_failures);
    touch(&m.are);
    touch(&m.predictions);
    touch(&m.model_version);
    touch(&m.training_samples);
    touch(&m.growth_blended);
    touch(&m.trainings);
    touch(&m.trainings_superseded);
    touch(&m.logs_shown);
    // The stall gauge is set at rendering, from the loops running then.
    let _running_loop = m.liveness.register("x");
    touch(&m.build_info);
    let mut names = sample_names(&m.render());
    let board = tweetoscope::stages::monitor::ErrorBoard::default();
    board.add(&Stat::parse(br#"{"type":"stat","cid":"c","T_obs":600,"ARE":0.25}"#).unwrap());
    names.extend(sample_names(&board.exposition()));
    names
}

#[test]
fn dashboards_are_consistent_with_the_data_sources_and_the_exported_metrics() {
    let datasources = grafana::provisioned_datasources();
    let find = |kind: &str| {
        datasources
            .iter()
            .find(|d| d.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} data source provisioned: {datasources:?}"))
    };
    let (prometheus, loki) = (find("prometheus"), find("loki"));
    assert_eq!(
        (prometheus.uid.as_str(), prometheus.url.as_str()),
        ("prometheus", "http://prometheus:9090")
    );
    assert_eq!(
        (loki.uid.as_str(), loki.url.as_str()),
        ("loki", "http://loki:3100")
    );
    let known: BTreeSet<(String, String)> = datasources
        .iter()
        .map(|d| (d.kind.clone(), d.uid.clone()))
        .collect();
    let provider = std::fs::read_to_string(
        servers::repo_root().join("grafana/provisioning/dashboards/dashboards.yml"),
    )
    .unwrap();
    assert!(
        provider.contains("path: /var/lib/grafana/dashboards") && provider.contains("type: file"),
        "the dashboard provider loads the files of /var/lib/grafana/dashboards"
    );

    let mut allowed = exported_series_names();
    // Written by Prometheus for every scrape target.
    allowed.insert("up".into());
    for must in [
        "tweetoscope_messages_consumed_total",
        "tweetoscope_processing_seconds_bucket",
        "tweetoscope_are_median",
    ] {
        assert!(allowed.contains(must), "{must} missing from {allowed:?}");
    }

    let dashboards = grafana::dashboards();
    assert!(
        dashboards.len() >= 2,
        "an overview and a logs dashboard are provisioned"
    );
    let mut uids = BTreeSet::new();
    for dashboard in &dashboards {
        let file = &dashboard.file;
        let json = &dashboard.json;
        assert!(json["title"].is_string(), "{file}: title");
        assert!(json["schemaVersion"].is_u64(), "{file}: schemaVersion");
        assert!(
            uids.insert(dashboard.uid().to_owned()) && !dashboard.uid().is_empty(),
            "{file}: missing or duplicate uid {}",
            dashboard.uid()
        );
        let panels = grafana::panels(json);
        assert!(!panels.is_empty(), "{file}: no panel");
        let mut ids = BTreeSet::new();
        for panel in &panels {
            let id = panel["id"].as_u64().unwrap_or_else(|| {
                panic!("{file}: a panel without a numeric id: {}", panel["title"])
            });
            assert!(ids.insert(id), "{file}: panel id {id} used twice");
            let grid = &panel["gridPos"];
            assert!(
                ["h", "w", "x", "y"].iter().all(|k| grid[*k].is_u64())
                    && grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24,
                "{file}: panel {id} has a bad gridPos {grid}"
            );
            if panel["type"] == "row" {
                continue;
            }
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            assert!(!targets.is_empty(), "{file}: panel {id} has no query");
            let panel_ds =
                grafana::resolve_datasource(json, &panel["datasource"]).unwrap_or_default();
            assert!(
                known.contains(&panel_ds),
                "{file}: panel {id} uses the data source {}, not a provisioned one ({known:?})",
                panel["datasource"]
            );
            let mut refs = BTreeSet::new();
            for target in &targets {
                assert!(
                    refs.insert(target["refId"].as_str().unwrap_or("").to_owned()),
                    "{file}: panel {id}: refId repeated or missing"
                );
                if !target["datasource"].is_null() {
                    assert_eq!(
                        target["datasource"], panel["datasource"],
                        "{file}: panel {id}: a target on another data source than its panel"
                    );
                }
                assert!(
                    target["expr"]
                        .as_str()
                        .is_some_and(|e| !e.trim().is_empty()),
                    "{file}: panel {id}: empty expression"
                );
            }
        }
        for variable in json["templating"]["list"].as_array().into_iter().flatten() {
            if variable["type"] == "query" {
                let ds =
                    grafana::resolve_datasource(json, &variable["datasource"]).unwrap_or_default();
                assert!(
                    known.contains(&ds),
                    "{file}: variable {} uses the data source {}",
                    variable["name"],
                    variable["datasource"]
                );
            }
        }
        for query in grafana::queries(dashboard) {
            // Every variable has a test value (substitute panics otherwise).
            let expr = grafana::substitute(&query.expr);
            if query.datasource.0 != "prometheus" {
                continue;
            }
            let names = grafana::metric_names(&expr);
            assert!(!names.is_empty(), "{}: no metric in {expr}", query.id);
            for name in names {
                assert!(
                    allowed.contains(&name),
                    "{}: {name} is not exported by the stages nor pushed by the monitor ({expr})",
                    query.id
                );
            }
        }
    }
    for uid in ["tweetoscope-overview", "tweetoscope-logs"] {
        assert!(uids.contains(uid), "dashboard {uid} missing");
    }
    // The overview shows each required topic.
    let overview = dashboards
        .iter()
        .find(|d| d.uid() == "tweetoscope-overview")
        .unwrap();
    let all: String = grafana::queries(overview)
        .iter()
        .map(|q| q.expr.clone())
        .collect::<Vec<_>>()
        .join("\n");
    for needle in [
        "tweetoscope_messages_consumed_total",
        "tweetoscope_messages_produced_total",
        "tweetoscope_consumer_lag_messages",
        "tweetoscope_malformed_messages_total",
        "tweetoscope_estimator_fit_seconds_bucket",
        "tweetoscope_estimator_fit_failures_total",
        "tweetoscope_are_median",
        "tweetoscope_predictor_are_bucket",
        "tweetoscope_predictor_predictions_total",
        "tweetoscope_dashboard_alerts_sent_total",
        "popular tweet",
    ] {
        assert!(
            all.contains(needle),
            "the overview dashboard never uses {needle}"
        );
    }
    let logs = dashboards
        .iter()
        .find(|d| d.uid() == "tweetoscope-logs")
        .unwrap();
    let logs_panels = grafana::panels(&logs.json);
    assert!(
        logs_panels.iter().any(|p| p["type"] == "logs"
            && grafana::resolve_datasource(&logs.json, &p["datasource"])
                .is_some_and(|(_, uid)| uid == "loki")),
        "the logs dashboard has a Loki logs panel"
    );
    let names: BTreeSet<&str> = logs.json["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        names.contains("process") && names.contains("level"),
        "stage and level variables: {names:?}"
    );
}

#[test]
fn exported_series_cover_the_documented_families() {
    // Guards exported_series_names (and so the dashboard check) against a family that would not
    // appear: every documented family must be rendered.
    let names = exported_series_names();
    for family in [
        "tweetoscope_messages_consumed_total",
        "tweetoscope_messages_produced_total",
        "tweetoscope_malformed_messages_total",
        "tweetoscope_produce_failures_total",
        "tweetoscope_processing_seconds_bucket",
        "tweetoscope_consumer_lag_messages",
        "tweetoscope_consumer_stable_offset",
        "tweetoscope_consumer_unstable_messages",
        "tweetoscope_generator_tweets_total",
        "tweetoscope_collector_tweets_total",
        "tweetoscope_collector_open_cascades",
        "tweetoscope_collector_sources_ended_total",
        "tweetoscope_estimator_fit_seconds_count",
        "tweetoscope_estimator_fit_failures_total",
        "tweetoscope_predictor_are_bucket",
        "tweetoscope_predictor_predictions_total",
        "tweetoscope_predictor_join_evictions_total",
        "tweetoscope_predictor_join_pending",
        "tweetoscope_model_version",
        "tweetoscope_learner_training_samples",
        "tweetoscope_learner_growth_blended",
        "tweetoscope_learner_trainings_total",
        "tweetoscope_learner_trainings_superseded_total",
        "tweetoscope_dashboard_alerts_sent_total",
        "tweetoscope_dashboard_alert_failures_total",
        "tweetoscope_dashboard_alerts_handled_total",
        "tweetoscope_monitor_pushes_total",
        "tweetoscope_monitor_push_failures_total",
        "tweetoscope_logger_records_total",
        "tweetoscope_log_records_dropped_total",
        "tweetoscope_build_info",
        "tweetoscope_are_median",
        "tweetoscope_are_mean",
        "tweetoscope_are_last",
        "tweetoscope_are_hawkes_median",
        "tweetoscope_are_count",
        "tweetoscope_interval_coverage",
    ] {
        assert!(names.contains(family), "{family} not exported: {names:?}");
    }
}
