//! Per-tweet cost of the collector on a synthetic multi-source replay (windows 600 and 1200 s):
//! its logic alone, then with each `tweets` payload parsed first, into an owned record (as the
//! collector stage did) and into one that borrows its texts from the payload (as it does now).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_main, BatchSize, Criterion, Throughput};
use tweetoscope_cascade::{Collector, CollectorConfig, Emission};
use tweetoscope_messages::{SourceRecord, SourceRecordRef};
use tweetoscope_replay::synthetic::{SyntheticCascades, SyntheticConfig};
use tweetoscope_replay::{source_name, Replay, ReplayConfig};

fn collector(c: &mut Criterion) {
    let cascades = SyntheticCascades::new(SyntheticConfig {
        cascades: 300,
        target_sizes: vec![50, 90, 200, 1_000],
        seed: 3,
        ..SyntheticConfig::default()
    });
    let events: Vec<(String, SourceRecord)> = Replay::new(ReplayConfig::default(), cascades)
        .map(|e| (source_name(e.source), e.record))
        .collect();
    let tweets = events
        .iter()
        .filter(|e| matches!(e.1, SourceRecord::Tweet(_)))
        .count();
    let mut group = c.benchmark_group("collector");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(tweets as u64));
    group.bench_function(format!("replay of {tweets} tweets"), |b| {
        b.iter_batched(
            || Collector::new(CollectorConfig::default()),
            |mut collector| {
                let mut out = Vec::new();
                for (source, record) in &events {
                    match record {
                        SourceRecord::Tweet(t) => {
                            collector.on_tweet(source, t, &mut out);
                        }
                        SourceRecord::End(e) => collector.on_end_of_source(source, e.t, &mut out),
                    }
                    out.clear();
                }
                black_box(collector.open_cascades())
            },
            BatchSize::LargeInput,
        );
    });
    let payloads: Vec<(&str, Vec<u8>)> = events
        .iter()
        .map(|(source, record)| (source.as_str(), record.to_payload()))
        .collect();
    let mut parsed_then_fed =
        |how: &str, feed: fn(&mut Collector, &str, &[u8], &mut Vec<Emission>)| {
            group.bench_function(format!("{tweets} payloads parsed {how}"), |b| {
                b.iter_batched(
                    || Collector::new(CollectorConfig::default()),
                    |mut collector| {
                        let mut out = Vec::new();
                        for (source, payload) in &payloads {
                            feed(&mut collector, source, payload, &mut out);
                            out.clear();
                        }
                        black_box(collector.open_cascades())
                    },
                    BatchSize::LargeInput,
                );
            });
        };
    parsed_then_fed(
        "owned",
        |collector, source, payload, out| match SourceRecord::parse(payload)
            .expect("a valid payload")
        {
            SourceRecord::Tweet(t) => {
                collector.on_tweet(source, &t, out);
            }
            SourceRecord::End(e) => collector.on_end_of_source(source, e.t, out),
        },
    );
    parsed_then_fed(
        "borrowed",
        |collector, source, payload, out| match SourceRecordRef::parse(payload)
            .expect("a valid payload")
        {
            SourceRecordRef::Tweet(t) => {
                collector.on_tweet(source, t, out);
            }
            SourceRecordRef::End(e) => collector.on_end_of_source(source, e.t, out),
        },
    );
    group.finish();
}

mod group {
    // The function criterion_group! defines has no doc comment.
    #![allow(missing_docs)]
    criterion::criterion_group!(benches, super::collector);
}
criterion_main!(group::benches);
