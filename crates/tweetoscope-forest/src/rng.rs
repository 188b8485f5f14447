//! Small, version-stable random generator (SplitMix64).
//!
//! The forest uses its own generator rather than `rand::rngs::StdRng`, whose
//! algorithm may change between `rand` releases: a model must be reproducible
//! from its seed.

use rand::RngCore;

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64 output function (a bijective 64-bit mixer).
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seed of tree `index` of a forest seeded with `seed`; independent of the
/// order in which trees are built.
pub(crate) fn tree_seed(seed: u64, index: usize) -> u64 {
    mix64(seed ^ mix64((index as u64).wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
}

/// SplitMix64 generator.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// Creates a generator from a 64-bit seed.
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }
}

impl RngCore for SplitMix64 {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_by_seed_and_tree() {
        let a: Vec<u64> = {
            let mut r = SplitMix64::new(tree_seed(1, 0));
            (0..4).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = SplitMix64::new(tree_seed(1, 1));
            (0..4).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = SplitMix64::new(tree_seed(2, 0));
            (0..4).map(|_| r.next_u64()).collect()
        };
        assert_ne!(a, b);
        assert_ne!(a, c);
        let mut r = SplitMix64::new(tree_seed(1, 0));
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
    }

    #[test]
    fn fill_bytes_handles_partial_chunks() {
        let mut r = SplitMix64::new(7);
        let mut buf = [0u8; 13];
        r.fill_bytes(&mut buf);
        assert!(buf.iter().any(|&b| b != 0));
    }
}
