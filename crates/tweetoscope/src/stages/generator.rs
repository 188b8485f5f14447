//! Generator stage: replays cascades onto `tweets`, keyed by source, paced by event time.
//! The replay is computed on a worker thread and handed over through a bounded channel.

use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tweetoscope_replay::news::{parse_index, NewsDataset};
use tweetoscope_replay::synthetic::{SyntheticCascades, SyntheticConfig};
use tweetoscope_replay::{source_name, CascadeEvents, Replay, ReplayConfig, ReplayEvent};

use super::StageEnv;
use crate::config::{DataSource, GeneratorArgs};
use crate::kafka::{Outgoing, Sink};

const STAGE: &str = "generator";

/// The real NEWS index bundled with the program: synthetic sizes follow it by default.
pub const BUNDLED_INDEX: &str = include_str!("../../../../data/news-index.csv");

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeneratorReport {
    /// Tweets and retweets sent.
    pub tweets: u64,
    /// End-of-source markers sent.
    pub sources_ended: u64,
    /// Records whose delivery failed.
    pub failed: u64,
    /// Wall time of the replay.
    pub seconds: f64,
}

/// The cascades the options describe.
pub fn cascades(
    args: &GeneratorArgs,
) -> anyhow::Result<Box<dyn Iterator<Item = CascadeEvents> + Send>> {
    match args.data {
        DataSource::Synthetic => Ok(Box::new(SyntheticCascades::new(synthetic_config(args)?))),
        DataSource::News => {
            let (Some(index), Some(data)) = (&args.news_index, &args.news_data) else {
                anyhow::bail!("--data news needs --news-index and --news-data");
            };
            let set = NewsDataset::load(index, data)?;
            let take = if args.cascades == 0 {
                set.len()
            } else {
                args.cascades.min(set.len())
            };
            Ok(Box::new((0..take).map(move |i| set.cascade(i))))
        }
    }
}

/// The synthetic source the options describe (sizes follow `--size-index` or the bundled index).
pub fn synthetic_config(args: &GeneratorArgs) -> anyhow::Result<SyntheticConfig> {
    let target_sizes = match &args.size_index {
        Some(path) => tweetoscope_replay::news::index_sizes(path)?,
        None => parse_index(BUNDLED_INDEX, "bundled news-index.csv")?
            .into_iter()
            .map(|(s, e)| e - s)
            .collect(),
    };
    Ok(SyntheticConfig {
        cascades: args.cascades,
        target_sizes,
        seed: args.seed,
        ..SyntheticConfig::default()
    })
}

/// The replay settings the options give.
pub fn replay_config(args: &GeneratorArgs) -> ReplayConfig {
    ReplayConfig {
        sources: args.sources as usize,
        max_live_per_source: args.max_live as usize,
        mean_start_delay: args.mean_start_delay,
        seed: args.seed,
        first_tweet_id: 1,
    }
}

/// Replays everything, then returns; stops early on shutdown.
pub async fn run(env: StageEnv, args: GeneratorArgs) -> anyhow::Result<GeneratorReport> {
    let cascades = cascades(&args)?;
    let config = replay_config(&args);
    let sink = Sink::new(env.kafka.producer()?, env.metrics.clone(), STAGE);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ReplayEvent>(8_192);
    let producer_thread = std::thread::Builder::new()
        .name("replay".into())
        .spawn(move || {
            for event in Replay::new(config, cascades) {
                if tx.blocking_send(event).is_err() {
                    break;
                }
            }
        })?;
    tracing::info!(data = ?args.data, cascades = args.cascades, sources = args.sources, speed_up = args.speed_up, seed = args.seed, "generator started");
    let started = Instant::now();
    let mut report = GeneratorReport::default();
    let mut deliveries = FuturesUnordered::new();
    let mut shutdown = env.shutdown.clone();
    let names: Vec<String> = (0..args.sources as usize).map(source_name).collect();
    let topic = env.topics.tweets_topic.clone();
    while let Some(event) = rx.recv().await {
        if *shutdown.borrow() {
            break;
        }
        if args.speed_up > 0.0 {
            let due = Duration::from_secs_f64(event.elapsed / args.speed_up);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => break,
                }
            }
        }
        match &event.record {
            tweetoscope_messages::SourceRecord::Tweet(_) => {
                report.tweets += 1;
                env.metrics
                    .generator_tweets
                    .with_label_values(&[&names[event.source]])
                    .inc();
            }
            tweetoscope_messages::SourceRecord::End(_) => report.sources_ended += 1,
        }
        let record = Outgoing::keyed(
            &topic,
            names[event.source].clone(),
            event.record.to_payload(),
        );
        deliveries.push(sink.enqueue(record).await);
        while deliveries.len() > 100_000 {
            if deliveries.next().await == Some(false) {
                report.failed += 1;
            }
        }
    }
    drop(rx);
    while let Some(ok) = deliveries.next().await {
        if !ok {
            report.failed += 1;
        }
    }
    let _ = producer_thread.join();
    report.seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        tweets = report.tweets,
        seconds = report.seconds,
        failed = report.failed,
        "replay finished"
    );
    Ok(report)
}
