//! Tweet sources of the generator, free of I/O but for reading data files.
//!
//! A *cascade source* yields whole cascades as `(time since the first tweet, magnitude)` lists:
//! [`news::NewsDataset`] reads the public NEWS data format, [`files::tideh`] and [`files::csv`]
//! directories of one file per cascade (TiDeH `RT<n>.txt`, `t,m` CSV), [`synthetic::SyntheticCascades`]
//! simulates marked Hawkes cascades with known parameters. A [`Replay`] deals those cascades to
//! several sources, each with its own clock, starts each cascade after a random delay with at most
//! K live cascades per source, and yields the tweets in event-time order (monotone per source),
//! ending each source with an end-of-source marker. Same seed, same replay.

pub mod files;
pub mod news;
pub mod synthetic;

pub use files::DataError;

use std::borrow::Cow;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use rand::{Rng, SeedableRng};
use tweetoscope_messages::{
    CascadeId, EndOfSource, EndTag, SourceRecord, SourceRecordRef, TweetKind, TweetRef,
};

/// One cascade to replay: times relative to its first tweet (sorted, first is 0) and magnitudes.
#[derive(Debug, Clone, PartialEq)]
pub struct CascadeEvents {
    /// `(t, m)` pairs.
    pub events: Vec<(f64, f64)>,
    /// Free text describing where the cascade comes from (goes into the tweets' `info`).
    pub origin: String,
    /// The time of day of the original tweet, as a fraction of a day, when the data set gives it
    /// (TiDeH files do): the phase of the daily rhythm of retweeting.
    pub day_phase: Option<f64>,
}

/// Settings of a multi-source replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayConfig {
    /// Number of sources, each with its own clock and key.
    pub sources: usize,
    /// At most this many cascades are live at once on one source.
    pub max_live_per_source: usize,
    /// Mean of the exponential delay between two cascade starts on one source, in seconds.
    pub mean_start_delay: f64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Id of the first cascade; the others follow.
    pub first_tweet_id: u64,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            sources: 3,
            max_live_per_source: 50,
            mean_start_delay: 30.0,
            seed: 42,
            first_tweet_id: 1,
        }
    }
}

/// One record of the replay, with the source it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayEvent {
    /// Index of the source, `0..sources`.
    pub source: usize,
    /// Time since the replay began, shared by every source: what pacing uses.
    pub elapsed: f64,
    /// The tweet, retweet or end-of-source marker; `t` is on the source's own clock.
    pub record: SourceRecord,
}

/// A [`ReplayEvent`] whose texts are borrowed from the replay (see [`Replay::next_record`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayRecord<'r> {
    /// Index of the source, `0..sources`.
    pub source: usize,
    /// Time since the replay began, shared by every source: what pacing uses.
    pub elapsed: f64,
    /// The tweet, retweet or end-of-source marker; `t` is on the source's own clock.
    pub record: SourceRecordRef<'r>,
}

impl ReplayRecord<'_> {
    /// The owned event.
    pub fn into_owned(self) -> ReplayEvent {
        ReplayEvent {
            source: self.source,
            elapsed: self.elapsed,
            record: self.record.into_owned(),
        }
    }
}

/// The `msg` of every tweet of the replay's cascade number `id`.
pub fn cascade_text(id: u64) -> String {
    format!("cascade {id}")
}

/// Name of source `index` (the record key on the `tweets` topic).
pub fn source_name(index: usize) -> String {
    format!("source-{index}")
}

#[derive(Debug)]
struct Pending {
    elapsed: f64,
    source: usize,
    seq: u64,
    kind: PendingKind,
}

#[derive(Debug)]
enum PendingKind {
    /// The next event of live cascade `slot`.
    Event { slot: usize, index: usize },
    /// Time for the source to start its next cascade.
    NextStart,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        self.elapsed
            .total_cmp(&other.elapsed)
            .then(self.source.cmp(&other.source))
            .then(self.seq.cmp(&other.seq))
    }
}

#[derive(Debug)]
struct LiveCascade {
    start: f64,
    cascade: CascadeEvents,
    /// The `tweet_id` and `msg` of its tweets, made once for all of them.
    tweet_id: CascadeId,
    msg: String,
}

#[derive(Debug)]
struct SourceClock {
    /// Source time when the replay began.
    origin: f64,
    /// End times (elapsed) of the live cascades.
    live_ends: BinaryHeap<Reverse<OrderedF64>>,
    /// Pending entries of this source in the queue.
    queued: usize,
    last_t: f64,
    ended: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedF64(f64);
impl Eq for OrderedF64 {}
impl PartialOrd for OrderedF64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrderedF64 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Multi-source event-time replay of a stream of cascades.
#[derive(Debug)]
pub struct Replay<I> {
    config: ReplayConfig,
    cascades: I,
    exhausted: bool,
    rng: rand::rngs::StdRng,
    queue: BinaryHeap<Reverse<Pending>>,
    sources: Vec<SourceClock>,
    slots: Vec<Option<LiveCascade>>,
    free_slots: Vec<usize>,
    next_id: u64,
    seq: u64,
    /// End-of-source markers due: source, elapsed time, marker.
    ends: Vec<(usize, f64, EndOfSource)>,
    /// The slot of a cascade whose last tweet was the last record given: freed at the next one
    /// (that record borrows its texts).
    retiring: Option<usize>,
}

impl<I: Iterator<Item = CascadeEvents>> Replay<I> {
    /// A replay of `cascades` under `config`.
    ///
    /// # Panics
    /// If `config.sources` or `config.max_live_per_source` is zero (validated by the caller).
    pub fn new(config: ReplayConfig, cascades: I) -> Self {
        assert!(config.sources > 0 && config.max_live_per_source > 0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
        let mut queue = BinaryHeap::new();
        let mut sources = Vec::with_capacity(config.sources);
        let mut seq = 0;
        for source in 0..config.sources {
            // Each source's clock reads some arbitrary time when the replay begins.
            let origin = 1_000.0 * rng.gen_range(1..1_000_000) as f64;
            let first = exponential(&mut rng, config.mean_start_delay);
            queue.push(Reverse(Pending {
                elapsed: first,
                source,
                seq,
                kind: PendingKind::NextStart,
            }));
            seq += 1;
            sources.push(SourceClock {
                origin,
                live_ends: BinaryHeap::new(),
                queued: 1,
                last_t: origin,
                ended: false,
            });
        }
        Self {
            next_id: config.first_tweet_id,
            config,
            cascades,
            exhausted: false,
            rng,
            queue,
            sources,
            slots: Vec::new(),
            free_slots: Vec::new(),
            seq,
            ends: Vec::new(),
            retiring: None,
        }
    }

    fn push(&mut self, elapsed: f64, source: usize, kind: PendingKind) {
        self.seq += 1;
        self.sources[source].queued += 1;
        self.queue.push(Reverse(Pending {
            elapsed,
            source,
            seq: self.seq,
            kind,
        }));
    }

    /// Tweet `index` of the cascade in `slot`, sent by `source` at `elapsed`, borrowing the
    /// cascade's texts.
    fn record_of(
        &self,
        source: usize,
        elapsed: f64,
        slot: usize,
        index: usize,
    ) -> ReplayRecord<'_> {
        let live = self.slots[slot].as_ref().expect("live slot");
        let (_, m) = live.cascade.events[index];
        ReplayRecord {
            source,
            elapsed,
            record: SourceRecordRef::Tweet(TweetRef {
                kind: if index == 0 {
                    TweetKind::Tweet
                } else {
                    TweetKind::Retweet
                },
                msg: Cow::Borrowed(&live.msg),
                t: self.sources[source].origin + elapsed,
                m,
                tweet_id: Cow::Borrowed(&live.tweet_id.0),
                info: Cow::Borrowed(&live.cascade.origin),
            }),
        }
    }

    /// Tweet `index` of the cascade in `slot` is sent at `elapsed`: the source's clock moves
    /// there and the cascade's next tweet is scheduled.
    fn send(&mut self, source: usize, elapsed: f64, slot: usize, index: usize) {
        let n = self.slots[slot]
            .as_ref()
            .expect("live slot")
            .cascade
            .events
            .len();
        self.sources[source].last_t = self.sources[source].origin + elapsed;
        self.after_event(source, slot, index, n);
    }

    /// Starts the source's next cascade (its slot: its first tweet is sent now), if any is left.
    fn start_next(&mut self, source: usize, now: f64) -> Option<usize> {
        if self.exhausted {
            return None;
        }
        let Some(cascade) = self.cascades.next() else {
            self.exhausted = true;
            return None;
        };
        if cascade.events.is_empty() {
            return self.start_next(source, now);
        }
        let duration = cascade.events.last().map_or(0.0, |e| e.0);
        let id = self.next_id;
        self.next_id += 1;
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.slots[slot] = Some(LiveCascade {
            start: now,
            cascade,
            tweet_id: CascadeId(id.to_string()),
            msg: cascade_text(id),
        });
        let clock = &mut self.sources[source];
        clock.live_ends.push(Reverse(OrderedF64(now + duration)));
        // The next start comes after a random delay, and not before a live slot is free.
        let mut next = now + exponential(&mut self.rng, self.config.mean_start_delay);
        let clock = &mut self.sources[source];
        while let Some(&Reverse(OrderedF64(end))) = clock.live_ends.peek() {
            if end <= next {
                clock.live_ends.pop();
            } else if clock.live_ends.len() >= self.config.max_live_per_source {
                next = end;
                clock.live_ends.pop();
            } else {
                break;
            }
        }
        self.push(next, source, PendingKind::NextStart);
        self.send(source, now, slot, 0);
        Some(slot)
    }

    fn after_event(&mut self, source: usize, slot: usize, index: usize, n: usize) {
        if index + 1 < n {
            let live = self.slots[slot].as_ref().expect("live slot");
            let at = live.start + live.cascade.events[index + 1].0;
            self.push(
                at,
                source,
                PendingKind::Event {
                    slot,
                    index: index + 1,
                },
            );
        } else {
            // Freed once the record of this last tweet is no longer borrowed.
            debug_assert!(self.retiring.is_none());
            self.retiring = Some(slot);
        }
    }

    fn end_source_if_done(&mut self, source: usize, elapsed: f64) {
        let clock = &mut self.sources[source];
        if clock.queued == 0 && !clock.ended {
            clock.ended = true;
            let end = EndOfSource {
                kind: EndTag::End,
                t: clock.last_t,
            };
            self.ends.push((source, elapsed, end));
        }
    }
}

impl<I: Iterator<Item = CascadeEvents>> Replay<I> {
    /// The next record, its texts borrowed from the replay (the generator writes it without a
    /// copy of them); the [`Iterator`] gives the same records owned.
    pub fn next_record(&mut self) -> Option<ReplayRecord<'_>> {
        if let Some(slot) = self.retiring.take() {
            self.slots[slot] = None;
            self.free_slots.push(slot);
        }
        loop {
            if let Some((source, elapsed, end)) = self.ends.pop() {
                return Some(ReplayRecord {
                    source,
                    elapsed,
                    record: SourceRecordRef::End(end),
                });
            }
            let Reverse(pending) = self.queue.pop()?;
            let source = pending.source;
            self.sources[source].queued -= 1;
            let sent = match pending.kind {
                PendingKind::NextStart => self
                    .start_next(source, pending.elapsed)
                    .map(|slot| (slot, 0)),
                PendingKind::Event { slot, index } => {
                    self.send(source, pending.elapsed, slot, index);
                    Some((slot, index))
                }
            };
            self.end_source_if_done(source, pending.elapsed);
            if let Some((slot, index)) = sent {
                return Some(self.record_of(source, pending.elapsed, slot, index));
            }
        }
    }
}

impl<I: Iterator<Item = CascadeEvents>> Iterator for Replay<I> {
    type Item = ReplayEvent;

    fn next(&mut self) -> Option<ReplayEvent> {
        self.next_record().map(ReplayRecord::into_owned)
    }
}

/// Exponential draw with the given mean (0 gives 0).
fn exponential<R: Rng>(rng: &mut R, mean: f64) -> f64 {
    if mean <= 0.0 {
        return 0.0;
    }
    let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    -mean * u.ln()
}

#[cfg(test)]
mod tests;

/// This package's directory, as cargo gives it to the running test: a test binary built in a
/// target directory that several checkouts share reads the files of the checkout it runs for
/// (the path compiled in is the fallback).
#[cfg(test)]
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}
