//! Exact simulation of power-law cascades by the branching (cluster) construction.
//!
//! Each event of mark `m` at time `t` has its own Poisson stream of direct children with
//! intensity `K·m^β·(τ + c)^{−(1+θ)}` at delay `τ`, of total mass
//! `ν = K·m^β·c^{−θ}/θ` and cumulative `Λ(τ) = ν·(1 − (c/(τ + c))^θ)`. Its arrivals are drawn in
//! order by inverting `Λ` at the points of a unit-rate Poisson process on `[0, ν)`:
//! `τ = c·((1 − e/ν)^{−1/θ} − 1)`. A priority queue holds the next child of every event, so
//! events come out in time order, the first `max_events` are exactly the cascade's first
//! ones, and nothing after the horizon is generated.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rand::Rng;

use super::PowerLawParams;
use crate::MarkDistribution;

/// The next child of one event: a min-heap entry ordered by time.
struct Stream {
    /// Time of the next child.
    next: f64,
    /// Time of the parent.
    parent: f64,
    /// Arrival of the next child in the unit-rate clock, in `[0, nu)`.
    clock: f64,
    /// Expected number of children of the parent.
    nu: f64,
}

impl PartialEq for Stream {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Stream {}

impl PartialOrd for Stream {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Stream {
    /// Reversed, so that `BinaryHeap` pops the earliest child first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.next.total_cmp(&self.next)
    }
}

fn exp1<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    // gen::<f64>() is in [0, 1); 1 − u is in (0, 1], so the log is finite.
    -(1.0 - rng.gen::<f64>()).ln()
}

/// A stream starting at `clock` (already drawn), or `None` if it has no child left.
fn stream(params: &PowerLawParams, parent: f64, clock: f64, nu: f64) -> Option<Stream> {
    if clock >= nu {
        return None;
    }
    // τ = c·((1 − e/ν)^{−1/θ} − 1), accurate for small e/ν.
    let tau = params.c * (-(-clock / nu).ln_1p() / params.theta).exp_m1();
    let next = parent + tau;
    next.is_finite().then_some(Stream {
        next,
        parent,
        clock,
        nu,
    })
}

/// Simulates one power-law cascade from an initial event at `t = 0` whose mark is drawn from
/// `marks`. See [`simulate_cascade_from`].
pub fn simulate_cascade<R: Rng + ?Sized>(
    params: &PowerLawParams,
    marks: &MarkDistribution,
    horizon: f64,
    max_events: usize,
    rng: &mut R,
) -> Vec<(f64, f64)> {
    let first_mark = marks.sample(rng);
    simulate_cascade_from(first_mark, params, marks, horizon, max_events, rng)
}

/// Simulates one power-law cascade from an initial event at `t = 0` with mark `first_mark`,
/// exactly (see the module docs; marks below 1 count as 1 in the kernel, the returned marks are
/// the raw draws).
///
/// Stops at extinction, at the first event at or after `horizon` (which may be infinite) or
/// once `max_events` events (the initial one included) exist. Returns `(time, mark)` pairs
/// sorted by time, starting with `(0, first_mark)`; empty if `max_events == 0` or `horizon` is
/// not positive; only the initial event if `params` are invalid. A supercritical process
/// (`n* ≥ 1`) only stops at the horizon or at `max_events`.
pub fn simulate_cascade_from<R: Rng + ?Sized>(
    first_mark: f64,
    params: &PowerLawParams,
    marks: &MarkDistribution,
    horizon: f64,
    max_events: usize,
    rng: &mut R,
) -> Vec<(f64, f64)> {
    let mut events = Vec::new();
    if max_events == 0 || horizon.is_nan() || horizon <= 0.0 {
        return events;
    }
    events.push((0.0, first_mark));
    if !params.is_valid() {
        return events;
    }
    let mut queue = BinaryHeap::new();
    let nu = params.expected_children(first_mark);
    queue.extend(stream(params, 0.0, exp1(rng), nu));
    while events.len() < max_events {
        let Some(s) = queue.pop() else { break };
        if s.next >= horizon {
            break;
        }
        let m = marks.sample(rng);
        events.push((s.next, m));
        let nu = params.expected_children(m);
        queue.extend(stream(params, s.next, exp1(rng), nu));
        queue.extend(stream(params, s.parent, s.clock + exp1(rng), s.nu));
    }
    events
}
