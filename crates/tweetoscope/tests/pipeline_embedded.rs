//! The whole pipeline on the in-process broker: a seeded synthetic replay where every
//! (cascade, window) that reached its window yields exactly one series, parameters, size, stat and
//! sample, and malformed input lands in the dead-letter topic without stopping anything.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tweetoscope::kafka::EmbeddedBroker;
use tweetoscope::metrics::Metrics;
use tweetoscope_messages::CascadeProperty;

type Pair = (String, u64);

/// The (cascade, window) pairs the pure collector emits on the same replay: the expected set.
fn expected_pairs(
    _common: &tweetoscope::config::KafkaArgs,
    run: &tweetoscope::config::RunArgs,
) -> BTreeSet<Pair> {
    tweetoscope::eval::collect_offline(&run.generator, run.cascade.collector_config())
        .expect("seeded replay")
        .series_pairs()
}

/// Runs the whole pipeline with `args` on a fresh embedded broker until it completes: the
/// topics, the broker (to read them), the expected (cascade, window) pairs and the summary.
async fn run_embedded(
    args: &[&str],
) -> (
    tweetoscope::config::TopicArgs,
    EmbeddedBroker,
    BTreeSet<Pair>,
    tweetoscope::run::RunSummary,
) {
    let (mut common, run) = common::run_options(args);
    let topics = common.topics.clone();
    let broker = EmbeddedBroker::start(&topics.all(), &topics.compacted(), 4).unwrap();
    common.brokers = Some(broker.bootstrap().to_owned());
    common.no_create_topics = true;
    let summary = tweetoscope::run::run_pipeline(&common, &run, Metrics::new(), None)
        .await
        .unwrap();
    assert!(summary.complete, "{}", summary.to_text());
    let expected = expected_pairs(&common, &run);
    (topics, broker, expected, summary)
}

fn count_pairs(pairs: impl IntoIterator<Item = Pair>) -> BTreeMap<Pair, usize> {
    let mut counts = BTreeMap::new();
    for p in pairs {
        *counts.entry(p).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeded_run_yields_exactly_one_of_each_per_cascade_window_and_dead_letters_bad_input() {
    let (mut common, run) = common::run_options(&[
        "--cascades",
        "60",
        "--sources",
        "2",
        "--seed",
        "5",
        "--stall-timeout",
        "30",
        "--retrain-every",
        "20",
        "--no-log-topic",
    ]);
    let topics = common.topics.clone();
    let broker = EmbeddedBroker::start(&topics.all(), &topics.compacted(), 4).unwrap();
    let brokers = broker.bootstrap().to_owned();
    common.brokers = Some(brokers.clone());
    common.no_create_topics = true;

    // Bad input, before and among the real tweets: not JSON, a wrong type, an unknown type.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let poison: [&[u8]; 3] = [
        b"{not json",
        br#"{"type":"retweet","t":"late","m":1,"tweet_id":1}"#,
        br#"{"type":"like","t":1,"m":1,"tweet_id":1}"#,
    ];
    for payload in poison {
        producer
            .send(
                FutureRecord::to(&topics.tweets_topic)
                    .key("source-0")
                    .payload(payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    producer
        .send(
            FutureRecord::to(&topics.series_topic)
                .key("x")
                .payload(&b"{\"type\":\"serie\"}"[..]),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    let metrics = Metrics::new();
    let summary = tweetoscope::run::run_pipeline(&common, &run, metrics.clone(), None)
        .await
        .unwrap();
    assert!(summary.complete, "{}", summary.to_text());

    let expected = expected_pairs(&common, &run);
    assert!(
        expected.len() > 40,
        "the replay should give a fair number of pairs, got {}",
        expected.len()
    );
    let once: BTreeMap<Pair, usize> = expected.iter().map(|p| (p.clone(), 1)).collect();

    let series = common::read_topic(&brokers, &topics.series_topic);
    // The one record that does not parse is the bad series this test injected.
    let (valid, invalid): (Vec<_>, Vec<_>) = series
        .iter()
        .map(|r| tweetoscope_messages::CascadeSeries::parse(&r.payload))
        .partition(Result::is_ok);
    assert_eq!(invalid.len(), 1);
    let series_pairs = valid.into_iter().map(|s| {
        let s = s.unwrap();
        (s.cid.0, s.t_obs)
    });
    assert_eq!(count_pairs(series_pairs), once, "series");

    let mut parameters = Vec::new();
    let mut sizes = Vec::new();
    for r in common::read_topic(&brokers, &topics.properties_topic) {
        let (window, property) =
            CascadeProperty::parse(r.key.as_deref().map(str::as_bytes), &r.payload).unwrap();
        assert_eq!(
            r.key,
            Some(window.to_string()),
            "cascade_properties are keyed by T_obs"
        );
        assert_eq!(
            r.partition,
            tweetoscope_messages::partition_for(&property.cid().0, 4),
            "partitioned by cid"
        );
        match property {
            CascadeProperty::Parameters(p) => {
                assert!(p.n_star < 1.0 && p.params[0] > 0.0 && p.params[1] > 0.0);
                parameters.push((p.cid.0, window));
            }
            CascadeProperty::Size(s) => sizes.push((s.cid.0, window)),
        }
    }
    assert_eq!(count_pairs(parameters), once, "parameters");
    assert_eq!(count_pairs(sizes), once, "sizes");

    let stats = common::read_topic(&brokers, &topics.stats_topic);
    for s in &stats {
        let are = s.json()["ARE"].as_f64().unwrap();
        assert!(are.is_finite() && are >= 0.0, "ARE {are}");
    }
    let stat_pairs = stats.iter().map(|r| {
        let v = r.json();
        (
            v["cid"].as_str().unwrap().to_owned(),
            v["T_obs"].as_u64().unwrap(),
        )
    });
    assert_eq!(count_pairs(stat_pairs), once, "stats");

    let samples = common::read_topic(&brokers, &topics.samples_topic);
    let sample_pairs = samples.iter().map(|r| {
        let v = r.json();
        assert_eq!(
            r.key.as_deref(),
            Some(v["T_obs"].to_string().as_str()),
            "samples keyed by T_obs"
        );
        (
            v["cid"].as_str().unwrap().to_owned(),
            v["T_obs"].as_u64().unwrap(),
        )
    });
    assert_eq!(count_pairs(sample_pairs), once, "samples");

    let alerts = common::read_topic(&brokers, &topics.alerts_topic);
    assert_eq!(alerts.len(), expected.len(), "one alert per prediction");
    // Predictions a forest corrected carry their 80 % interval, in alerts and stats alike;
    // the others carry none. (Replayed as fast as possible, most predictions come before the
    // first model; the predictor's unit tests check the intervals' values.)
    for records in [&alerts, &stats] {
        for r in records.iter() {
            let v = r.json();
            let corrected = v["model_version"].as_u64().unwrap() > 0;
            match (v.get("n_low"), v.get("n_high")) {
                (Some(lo), Some(hi)) => {
                    assert!(corrected, "an interval without a model: {v}");
                    assert!(lo.as_f64().unwrap() <= hi.as_f64().unwrap(), "{v}");
                }
                (None, None) => assert!(!corrected, "a corrected prediction without interval: {v}"),
                _ => panic!("one bound alone: {v}"),
            }
        }
    }
    assert!(
        summary.models_trained >= 1,
        "with --retrain-every 20 a model is trained"
    );
    assert_eq!(summary.expected_predictions as usize, expected.len());

    let dead = common::read_topic(&brokers, &format!("{}.dlq", topics.tweets_topic));
    let dead_payloads: Vec<&[u8]> = dead.iter().map(|r| r.payload.as_slice()).collect();
    assert_eq!(
        dead_payloads,
        poison.to_vec(),
        "bad tweets kept unchanged, in order"
    );
    assert!(dead.iter().all(|r| r.key.as_deref() == Some("source-0")));
    assert!(
        dead[0].headers["tweetoscope-error"].contains("line 1 column"),
        "{:?}",
        dead[0].headers
    );
    assert!(
        dead[1].headers["tweetoscope-error"].contains("invalid type"),
        "{:?}",
        dead[1].headers
    );
    assert_eq!(
        dead[0].headers["tweetoscope-origin"],
        format!("{}/{}/0", topics.tweets_topic, dead[0].partition)
    );
    assert!(dead[2].headers["tweetoscope-error"].contains("unknown `type`"));
    assert_eq!(dead[1].headers["tweetoscope-stage"], "collector");
    let dead_series = common::read_topic(&brokers, &format!("{}.dlq", topics.series_topic));
    assert_eq!(dead_series.len(), 1);
    assert_eq!(
        Metrics::count(&metrics.malformed, &["collector", &topics.tweets_topic]),
        3
    );
    assert_eq!(
        Metrics::count(&metrics.malformed, &["estimator", &topics.series_topic]),
        1
    );
    assert_eq!(summary.dead_letters, 4);
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_power_law_kernel_runs_through_every_stage() {
    let (topics, broker, expected, summary) = run_embedded(&[
        "--cascades",
        "30",
        "--sources",
        "2",
        "--seed",
        "9",
        "--kernel",
        "power-law",
        "--no-log-topic",
    ])
    .await;
    assert_eq!(summary.expected_predictions as usize, expected.len());
    let parameters: Vec<_> = common::read_topic(broker.bootstrap(), &topics.properties_topic)
        .into_iter()
        .filter_map(|r| {
            match CascadeProperty::parse(r.key.as_deref().map(str::as_bytes), &r.payload) {
                Ok((_, CascadeProperty::Parameters(p))) => Some(p),
                _ => None,
            }
        })
        .collect();
    assert_eq!(parameters.len(), expected.len());
    for p in &parameters {
        assert_eq!(p.kernel, tweetoscope_messages::KernelKind::PowerLaw);
        assert_eq!(p.params.len(), 4, "[K, beta, c, theta]");
        assert!(p.n_star <= 0.99, "n* {} above the cap", p.n_star);
    }
    let stats = common::read_topic(broker.bootstrap(), &topics.stats_topic);
    assert_eq!(stats.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_tideh_cascades_run_through_every_stage() {
    let dir = &format!("{}/../../../shared/data/tideh", common::manifest_dir());
    let (topics, broker, expected, _) = run_embedded(&[
        "--data",
        "tideh",
        "--data-dir",
        dir,
        "--cascades",
        "6",
        "--windows",
        "600,3600",
        "--terminated",
        "700000",
        "--no-log-topic",
    ])
    .await;
    assert_eq!(
        expected.len(),
        12,
        "6 cascades with ≥ 10 retweets in 10 minutes, 2 windows"
    );
    let stats = common::read_topic(broker.bootstrap(), &topics.stats_topic);
    let stat_pairs = stats.iter().map(|r| {
        let v = r.json();
        (
            v["cid"].as_str().unwrap().to_owned(),
            v["T_obs"].as_u64().unwrap(),
        )
    });
    let once: BTreeMap<Pair, usize> = expected.iter().map(|p| (p.clone(), 1)).collect();
    assert_eq!(count_pairs(stat_pairs), once, "stats");
    // The true sizes are the files' whole cascades, each exact duplicate line (same second,
    // same follower count) counted once, as the collector does.
    let files = tweetoscope_replay::files::tideh::read_dir(std::path::Path::new(dir)).unwrap();
    for r in &stats {
        let v = r.json();
        let index: usize = v["cid"].as_str().unwrap().parse::<usize>().unwrap() - 1;
        let distinct: BTreeSet<(u64, u64)> = files[index]
            .events
            .iter()
            .map(|(t, m)| (t.to_bits(), m.to_bits()))
            .collect();
        assert_eq!(v["n_tot"].as_u64(), Some(distinct.len() as u64), "{v}");
    }
}
