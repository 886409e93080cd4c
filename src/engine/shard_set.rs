//! `ShardSet`: the shards with local subscribers of one channel, as a bit set wide enough for
//! every shard a mesh can have (`limits::SHARD_SET_WORDS`, checked at compile time).

use crate::limits::{SHARD_SET_WORDS, SHARD_SET_WORD_BITS};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShardSet([u64; SHARD_SET_WORDS]);

impl ShardSet {
    pub fn insert(&mut self, shard: usize) {
        self.0[shard / SHARD_SET_WORD_BITS] |= 1 << (shard % SHARD_SET_WORD_BITS);
    }

    pub fn remove(&mut self, shard: usize) {
        self.0[shard / SHARD_SET_WORD_BITS] &= !(1 << (shard % SHARD_SET_WORD_BITS));
    }

    pub fn is_empty(&self) -> bool {
        self.0 == [0; SHARD_SET_WORDS]
    }

    /// The shards in ascending order (visits set bits only).
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..SHARD_SET_WORDS).flat_map(move |word| {
            let mut bits = self.0[word];
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                Some(word * SHARD_SET_WORD_BITS + bit)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shard_fits_and_iterates_in_order() {
        let mut set = ShardSet::default();
        for shard in [255, 0, 64, 3] {
            set.insert(shard);
        }
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 3, 64, 255]);
        set.remove(64);
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 3, 255]);
        assert!(!set.is_empty());
    }
}
