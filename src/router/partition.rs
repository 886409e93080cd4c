//! Channel → partition → owner shard. A channel hashes (FNV-1a 64, fixed forever: it decides
//! where history lives) to one of `PARTITIONS` partitions; partition p is owned by shard
//! p mod N.

use crate::limits::PARTITIONS;

/// The partition of `channel`: FNV-1a over its bytes.
pub fn partition(channel: &str) -> u32 {
    (fnv1a(channel.as_bytes()) % u64::from(PARTITIONS)) as u32
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The shard that owns `channel` among `shards` shards.
pub fn owner_of(channel: &str, shards: usize) -> usize {
    debug_assert!(shards > 0);
    partition(channel) as usize % shards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_pinned_by_golden_values() {
        // Fixed forever: changing the hash (basis, prime or byte order) moves every channel's
        // history to another partition. Values computed independently of this code.
        assert_eq!(fnv1a(b"news"), 16_521_837_565_095_601_446);
        assert_eq!(fnv1a("ü".as_bytes()), 775_193_114_114_000_874);
        for (channel, p) in [
            ("news", 38),
            ("chat:room-1", 62),
            ("personal:42", 211),
            ("$private", 190),
            ("a", 140),
        ] {
            assert_eq!(partition(channel), p, "{channel}");
        }
        assert_eq!(owner_of("personal:42", 4), 211 % 4);
    }

    #[test]
    fn channels_spread_over_every_partition() {
        let mut seen = [false; PARTITIONS as usize];
        for i in 0..10_000 {
            seen[partition(&format!("room-{i}")) as usize] = true;
        }
        assert!(
            seen.iter().all(|&s| s),
            "10k channels cover every partition"
        );
    }
}
