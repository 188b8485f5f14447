//! Collector stage: `tweets` → `cascade_series` (keyed by cid) and `cascade_properties` sizes
//! (keyed by `T_obs`, partitioned by cid).

use rdkafka::consumer::Consumer;
use rdkafka::Message;
use tweetoscope_cascade::{Collector, Emission, Outcome};
use tweetoscope_messages::{partition_for, to_payload, CascadeProperty, SourceRecord};

use super::{key_text, StageEnv};
use crate::config::CascadeArgs;
use crate::kafka::{process, Handled, LoopSettings, Outgoing, Sink};

const STAGE: &str = "collector";

/// Label of an outcome in `tweetoscope_collector_tweets_total`.
fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Started => "started",
        Outcome::Recorded => "recorded",
        Outcome::RecordedLate => "late",
        Outcome::Duplicate => "duplicate",
        Outcome::Orphan => "orphan",
        Outcome::BeforeStart => "before_start",
    }
}

/// Runs the collector until shutdown.
pub async fn run(env: StageEnv, args: CascadeArgs) -> anyhow::Result<()> {
    let producer = env.kafka.producer()?;
    let partitions = env
        .kafka
        .partitions_of(&producer, &env.topics.properties_topic)?;
    let consumer = env.kafka.consumer(STAGE, env.metrics.clone())?;
    consumer.subscribe(&[env.topics.tweets_topic.as_str()])?;
    let mut collector = Collector::new(args.collector_config());
    let metrics = env.metrics.clone();
    let topics = env.topics.clone();
    tracing::info!(windows = ?collector.config().windows, terminated = collector.config().terminated,
        min_cascade_size = collector.config().min_cascade_size, "collector started");
    let sink = Sink::new(producer, env.metrics.clone(), STAGE);
    process(
        LoopSettings::new(STAGE),
        consumer,
        sink,
        env.metrics.clone(),
        env.shutdown.clone(),
        move |message| {
            let source = key_text(message.key()).unwrap_or_else(|| "default".into());
            let record = match SourceRecord::parse(message.payload().unwrap_or_default()) {
                Ok(r) => r,
                Err(m) => return Handled::Malformed(m),
            };
            let mut emitted = Vec::new();
            match record {
                SourceRecord::Tweet(tweet) => {
                    let outcome = collector.on_tweet(&source, &tweet, &mut emitted);
                    metrics
                        .collector_tweets
                        .with_label_values(&[outcome_label(outcome)])
                        .inc();
                    if !matches!(outcome, Outcome::Started | Outcome::Recorded) {
                        tracing::debug!(source, cid = %tweet.tweet_id, t = tweet.t, outcome = outcome_label(outcome), "tweet not recorded as usual");
                    }
                }
                SourceRecord::End(end) => {
                    collector.on_end_of_source(&source, end.t, &mut emitted);
                    metrics.sources_ended.inc();
                    tracing::info!(source, t = end.t, "source ended; its cascades are flushed");
                }
            }
            metrics.open_cascades.set(collector.open_cascades() as i64);
            let records = emitted
                .into_iter()
                .map(|e| match e {
                    Emission::Series(s) => {
                        Outgoing::keyed(&topics.series_topic, s.cid.0.clone(), to_payload(&s))
                    }
                    Emission::Size(s) => {
                        let window = s.t_obs.unwrap_or_default();
                        let partition = partition_for(&s.cid.0, partitions);
                        Outgoing::keyed(
                            &topics.properties_topic,
                            window.to_string(),
                            to_payload(&CascadeProperty::Size(s)),
                        )
                        .on_partition(partition)
                    }
                })
                .collect();
            Handled::Now(records)
        },
    )
    .await
}
