//! Marked Hawkes cascades simulated with known parameters.
//!
//! Each cascade draws its branching factor n* uniformly and its decay β log-uniformly, so that
//! `p = n*/E[m]`. When target sizes are given (for example those of the NEWS index), the original
//! poster's follower count m₀ is chosen so that the expected final size, 1 + p·m₀/(1 − n*), equals a
//! target drawn from that list: popular tweets come from accounts with many followers, and the size
//! distribution follows the real one in expectation. Otherwise m₀ is drawn like every other mark.

use rand::{Rng, SeedableRng};
use tweetoscope_hawkes::simulate::simulate_cascade_from;
use tweetoscope_hawkes::MarkDistribution;

use crate::CascadeEvents;

/// Settings of the synthetic source.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticConfig {
    /// Number of cascades to produce.
    pub cascades: usize,
    /// Distribution of the marks (follower counts).
    pub marks: MarkDistribution,
    /// Range of the branching factor n*, drawn uniformly.
    pub n_star_range: (f64, f64),
    /// Range of β in 1/s, drawn log-uniformly.
    pub beta_range: (f64, f64),
    /// Target sizes to follow (empty: no size calibration).
    pub target_sizes: Vec<usize>,
    /// Longest cascade duration in seconds.
    pub horizon: f64,
    /// Largest cascade, in tweets.
    pub max_events: usize,
    /// Seed of every draw.
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            cascades: 1_000,
            marks: MarkDistribution::default(),
            n_star_range: (0.5, 0.9),
            beta_range: (1.0 / 3_600.0, 1.0 / 300.0),
            target_sizes: Vec::new(),
            horizon: 7.0 * 24.0 * 3_600.0,
            max_events: 50_000,
            seed: 7,
        }
    }
}

/// One simulated cascade with the parameters that generated it.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticCascade {
    /// Excitation parameter.
    pub p: f64,
    /// Decay rate in 1/s.
    pub beta: f64,
    /// Branching factor `p·E[m]`.
    pub n_star: f64,
    /// `(t, m)` events, the first at t = 0.
    pub events: Vec<(f64, f64)>,
}

/// Iterator over simulated cascades.
#[derive(Debug)]
pub struct SyntheticCascades {
    config: SyntheticConfig,
    rng: rand::rngs::StdRng,
    produced: usize,
}

impl SyntheticCascades {
    /// A new source; the same config gives the same cascades.
    pub fn new(config: SyntheticConfig) -> Self {
        Self {
            rng: rand::rngs::StdRng::seed_from_u64(config.seed),
            config,
            produced: 0,
        }
    }

    /// The next cascade with its generating parameters.
    pub fn next_with_truth(&mut self) -> Option<SyntheticCascade> {
        if self.produced >= self.config.cascades {
            return None;
        }
        self.produced += 1;
        let c = &self.config;
        let rng = &mut self.rng;
        let (lo, hi) = c.n_star_range;
        let n_star = if hi > lo { rng.gen_range(lo..hi) } else { lo };
        let (blo, bhi) = c.beta_range;
        let beta = if bhi > blo {
            (rng.gen_range(blo.ln()..bhi.ln())).exp()
        } else {
            blo
        };
        let p = n_star / c.marks.mean();
        let first_mark = if c.target_sizes.is_empty() {
            c.marks.sample(rng)
        } else {
            let target = c.target_sizes[rng.gen_range(0..c.target_sizes.len())].max(1) as f64;
            ((target - 1.0) * (1.0 - n_star) / p).max(1.0)
        };
        let mut events = simulate_cascade_from(
            first_mark.round(),
            p,
            beta,
            &c.marks,
            c.horizon,
            c.max_events,
            rng,
        );
        for e in &mut events {
            e.1 = e.1.round().max(1.0);
        }
        Some(SyntheticCascade {
            p,
            beta,
            n_star,
            events,
        })
    }
}

/// The `info` of the tweets of a synthetic cascade drawn with `p`, `beta` and branching factor
/// `n_star`.
pub fn origin_label(p: f64, beta: f64, n_star: f64) -> String {
    format!("synthetic p={p:.6} beta={beta:.6} n_star={n_star:.4}")
}

impl Iterator for SyntheticCascades {
    type Item = CascadeEvents;

    fn next(&mut self) -> Option<CascadeEvents> {
        let c = self.next_with_truth()?;
        Some(CascadeEvents {
            origin: origin_label(c.p, c.beta, c.n_star),
            events: c.events,
            day_phase: None,
        })
    }
}
