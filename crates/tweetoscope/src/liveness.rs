//! Whether the processing loops of a process are making progress.
//!
//! Each loop beats as it goes, naming what it is about to do; a loop blocked in a call (a Kafka
//! transaction that never completes, a read that never ends) stops beating. The HTTP endpoint
//! answers `/healthz` with 503 once a loop has been stalled for longer than [`STALL_LIMIT`], so
//! an orchestrator restarts the process; `/metrics` exports them as
//! `tweetoscope_processing_loop_stalled_seconds`, and a watchdog thread logs them as they grow.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest time a processing loop may go without progress before the process counts as not
/// alive. The longest legitimate wait of a loop is a state restore (at most 150 s) or, without
/// transactions, a delivery (at most 300 s, the producer's message timeout).
pub const STALL_LIMIT: Duration = Duration::from_secs(330);

/// Stalls shorter than this are not logged (a commit or a restore legitimately takes seconds).
pub const STALL_LOGGED_AFTER: Duration = Duration::from_secs(30);

/// The progress of one processing loop.
#[derive(Debug)]
pub struct LoopBeat {
    stage: &'static str,
    state: Mutex<BeatState>,
}

#[derive(Debug, Clone, Copy)]
struct BeatState {
    at: Instant,
    doing: &'static str,
    running: bool,
}

impl LoopBeat {
    /// Progress now; `doing` names what the loop does next (shown if it stalls there).
    pub fn beat(&self, doing: &'static str) {
        let mut state = self.state.lock().expect("beat lock");
        state.at = Instant::now();
        state.doing = doing;
        state.running = true;
    }

    /// The loop has ended: it no longer counts as stalled.
    pub fn stopped(&self) {
        self.state.lock().expect("beat lock").running = false;
    }

    /// Moves the last beat `by` into the past (tests of what depends on a long stall).
    #[cfg(test)]
    pub(crate) fn backdate(&self, by: Duration) {
        let mut state = self.state.lock().expect("beat lock");
        state.at = state
            .at
            .checked_sub(by)
            .expect("the monotonic clock started long enough ago");
    }

    /// How long the loop has gone without progress and what it was doing, while it runs.
    pub fn stalled(&self) -> Option<Stall> {
        self.stalled_at(Instant::now())
    }

    fn stalled_at(&self, now: Instant) -> Option<Stall> {
        let state = *self.state.lock().expect("beat lock");
        state.running.then(|| Stall {
            stage: self.stage,
            for_: now.saturating_duration_since(state.at),
            doing: state.doing,
        })
    }
}

/// A loop's time without progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// The stage of the loop.
    pub stage: &'static str,
    /// Time since its last progress.
    pub for_: Duration,
    /// What it was doing then.
    pub doing: &'static str,
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: no progress for {} s while {}",
            self.stage,
            self.for_.as_secs(),
            self.doing
        )
    }
}

/// The processing loops of a process.
#[derive(Debug, Default)]
pub struct Liveness {
    loops: Mutex<Vec<Arc<LoopBeat>>>,
}

impl Liveness {
    /// A new loop of `stage`, counted from now. Loops that have stopped are forgotten.
    pub fn register(&self, stage: &'static str) -> Arc<LoopBeat> {
        let beat = Arc::new(LoopBeat {
            stage,
            state: Mutex::new(BeatState {
                at: Instant::now(),
                doing: "starting",
                running: true,
            }),
        });
        let mut loops = self.loops.lock().expect("liveness lock");
        loops.retain(|l| l.stalled().is_some());
        loops.push(beat.clone());
        beat
    }

    /// Every running loop's time without progress.
    pub fn stalls(&self) -> Vec<Stall> {
        let now = Instant::now();
        self.loops
            .lock()
            .expect("liveness lock")
            .iter()
            .filter_map(|l| l.stalled_at(now))
            .collect()
    }

    /// The loops stalled for longer than `limit` (the process is not alive if any).
    pub fn stuck(&self, limit: Duration) -> Vec<Stall> {
        self.stalls()
            .into_iter()
            .filter(|s| s.for_ > limit)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_stops_beating_is_stuck_after_the_limit_with_what_it_was_doing() {
        let liveness = Liveness::default();
        let beat = liveness.register("predictor");
        beat.beat("committing the transaction");
        let later = Instant::now() + Duration::from_secs(400);
        let stall = beat.stalled_at(later).expect("running");
        assert!(stall.for_ >= Duration::from_secs(400));
        assert_eq!(stall.doing, "committing the transaction");
        assert_eq!(
            stall.to_string(),
            format!(
                "predictor: no progress for {} s while committing the transaction",
                stall.for_.as_secs()
            )
        );
        assert!(liveness.stuck(Duration::from_secs(3600)).is_empty());
    }

    #[test]
    fn a_beat_resets_the_stall_and_a_stopped_loop_is_never_stuck() {
        let liveness = Liveness::default();
        let beat = liveness.register("collector");
        std::thread::sleep(Duration::from_millis(30));
        let before = beat.stalled().expect("running").for_;
        assert!(before >= Duration::from_millis(30));
        beat.beat("waiting for messages");
        assert!(beat.stalled().expect("running").for_ < before);
        beat.stopped();
        assert_eq!(beat.stalled(), None);
        assert!(liveness.stuck(Duration::ZERO).is_empty());
    }

    #[test]
    fn stopped_loops_are_forgotten_when_a_new_one_registers() {
        let liveness = Liveness::default();
        let first = liveness.register("estimator");
        first.stopped();
        let _second = liveness.register("estimator");
        assert_eq!(liveness.loops.lock().expect("lock").len(), 1);
        assert_eq!(liveness.stalls().len(), 1);
    }
}
