//! `ChannelOwner`: the state a shard keeps for the channels it owns (DESIGN invariant 2): the
//! stream position (offset, partition epoch) and the set of shards with local subscribers.
//! Publishing assigns the next offset and encodes the push frame once (invariant 4); the
//! caller (`shard`) sends that one `Bytes` to every shard in the set.
//!
//! Touches nothing outside itself: no rings, no connections.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::protocol;
use crate::router::{partition, PARTITIONS};
use crate::ws;

/// The set of shards with local subscribers of one channel (shards < 256, see
/// `ringcast_ring::mesh::SHARDS_MAX`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShardSet([u64; 4]);

impl ShardSet {
    pub fn insert(&mut self, shard: usize) {
        self.0[shard / 64] |= 1 << (shard % 64);
    }
    pub fn remove(&mut self, shard: usize) {
        self.0[shard / 64] &= !(1 << (shard % 64));
    }
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
    /// The shards in ascending order (visits set bits only).
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..4).flat_map(move |word| {
            let mut bits = self.0[word];
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                Some(word * 64 + bit)
            })
        })
    }
}

#[derive(Debug)]
struct ChannelState {
    name: Arc<str>,
    /// Offset of the last publication (0: none yet).
    offset: u64,
    shards: ShardSet,
}

/// One publication as its owner produced it.
#[derive(Debug)]
pub struct Outcome {
    pub channel: Arc<str>,
    pub offset: u64,
    pub epoch: Arc<str>,
    /// The complete WebSocket frame every subscriber receives.
    pub frame: Bytes,
    pub shards: ShardSet,
}

#[derive(Debug)]
pub struct ChannelOwner {
    shard: usize,
    shards: usize,
    /// Epoch of each partition (only those this shard owns are used). Random per start until
    /// history persists them (next issue): a restart loses the stream, so the epoch changes.
    epochs: Vec<Arc<str>>,
    channels: HashMap<Arc<str>, ChannelState>,
}

impl ChannelOwner {
    pub fn new(shard: usize, shards: usize) -> Self {
        let epochs = (0..PARTITIONS).map(|_| random_epoch().into()).collect();
        ChannelOwner {
            shard,
            shards,
            epochs,
            channels: HashMap::new(),
        }
    }

    fn state(&mut self, channel: &str) -> &mut ChannelState {
        debug_assert_eq!(
            crate::router::owner_of(channel, self.shards),
            self.shard,
            "channel {channel} routed to a shard that does not own it"
        );
        if !self.channels.contains_key(channel) {
            let name: Arc<str> = channel.into();
            self.channels.insert(
                name.clone(),
                ChannelState {
                    name,
                    offset: 0,
                    shards: ShardSet::default(),
                },
            );
        }
        self.channels.get_mut(channel).expect("inserted above")
    }

    /// Shard `shard` has local subscribers of `channel` from now on.
    pub fn add_shard(&mut self, channel: &str, shard: usize) {
        self.state(channel).shards.insert(shard);
    }

    /// Shard `shard` has no local subscribers of `channel` any more.
    pub fn remove_shard(&mut self, channel: &str, shard: usize) {
        if let Some(state) = self.channels.get_mut(channel) {
            state.shards.remove(shard);
        }
    }

    /// Assigns the next offset to a publication and encodes its push frame once.
    pub fn publish(
        &mut self,
        channel: &str,
        data: &[u8],
        info: Option<&[u8]>,
        tags: Option<&[u8]>,
    ) -> Outcome {
        let epoch = self.epochs[partition(channel) as usize].clone();
        let state = self.state(channel);
        state.offset += 1;
        let mut json = Vec::with_capacity(64 + channel.len() + data.len());
        protocol::publication_push(&mut json, channel, data, info, state.offset, tags);
        let mut frame = Vec::with_capacity(ws::header_len(json.len()) + json.len());
        ws::put_header(&mut frame, 0x1, json.len());
        frame.extend_from_slice(&json);
        Outcome {
            channel: state.name.clone(),
            offset: state.offset,
            epoch,
            frame: Bytes::from(frame),
            shards: state.shards,
        }
    }

    /// Channels with subscribers somewhere.
    pub fn active_channels(&self) -> usize {
        self.channels
            .values()
            .filter(|s| !s.shards.is_empty())
            .count()
    }
}

/// Eight random letters, the shape of Centrifugo's epochs.
fn random_epoch() -> String {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| (b'a' + b % 26) as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_contiguous_per_channel_and_frames_encoded_once() {
        let mut owner = ChannelOwner::new(0, 1);
        owner.add_shard("a", 0);
        owner.add_shard("a", 3);
        let first = owner.publish("a", b"{}", None, None);
        let second = owner.publish("a", b"{}", None, None);
        let other = owner.publish("b", b"1", None, None);
        assert_eq!((first.offset, second.offset, other.offset), (1, 2, 1));
        assert_eq!(first.shards.iter().collect::<Vec<_>>(), [0, 3]);
        assert!(other.shards.is_empty());
        assert_eq!(
            &first.frame[2..],
            br#"{"push":{"channel":"a","pub":{"data":{},"offset":1}}}"#
        );
        assert_eq!(first.frame[0], 0x81);
        owner.remove_shard("a", 0);
        assert_eq!(
            owner
                .publish("a", b"{}", None, None)
                .shards
                .iter()
                .collect::<Vec<_>>(),
            [3]
        );
        assert_eq!(first.epoch.len(), 8);
        assert_eq!(first.epoch, second.epoch);
    }
}
