//! Event-time cascade state machine of the collector, free of I/O.
//!
//! Each source has its own clock: the largest event time it has sent. A cascade starts at its
//! original tweet. When the source clock reaches `start + T_obs` for a window not yet handled, the
//! partial series (events with time < `start + T_obs`) is emitted for that window, provided it holds
//! at least `min_cascade_size` tweets. A cascade is over once the clock passes its last event by
//! more than its quiet limit, `max(terminated, terminated_age_ratio × (last − start))`: a cascade
//! that has lived for hours must stay quiet for about as long before it counts as ended, so the
//! nightly lulls of a multi-day cascade do not end it (see [`CollectorConfig::quiet_limit`]). Then
//! windows not reached yet are handled with everything observed, then one `size` is emitted per
//! window whose series was emitted, and the cascade is dropped from memory. An end-of-source marker
//! (or [`Collector::flush_all`]) does the same for every open cascade.
//!
//! The wall clock is never read: the same input always gives the same output.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use tweetoscope_messages::{CascadeId, CascadeSeries, CascadeSize, TweetKind, TweetRef};

/// Settings of the collector.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectorConfig {
    /// Observation windows in seconds, e.g. `[600, 1200]`.
    pub windows: Vec<u64>,
    /// Idle time in seconds after which a cascade is over, at least (see `terminated_age_ratio`).
    pub terminated: f64,
    /// A cascade's quiet limit also grows with its age: it is over after
    /// `max(terminated, terminated_age_ratio × age)` seconds without a retweet, where age is the
    /// time from its original tweet to its last retweet. 1 by default ("as long again as it has
    /// lived"); 0 gives the fixed `terminated` rule of the classic course.
    pub terminated_age_ratio: f64,
    /// Minimum number of tweets in a window's series for anything to be emitted for that window.
    pub min_cascade_size: usize,
    /// How many ids of finished cascades each source remembers, to ignore late duplicates of them.
    pub remembered_finished: usize,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            windows: vec![600, 1200],
            terminated: 1800.0,
            terminated_age_ratio: 1.0,
            min_cascade_size: 10,
            remembered_finished: 100_000,
        }
    }
}

impl CollectorConfig {
    /// Seconds without a retweet after which a cascade that started at `start` and whose last
    /// event is at `last` is over: `max(terminated, terminated_age_ratio × (last − start))`.
    pub fn quiet_limit(&self, start: f64, last: f64) -> f64 {
        self.terminated
            .max(self.terminated_age_ratio * (last - start))
    }

    /// The event time after which `cascade` is over: its last event plus its quiet limit.
    fn end_after(&self, cascade: &OpenCascade) -> f64 {
        cascade.last + self.quiet_limit(cascade.start, cascade.last)
    }
}

/// Something the collector emits.
#[derive(Debug, Clone, PartialEq)]
pub enum Emission {
    /// A partial series for one window (topic `cascade_series`).
    Series(CascadeSeries),
    /// The final size of a cascade for one window (topic `cascade_properties`, key `T_obs`).
    Size(CascadeSize),
}

/// What became of one incoming tweet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An original tweet started a new cascade.
    Started,
    /// A retweet was added to its cascade.
    Recorded,
    /// A retweet arrived after the series of a window it belongs to was emitted: it counts in the
    /// final size but not in that series.
    RecordedLate,
    /// The same tweet was seen before (same cascade, time and magnitude); ignored.
    Duplicate,
    /// A retweet of a cascade that is unknown or already over; ignored.
    Orphan,
    /// A retweet dated before its original tweet; ignored.
    BeforeStart,
}

/// Total order on event times (they are validated finite upstream).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Time(f64);

impl Eq for Time {}

impl PartialOrd for Time {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Time {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowState {
    Pending,
    Sent,
    TooSmall,
}

#[derive(Debug)]
struct OpenCascade {
    cid: CascadeId,
    /// Opaque position of the original tweet in the input (e.g. its Kafka offset).
    position: u64,
    msg: String,
    start: f64,
    last: f64,
    /// Its key in [`SourceState::idle`]: the end time it had when that entry was made. Its
    /// retweets move its end later without moving the entry; [`SourceState::advance`] moves it
    /// when the clock passes it.
    idle_key: f64,
    /// Absolute event times and magnitudes, sorted by time.
    events: Vec<(f64, f64)>,
    windows: Vec<WindowState>,
}

/// State of one source: its clock and its open cascades.
#[derive(Debug, Default)]
struct SourceState {
    clock: f64,
    next_seq: u64,
    cascades: HashMap<u64, OpenCascade>,
    ids: HashMap<CascadeId, u64>,
    /// (start + T_obs, cascade, window index) of windows not handled yet.
    deadlines: BTreeSet<(Time, u64, usize)>,
    /// (a time the cascade is not over before, cascade): its `idle_key`, the end time it had
    /// when the entry was made (a retweet moves its end later, not the entry, so that a retweet
    /// costs no tree operation). Every end time is at or after its entry's, so the first entry is
    /// the next cascade that may end.
    idle: BTreeSet<(Time, u64)>,
    finished: HashSet<CascadeId>,
    /// Remembered finished cascades, oldest first, with the positions of their original tweets.
    finished_order: VecDeque<(CascadeId, u64)>,
}

/// The collector: per-source cascades driven by event time.
#[derive(Debug)]
pub struct Collector {
    config: CollectorConfig,
    sources: HashMap<String, SourceState>,
}

/// The state of `source`, made empty the first time it is seen; its name is copied only then.
fn source_state<'a>(
    sources: &'a mut HashMap<String, SourceState>,
    source: &str,
) -> &'a mut SourceState {
    if !sources.contains_key(source) {
        sources.insert(source.to_owned(), SourceState::default());
    }
    sources.get_mut(source).expect("inserted above")
}

impl Collector {
    /// A collector with no open cascade.
    pub fn new(config: CollectorConfig) -> Self {
        Self {
            config,
            sources: HashMap::new(),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &CollectorConfig {
        &self.config
    }

    /// Number of cascades held in memory, over all sources.
    pub fn open_cascades(&self) -> usize {
        self.sources.values().map(|s| s.cascades.len()).sum()
    }

    /// Number of sources with state in memory.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Feeds one tweet of `source` (a [`tweetoscope_messages::Tweet`] or a [`TweetRef`]); what it
    /// triggers is appended to `out`.
    pub fn on_tweet<'t>(
        &mut self,
        source: &str,
        tweet: impl Into<TweetRef<'t>>,
        out: &mut Vec<Emission>,
    ) -> Outcome {
        self.on_tweet_at(source, tweet, 0, out)
    }

    /// Like [`Collector::on_tweet`], recording `position` (e.g. the Kafka offset) as where the
    /// cascade starts if this tweet starts one: see [`Collector::oldest_open_position`].
    pub fn on_tweet_at<'t>(
        &mut self,
        source: &str,
        tweet: impl Into<TweetRef<'t>>,
        position: u64,
        out: &mut Vec<Emission>,
    ) -> Outcome {
        let tweet = &tweet.into();
        let config = &self.config;
        let state = source_state(&mut self.sources, source);
        if tweet.t > state.clock {
            state.clock = tweet.t;
            state.advance(config, out);
        }
        let outcome = match tweet.kind {
            TweetKind::Tweet => state.start(config, tweet, position),
            TweetKind::Retweet => state.record(config, tweet),
        };
        // A tweet older than the clock may already be due (window reached, or idle for too long).
        state.advance(config, out);
        outcome
    }

    /// The source has ended at time `t`: every cascade of it is finished and forgotten.
    pub fn on_end_of_source(&mut self, source: &str, t: f64, out: &mut Vec<Emission>) {
        if let Some(mut state) = self.sources.remove(source) {
            if t > state.clock {
                state.clock = t;
                state.advance(&self.config, out);
            }
            state.finish_all(&self.config, out);
        }
    }

    /// The clock of `source`: the largest event time it has sent, if it is known.
    pub fn clock(&self, source: &str) -> Option<f64> {
        self.sources.get(source).map(|s| s.clock)
    }

    /// Moves the clock of `source` forward to `t` (if later) and appends what becomes due to
    /// `out`. After a restart, a collector re-reading a source from an open cascade's original
    /// tweet puts back the clock the source had reached with this: with event times out of order,
    /// the re-read tweets alone can leave the clock behind, and what was already due would come
    /// due again later.
    pub fn advance_clock(&mut self, source: &str, t: f64, out: &mut Vec<Emission>) {
        let state = source_state(&mut self.sources, source);
        if t > state.clock {
            state.clock = t;
            state.advance(&self.config, out);
        }
    }

    /// The smallest position of an original tweet among the open cascades of `source`: replaying
    /// the source's input from there rebuilds every open cascade.
    pub fn oldest_open_position(&self, source: &str) -> Option<u64> {
        self.sources
            .get(source)?
            .cascades
            .values()
            .map(|c| c.position)
            .min()
    }

    /// The smallest input position of the original tweet of a finished cascade `source` still
    /// remembers: reading the input again from there (with [`Collector::remember_finished`])
    /// rebuilds that memory after a restart.
    pub fn oldest_remembered_position(&self, source: &str) -> Option<u64> {
        self.sources
            .get(source)?
            .finished_order
            .iter()
            .map(|(_, position)| *position)
            .min()
    }

    /// Remembers `cid` of `source`, whose original tweet was at `position`, as finished, so that a
    /// repeated original is ignored, as it was before a restart; false if it is open or already
    /// remembered (or nothing is remembered: `remembered_finished` 0).
    pub fn remember_finished(&mut self, source: &str, cid: &CascadeId, position: u64) -> bool {
        let config = &self.config;
        let state = source_state(&mut self.sources, source);
        if state.ids.contains_key(cid) || state.finished.contains(cid) {
            return false;
        }
        state.remember(config, cid.clone(), position)
    }

    /// Drops everything known about `source` without emitting anything (its input moved to
    /// another collector replica).
    pub fn forget_source(&mut self, source: &str) {
        self.sources.remove(source);
    }

    /// End of the whole stream: finishes every cascade of every source, in source-name order.
    pub fn flush_all(&mut self, out: &mut Vec<Emission>) {
        let mut names: Vec<String> = self.sources.keys().cloned().collect();
        names.sort();
        for name in names {
            if let Some(mut state) = self.sources.remove(&name) {
                state.finish_all(&self.config, out);
            }
        }
    }
}

impl SourceState {
    fn start(&mut self, config: &CollectorConfig, tweet: &TweetRef<'_>, position: u64) -> Outcome {
        let id: &str = &tweet.tweet_id;
        if self.ids.contains_key(id) || self.finished.contains(id) {
            return Outcome::Duplicate;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        for (k, &window) in config.windows.iter().enumerate() {
            self.deadlines
                .insert((Time(tweet.t + window as f64), seq, k));
        }
        let idle_key = tweet.t + config.quiet_limit(tweet.t, tweet.t);
        let cascade = OpenCascade {
            cid: CascadeId::from(id),
            position,
            msg: tweet.msg.as_ref().to_owned(),
            start: tweet.t,
            last: tweet.t,
            idle_key,
            events: vec![(tweet.t, tweet.m)],
            windows: vec![WindowState::Pending; config.windows.len()],
        };
        self.idle.insert((Time(idle_key), seq));
        self.ids.insert(CascadeId::from(id), seq);
        self.cascades.insert(seq, cascade);
        Outcome::Started
    }

    fn record(&mut self, config: &CollectorConfig, tweet: &TweetRef<'_>) -> Outcome {
        let Some(&seq) = self.ids.get(tweet.tweet_id.as_ref()) else {
            return Outcome::Orphan;
        };
        let cascade = self.cascades.get_mut(&seq).expect("ids and cascades agree");
        if tweet.t < cascade.start {
            return Outcome::BeforeStart;
        }
        let at = cascade.events.partition_point(|&(t, _)| t <= tweet.t);
        let same_time = cascade.events[..at]
            .iter()
            .rev()
            .take_while(|&&(t, _)| t == tweet.t);
        if same_time.into_iter().any(|&(_, m)| m == tweet.m) {
            return Outcome::Duplicate;
        }
        cascade.events.insert(at, (tweet.t, tweet.m));
        if tweet.t > cascade.last {
            // Its end moves later; its `idle` entry stays (see `SourceState::idle`).
            cascade.last = tweet.t;
        }
        let late = config
            .windows
            .iter()
            .zip(&cascade.windows)
            .any(|(&w, s)| *s != WindowState::Pending && tweet.t < cascade.start + w as f64);
        if late {
            Outcome::RecordedLate
        } else {
            Outcome::Recorded
        }
    }

    /// Handles every window reached and every cascade gone idle at the current clock.
    fn advance(&mut self, config: &CollectorConfig, out: &mut Vec<Emission>) {
        while let Some(&(deadline, seq, k)) = self.deadlines.first() {
            if deadline.0 > self.clock {
                break;
            }
            self.deadlines.pop_first();
            let cascade = self
                .cascades
                .get_mut(&seq)
                .expect("deadlines of open cascades");
            close_window(cascade, config, k, out);
        }
        while let Some(&(idle_key, seq)) = self.idle.first() {
            if self.clock <= idle_key.0 {
                break;
            }
            let cascade = self.cascades.get_mut(&seq).expect("idle open cascades");
            let end_after = config.end_after(cascade);
            if end_after != idle_key.0 {
                // Retweeted since its entry was made: its entry moves to its end, and cascades
                // still end in the order of their ends.
                self.idle.pop_first();
                cascade.idle_key = end_after;
                self.idle.insert((Time(end_after), seq));
                continue;
            }
            self.finish(config, seq, out);
        }
    }

    /// Ends cascade `seq`: pending windows first, then the sizes; forgets it.
    fn finish(&mut self, config: &CollectorConfig, seq: u64, out: &mut Vec<Emission>) {
        let mut cascade = self.cascades.remove(&seq).expect("open cascade");
        self.idle.remove(&(Time(cascade.idle_key), seq));
        self.ids.remove(&cascade.cid);
        for (k, &window) in config.windows.iter().enumerate() {
            if cascade.windows[k] == WindowState::Pending {
                self.deadlines
                    .remove(&(Time(cascade.start + window as f64), seq, k));
                close_window(&mut cascade, config, k, out);
            }
        }
        for (k, &window) in config.windows.iter().enumerate() {
            if cascade.windows[k] == WindowState::Sent {
                out.push(Emission::Size(CascadeSize {
                    cid: cascade.cid.clone(),
                    t_obs: Some(window),
                    n_tot: cascade.events.len() as u64,
                    t_end: cascade.last - cascade.start,
                }));
            }
        }
        self.remember(config, cascade.cid, cascade.position);
    }

    /// Remembers a finished cascade, forgetting the oldest one past the limit.
    fn remember(&mut self, config: &CollectorConfig, cid: CascadeId, position: u64) -> bool {
        if config.remembered_finished == 0 {
            return false;
        }
        if self.finished_order.len() >= config.remembered_finished {
            if let Some((old, _)) = self.finished_order.pop_front() {
                self.finished.remove(&old);
            }
        }
        self.finished.insert(cid.clone());
        self.finished_order.push_back((cid, position));
        true
    }

    fn finish_all(&mut self, config: &CollectorConfig, out: &mut Vec<Emission>) {
        let mut open: Vec<(Time, u64)> = self
            .cascades
            .iter()
            .map(|(&seq, c)| (Time(c.start), seq))
            .collect();
        open.sort();
        for (_, seq) in open {
            self.finish(config, seq, out);
        }
    }
}

fn close_window(
    cascade: &mut OpenCascade,
    config: &CollectorConfig,
    k: usize,
    out: &mut Vec<Emission>,
) {
    let window = config.windows[k];
    let cutoff = cascade.start + window as f64;
    let observed = cascade.events.partition_point(|&(t, _)| t < cutoff);
    if observed < config.min_cascade_size {
        cascade.windows[k] = WindowState::TooSmall;
        return;
    }
    cascade.windows[k] = WindowState::Sent;
    let tweets = cascade.events[..observed]
        .iter()
        .map(|&(t, m)| (t - cascade.start, m))
        .collect();
    out.push(Emission::Series(CascadeSeries::new(
        cascade.cid.clone(),
        cascade.msg.clone(),
        window,
        tweets,
    )));
}

#[cfg(test)]
mod tests;
