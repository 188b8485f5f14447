//! Which partition a record goes to.
//!
//! Records about one cascade (its `parameters` and its `size` for every window) must meet in the
//! same partition so that one predictor replica sees both; the classic format keys them by `T_obs`,
//! which would put every cascade of a window on one partition. Producers therefore keep the classic
//! key but choose the partition themselves from the cascade id with this stable hash, identical in
//! every process and every version.

/// 64-bit FNV-1a hash of `bytes`: stable across processes, platforms and releases.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The partition, among `partitions`, for records about the cascade `cid`.
pub fn partition_for(cid: &str, partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (stable_hash(cid.as_bytes()) % partitions as u64) as i32
}
