//! Generator stage: replays cascades onto `tweets`, keyed by source, paced by event time.
//! The replay is computed on a worker thread and handed over through a bounded channel.

use std::time::{Duration, Instant};

use tweetoscope_messages::SourceRecordRef;
use tweetoscope_replay::{source_name, Replay};

use super::StageEnv;
use crate::config::GeneratorArgs;
use crate::kafka::{Outgoing, Sink};

const STAGE: &str = "generator";

/// Events per transaction of the generator (a transaction also commits after 500 ms). Larger
/// transactions mean fewer commit round trips: `bench --tweets 1000000` moved from 29,383-36,305
/// tweets/s with 5,000 to 52,103-69,006 with 20,000 (BENCHMARKS.md). A restarted generator redoes
/// at most one uncommitted transaction, and the embedded broker's back-pressure (50,000 tweets
/// ahead) stays above it.
pub const EVENTS_PER_TRANSACTION: u64 = 20_000;

/// Tweets whose delivery the generator waits for at most before it sends more.
const MAX_DELIVERIES_IN_FLIGHT: u64 = 100_000;

/// Events the replay thread may prepare ahead of the generator.
const REPLAY_EVENTS_AHEAD: usize = 8_192;
/// Events handed from the replay thread to the generator at a time.
const REPLAY_CHUNK: usize = 256;

/// Replay events as the replay thread hands them to the generator: written as payloads already,
/// one after another in one buffer (one allocation per chunk, not a record and its texts per
/// tweet).
#[derive(Debug, Default)]
struct EncodedChunk {
    payloads: Vec<u8>,
    events: Vec<EncodedEvent>,
}

/// One event of an [`EncodedChunk`]; its payload ends at `end` in the chunk's buffer, where the
/// previous one's ends.
#[derive(Debug, Clone, Copy)]
struct EncodedEvent {
    source: usize,
    elapsed: f64,
    tweet: bool,
    end: usize,
}

impl EncodedChunk {
    /// The next `REPLAY_CHUNK` events of `replay` (fewer at its end; none once it is over).
    fn next_of<I: Iterator<Item = tweetoscope_replay::CascadeEvents>>(
        replay: &mut Replay<I>,
    ) -> Self {
        let mut chunk = EncodedChunk {
            payloads: Vec::with_capacity(REPLAY_CHUNK * 160),
            events: Vec::with_capacity(REPLAY_CHUNK),
        };
        while chunk.events.len() < REPLAY_CHUNK {
            let Some(event) = replay.next_record() else {
                break;
            };
            event.record.write_payload(&mut chunk.payloads);
            chunk.events.push(EncodedEvent {
                source: event.source,
                elapsed: event.elapsed,
                tweet: matches!(event.record, SourceRecordRef::Tweet(_)),
                end: chunk.payloads.len(),
            });
        }
        chunk
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeneratorReport {
    /// Tweets and retweets sent.
    pub tweets: u64,
    /// Tweets and retweets of the replay committed by an earlier run of the same replay, which
    /// this one resumed after (not sent again).
    pub resumed: u64,
    /// End-of-source markers sent.
    pub sources_ended: u64,
    /// Records the producer refused or could not deliver.
    pub failed: u64,
    /// Wall time of the replay.
    pub seconds: f64,
}

/// The name of a replay: `--replay-id`, or a hash of what determines the replayed sequence.
pub fn replay_id(args: &GeneratorArgs) -> String {
    args.replay_id.clone().unwrap_or_else(|| {
        let canonical = format!(
            "{:?}|{:?}|{:?}|{}{:?}|{}|{}|{}|{}|{}",
            args.data,
            args.news_index,
            args.news_data,
            // Absent for the older sources, so their replay ids do not change.
            args.data_dir
                .as_ref()
                .map_or(String::new(), |d| format!("{}|", d.display())),
            args.size_index,
            args.cascades,
            args.sources,
            args.max_live,
            args.mean_start_delay,
            args.seed
        );
        format!(
            "replay-{:016x}",
            tweetoscope_messages::stable_hash(canonical.as_bytes())
        )
    })
}

/// Progress of a replay, as recorded on the progress topic.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Replay events (tweets and end markers) committed.
    pub events: u64,
    /// Whether the replay finished.
    pub done: bool,
}

/// The committed progress of replay `id` (blocking).
fn read_progress(env: &StageEnv, id: &str) -> anyhow::Result<Option<Progress>> {
    let records = env
        .kafka
        .read_partition(&env.topics.generator_progress_topic, 0)?;
    Ok(records
        .into_iter()
        .rev()
        .filter(|(k, _)| k.as_deref() == Some(id.as_bytes()))
        .find_map(|(_, v)| serde_json::from_slice(&v?).ok()))
}

/// Commits the open transaction with a progress record, and opens the next one.
async fn commit_progress(
    sink: &Sink,
    env: &StageEnv,
    id: &str,
    progress: Progress,
    last: bool,
) -> anyhow::Result<()> {
    let record = Outgoing::keyed(
        &env.topics.generator_progress_topic,
        id,
        serde_json::to_vec(&progress)?,
    )
    .on_partition(0);
    sink.commit_transaction_with(record, !last).await
}

/// Replays everything, then returns; stops early on shutdown. With transactions, the tweets are
/// committed in batches together with the replay's progress, and a restarted generator skips
/// what was committed: the topic receives the replay exactly once.
pub async fn run(env: StageEnv, args: GeneratorArgs) -> anyhow::Result<GeneratorReport> {
    run_paced(env, args, None, None).await
}

/// Paces a replay that would otherwise go as fast as possible at `speed_up` over event time until
/// `until` turns true (in `run`: until the predictor has a model for every window).
#[derive(Debug, Clone)]
pub struct WarmUp {
    /// Event seconds replayed per second of wall time meanwhile.
    pub speed_up: f64,
    /// Turns true when the warm-up is over.
    pub until: tokio::sync::watch::Receiver<bool>,
}

/// Keeps the generator at most `max_ahead` tweets ahead of the collector of the same process.
///
/// The embedded broker (librdkafka's mock cluster) keeps at most 100,000 message sets (producer
/// batches) or 5 MiB per partition and silently drops the oldest: a replay that outruns the
/// collector would lose tweets.
#[derive(Debug, Clone, Copy)]
pub struct Backpressure {
    /// Largest number of tweets produced but not yet consumed by the collector.
    pub max_ahead: u64,
}

/// The speed-up to replay the next event at (0: as fast as possible): `--speed-up` when set,
/// else the warm-up's until it is over.
fn pace(speed_up: f64, warm_up: Option<&WarmUp>) -> f64 {
    match warm_up {
        _ if speed_up > 0.0 => speed_up,
        Some(w) if !*w.until.borrow() => w.speed_up,
        _ => 0.0,
    }
}

/// [`run`], optionally holding back when the collector lags, and paced during a [`WarmUp`] when
/// `--speed-up` does not pace it.
pub async fn run_paced(
    env: StageEnv,
    args: GeneratorArgs,
    backpressure: Option<Backpressure>,
    warm_up: Option<WarmUp>,
) -> anyhow::Result<GeneratorReport> {
    let cascades = args.cascade_events()?;
    let config = args.replay_config();
    let transactional = env.kafka.transactions;
    let id = replay_id(&args);
    let sink = Sink::new(env.kafka.stage_producer(STAGE, &env.metrics).await?);
    let resume_from = if transactional {
        let found = tokio::task::block_in_place(|| read_progress(&env, &id))?;
        if let Some(p) = found {
            if p.done {
                tracing::warn!(replay = %id, events = p.events, "this replay was already completed: nothing to send (give another --replay-id to replay again)");
            } else {
                tracing::info!(replay = %id, events = p.events, "resuming the replay after its committed part");
            }
        }
        found.map_or(0, |p| p.events)
    } else {
        0
    };
    if transactional {
        sink.begin_transaction()?;
    }
    // The replay runs on a thread of its own, writes the payloads and hands them over in chunks:
    // one channel operation (and at most one wake-up) per chunk, not per tweet.
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<EncodedChunk>(REPLAY_EVENTS_AHEAD / REPLAY_CHUNK);
    let producer_thread = std::thread::Builder::new()
        .name("replay".into())
        .spawn(move || {
            let mut replay = Replay::new(config, cascades);
            loop {
                let chunk = EncodedChunk::next_of(&mut replay);
                if chunk.events.is_empty() || tx.blocking_send(chunk).is_err() {
                    break;
                }
            }
        })?;
    tracing::info!(data = ?args.data, cascades = args.cascades, sources = args.sources, speed_up = args.speed_up, seed = args.seed, replay = %id, "generator started");
    let started = Instant::now();
    let mut report = GeneratorReport::default();
    let mut shutdown = env.shutdown.clone();
    let names: Vec<String> = (0..args.sources as usize).map(source_name).collect();
    let topic = env.topics.tweets_topic.clone();
    // Counters resolved once, not looked up by label for every tweet.
    let tweets_sent: Vec<prometheus::IntCounter> = names
        .iter()
        .map(|name| env.metrics.generator_tweets.with_label_values(&[name]))
        .collect();
    let collector_consumed = env
        .metrics
        .consumed
        .with_label_values(&["collector", &topic]);
    let mut index: u64 = 0;
    let mut last_commit = Instant::now();
    let mut finished = true;
    let mut chunk = EncodedChunk::default();
    let (mut next_in_chunk, mut payload_start) = (0, 0);
    loop {
        if next_in_chunk == chunk.events.len() {
            match rx.recv().await {
                Some(next) => {
                    (chunk, next_in_chunk, payload_start) = (next, 0, 0);
                    continue;
                }
                None => break,
            }
        }
        let event = chunk.events[next_in_chunk];
        let payload = &chunk.payloads[payload_start..event.end];
        (next_in_chunk, payload_start) = (next_in_chunk + 1, event.end);
        if *shutdown.borrow() {
            finished = false;
            break;
        }
        index += 1;
        if index <= resume_from {
            if event.tweet {
                report.resumed += 1;
            }
            continue;
        }
        let speed_up = pace(args.speed_up, warm_up.as_ref());
        if speed_up > 0.0 {
            let due = Duration::from_secs_f64(event.elapsed / speed_up);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => { finished = false; break; }
                }
            }
        }
        if event.tweet {
            report.tweets += 1;
            tweets_sent[event.source].inc();
        } else {
            report.sources_ended += 1;
        }
        if let Some(b) = backpressure {
            while index.saturating_sub(resume_from) > collector_consumed.get() + b.max_ahead {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if *shutdown.borrow() {
                    break;
                }
            }
        }
        sink.enqueue_keyed(&topic, &names[event.source], payload)
            .await;
        while sink.in_flight() > MAX_DELIVERIES_IN_FLIGHT {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if transactional
            && (index.is_multiple_of(EVENTS_PER_TRANSACTION)
                || last_commit.elapsed() > Duration::from_millis(500))
        {
            commit_progress(
                &sink,
                &env,
                &id,
                Progress {
                    events: index,
                    done: false,
                },
                false,
            )
            .await?;
            last_commit = Instant::now();
        }
    }
    drop(rx);
    if transactional {
        commit_progress(
            &sink,
            &env,
            &id,
            Progress {
                events: index.max(resume_from),
                done: finished,
            },
            true,
        )
        .await?;
    }
    sink.settled().await;
    report.failed = sink.failures_total();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_thread_hands_over_every_event_with_the_payload_of_its_record() {
        let replay = || {
            let cascades = tweetoscope_replay::synthetic::SyntheticCascades::new(
                tweetoscope_replay::synthetic::SyntheticConfig {
                    cascades: 200,
                    ..Default::default()
                },
            );
            Replay::new(Default::default(), cascades)
        };
        let expected: Vec<_> = replay().collect();
        let mut lending = replay();
        let mut handed = Vec::new();
        loop {
            let chunk = EncodedChunk::next_of(&mut lending);
            if chunk.events.is_empty() {
                break;
            }
            assert!(chunk.events.len() <= REPLAY_CHUNK);
            let mut start = 0;
            for e in &chunk.events {
                handed.push((
                    e.source,
                    e.elapsed,
                    e.tweet,
                    chunk.payloads[start..e.end].to_vec(),
                ));
                start = e.end;
            }
        }
        assert!(expected.len() > REPLAY_CHUNK, "several chunks");
        assert_eq!(handed.len(), expected.len());
        for (e, (source, elapsed, tweet, payload)) in expected.iter().zip(handed) {
            assert_eq!((e.source, e.elapsed), (source, elapsed));
            assert_eq!(
                matches!(e.record, tweetoscope_messages::SourceRecord::Tweet(_)),
                tweet
            );
            assert_eq!(e.record.to_payload(), payload);
        }
    }

    #[test]
    fn a_warm_up_paces_the_replay_until_it_is_over_and_speed_up_wins() {
        let (over, until) = tokio::sync::watch::channel(false);
        let warm_up = WarmUp {
            speed_up: 10_000.0,
            until,
        };
        assert_eq!(pace(0.0, None), 0.0, "as fast as possible");
        assert_eq!(pace(0.0, Some(&warm_up)), 10_000.0);
        assert_eq!(
            pace(500.0, Some(&warm_up)),
            500.0,
            "--speed-up paces it all"
        );
        over.send(true).expect("receiver alive");
        assert_eq!(pace(0.0, Some(&warm_up)), 0.0, "then as fast as possible");
        assert_eq!(pace(500.0, Some(&warm_up)), 500.0);
    }
}
