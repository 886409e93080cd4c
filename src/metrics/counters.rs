//! `ShardStats`: the counters of one shard, collected over the rings and summed by whoever
//! asked (`/metrics`, `/api/info`).

use crate::protocol::Refusal;

/// Upper bounds of the broadcast-size histogram's buckets (channels per `/api/broadcast`);
/// one more bucket past the last counts the rest.
pub const BROADCAST_BUCKETS: [u64; 6] = [1, 10, 100, 1_000, 10_000, 100_000];

/// Counters of one shard.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShardStats {
    pub connections: u64,
    /// Users with a connection on this shard (a user on two shards counts on both).
    pub users: u64,
    /// Users online anywhere on the node among those this shard owns: the node's distinct
    /// users add up over the shards.
    pub online_users: u64,
    pub subscriptions: u64,
    /// Channels with subscribers, among those this shard owns.
    pub channels: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub publications: u64,
    pub slow_disconnects: u64,
    /// Bytes of history segment files of the partitions this shard owns.
    pub history_bytes: u64,
    /// Publications indexed in those logs.
    pub history_records: u64,
    /// Channel states its owner holds, subscribed or idle.
    pub channel_states: u64,
    /// Channels whose position its logs keep.
    pub history_channels: u64,
    /// Presence entries its channels hold.
    pub presence_entries: u64,
    /// Presence joins not recorded: the channel was full.
    pub presence_full: u64,
    /// WebSocket connections accepted (upgraded) since the start.
    pub connections_accepted: u64,
    /// 1 while the shard drains (a SIGTERM or SIGINT came), else 0.
    pub draining: u64,
    /// Bytes read from and written to WebSocket connections' sockets (TLS records whole).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// `/api/broadcast` calls by channel count (`BROADCAST_BUCKETS`, then the rest), and the
    /// channels they named.
    pub broadcasts: [u64; BROADCAST_BUCKETS.len() + 1],
    pub broadcast_channels: u64,
    /// Redis engine: failed calls since the start, and connections down now.
    pub redis_errors: u64,
    pub redis_links_down: u64,
    /// Messages in this shard's outgoing rings, not yet taken.
    pub ring_occupancy: u64,
    /// Messages waiting behind full rings.
    pub ring_backlog: u64,
    /// Sends that found their ring full (or a backlog before them) and waited.
    pub ring_waits: u64,
    /// Publications its logs wrote since the start, and their payload bytes.
    pub history_appends: u64,
    pub history_appended_bytes: u64,
    /// Segment files its logs hold.
    pub history_segments: u64,
    /// Sync jobs run (fsync/msync rounds) since the start.
    pub history_syncs: u64,
    /// Connects and commands refused, by `Refusal::index`.
    pub refusals: [u64; Refusal::ALL.len()],
}

impl std::ops::AddAssign for ShardStats {
    fn add_assign(&mut self, o: ShardStats) {
        self.connections += o.connections;
        self.users += o.users;
        self.online_users += o.online_users;
        self.subscriptions += o.subscriptions;
        self.channels += o.channels;
        self.messages_in += o.messages_in;
        self.messages_out += o.messages_out;
        self.publications += o.publications;
        self.slow_disconnects += o.slow_disconnects;
        self.history_bytes += o.history_bytes;
        self.history_records += o.history_records;
        self.channel_states += o.channel_states;
        self.history_channels += o.history_channels;
        self.presence_entries += o.presence_entries;
        self.presence_full += o.presence_full;
        self.connections_accepted += o.connections_accepted;
        self.draining = self.draining.max(o.draining);
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        for (mine, theirs) in self.broadcasts.iter_mut().zip(o.broadcasts) {
            *mine += theirs;
        }
        self.broadcast_channels += o.broadcast_channels;
        self.redis_errors += o.redis_errors;
        self.redis_links_down += o.redis_links_down;
        self.ring_occupancy += o.ring_occupancy;
        self.ring_backlog += o.ring_backlog;
        self.ring_waits += o.ring_waits;
        self.history_appends += o.history_appends;
        self.history_appended_bytes += o.history_appended_bytes;
        self.history_segments += o.history_segments;
        self.history_syncs += o.history_syncs;
        for (mine, theirs) in self.refusals.iter_mut().zip(o.refusals) {
            *mine += theirs;
        }
    }
}

impl ShardStats {
    /// The counters of every shard added up.
    pub fn sum(all: &[ShardStats]) -> ShardStats {
        let mut total = ShardStats::default();
        for stats in all {
            total += *stats;
        }
        total
    }
}
