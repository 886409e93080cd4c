//! Routing between shards: which shard owns a channel (DESIGN invariant 2), the messages shards
//! exchange, and the `Outbox` in front of the ring mesh that keeps each destination FIFO when
//! a ring is full.
//!
//! A channel hashes (FNV-1a 64, fixed forever: it decides where history lives) to one of
//! `PARTITIONS` partitions; partition p is owned by shard p mod N.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use ringcast_ring::mesh::BoundLinks;
use ringcast_ring::Full;

/// Partitions per node; fixed (history directories will be laid out by partition).
pub const PARTITIONS: u32 = 256;

/// Capacity of each ring of the mesh.
pub const RING_CAPACITY: usize = 4096;

/// Messages queued behind a full ring to one shard before sources (client and API publishes)
/// are made to wait.
pub const BACKLOG_HIGH: usize = 4096;

/// The partition of `channel`: FNV-1a over its bytes.
pub fn partition(channel: &str) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in channel.as_bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(PARTITIONS)) as u32
}

/// The shard that owns `channel` among `shards` shards.
pub fn owner_of(channel: &str, shards: usize) -> usize {
    partition(channel) as usize % shards
}

/// A publication on its way to its channels' owner.
#[derive(Debug)]
pub struct PublishJob {
    /// (index in the caller's request, channel); all owned by the receiving shard.
    pub channels: Vec<(u32, Arc<str>)>,
    /// Raw JSON, newlines already stripped.
    pub data: Bytes,
    /// ClientInfo of a client-side publisher, raw JSON.
    pub info: Option<Bytes>,
    /// Tags map, raw JSON.
    pub tags: Option<Bytes>,
    /// Publish without storing in history and without an offset (API `skip_history`).
    pub skip_history: bool,
    /// Who waits for the outcome.
    pub reply: PublishReply,
}

/// Who waits for a publish job's outcome.
#[derive(Debug, Clone, Copy)]
pub enum PublishReply {
    /// An API call: a `Published` answer with every channel's result.
    Api(ReplyTo),
    /// A client's `publish` command: its reply line, sent once the publication is accepted
    /// (under `history_fsync = always`: once it is durable).
    Conn {
        shard: usize,
        conn: u64,
        command: u32,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct ReplyTo {
    pub shard: usize,
    pub request: u64,
}

/// What the owner answers per channel of a `PublishJob`: the stream position (offset 0 when
/// the publication has none, e.g. `skip_history`) or an error code.
#[derive(Debug, Clone)]
pub struct Published {
    pub index: u32,
    pub result: Result<(u64, Arc<str>), u32>,
}

/// "Shard `from` subscribes to `channel`": one step on the owner (DESIGN invariant 3). The
/// owner registers the shard (if `register`), reads the recovery (if asked) and answers on
/// the same FIFO ring its later deliveries take, so the subscriber gets the recovered
/// publications and then exactly the live ones after them.
#[derive(Debug)]
pub struct SubscribeJob {
    pub channel: Arc<str>,
    pub from: usize,
    /// Add `from` to the channel's shard set (its first local subscriber).
    pub register: bool,
    /// Echoed back: which waiting subscribers of `from` the answer is for.
    pub ticket: u64,
    /// Recover publications after this position.
    pub recover: Option<RecoverFrom>,
}

#[derive(Debug, Clone)]
pub struct RecoverFrom {
    pub offset: u64,
    pub epoch: Box<str>,
}

/// A stream position (epoch, top offset) or an error code.
pub type PositionResult = Result<(Arc<str>, u64), u32>;

/// The owner's answer to a `SubscribeJob`.
#[derive(Debug)]
pub struct SubscribeAnswer {
    pub channel: Arc<str>,
    pub registration: bool,
    pub ticket: u64,
    /// The stream position subscribers start from, or an error code.
    pub result: PositionResult,
    pub recovery: Option<Recovery>,
}

#[derive(Debug)]
pub struct Recovery {
    pub recovered: bool,
    /// The offset the reply reports: the client's own when recovered (it advances through
    /// the publications), else the stream top.
    pub offset: u64,
    /// The missed publications, comma-joined JSON objects (empty when not recovered).
    pub publications: Vec<u8>,
}

/// Where a history answer goes.
#[derive(Debug, Clone, Copy)]
pub enum HistoryReplyTo {
    /// A client's `history` command: the owner encodes the reply line for connection `conn`.
    Conn {
        shard: usize,
        conn: u64,
        command: u32,
    },
    /// An API call waiting on `shard`.
    Api(ReplyTo),
}

#[derive(Debug)]
pub struct HistoryJob {
    pub channel: Arc<str>,
    pub limit: i32,
    pub since: Option<(u64, Box<str>)>,
    pub reverse: bool,
    pub reply: HistoryReplyTo,
}

/// A history result: comma-joined publications, epoch, top offset.
#[derive(Debug)]
pub struct HistoryPage {
    pub publications: Vec<u8>,
    pub epoch: Arc<str>,
    pub offset: u64,
}

/// Counters of one shard, summed by whoever asked for them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShardStats {
    pub connections: u64,
    pub users: u64,
    pub subscriptions: u64,
    pub channels: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub publications: u64,
    pub slow_disconnects: u64,
    /// Bytes of history segment files of the partitions this shard owns.
    pub history_bytes: u64,
    /// Publications indexed in those logs.
    pub history_records: u64,
}

impl std::ops::AddAssign for ShardStats {
    fn add_assign(&mut self, o: ShardStats) {
        self.connections += o.connections;
        self.users += o.users;
        self.subscriptions += o.subscriptions;
        self.channels += o.channels;
        self.messages_in += o.messages_in;
        self.messages_out += o.messages_out;
        self.publications += o.publications;
        self.slow_disconnects += o.slow_disconnects;
        self.history_bytes += o.history_bytes;
        self.history_records += o.history_records;
    }
}

/// Everything that crosses a ring.
#[derive(Debug)]
pub enum ShardMsg {
    /// A subscription step for the owner (see `SubscribeJob`).
    Subscribe(Box<SubscribeJob>),
    /// The owner's answer, on the ring its deliveries take.
    Subscribed(Box<SubscribeAnswer>),
    /// Shard `from` lost its last local subscriber of `channel` (to the owner).
    Unsubscribe { channel: Arc<str>, from: usize },
    /// Publications for channels the receiver owns.
    Publish(Box<PublishJob>),
    /// One encoded push frame for the receiver's local subscribers of `channel` (from the
    /// owner, in offset order).
    Deliver {
        channel: Arc<str>,
        offset: u64,
        frame: Bytes,
    },
    /// A history query for the owner.
    History(Box<HistoryJob>),
    /// The owner's answer to an API history query or `history_remove`.
    HistoryAnswer {
        request: u64,
        result: Result<Option<HistoryPage>, u32>,
    },
    /// Removes a channel's stored publications (API `history_remove`), answered with
    /// `HistoryAnswer { result: Ok(None) }`.
    HistoryRemove { channel: Arc<str>, reply: ReplyTo },
    /// A reply frame for connection `conn` of the receiving shard.
    ConnReply { conn: u64, frame: Bytes },
    /// The owner's answer to a `PublishJob` with `reply`.
    Published {
        request: u64,
        results: Vec<Published>,
    },
    /// Asks for the receiver's counters.
    StatsRequest { request: u64, from: usize },
    Stats {
        request: u64,
        shard: usize,
        stats: ShardStats,
    },
}

/// Which shards hold a long outgoing backlog. Each shard writes only its own flag; sources
/// of new traffic on every shard (connections reading commands, API calls) read all of them
/// and hold back while any is set, so a slow shard slows the whole node's intake instead of
/// letting some shard's backlog grow without bound. Shard-internal forwarding never waits on
/// it (no deadlock). A flag is pacing advice, not a synchronisation point: Relaxed suffices.
#[derive(Debug, Clone)]
pub struct Congestion(Arc<[AtomicBool]>);

impl Congestion {
    pub fn new(shards: usize) -> Self {
        Congestion((0..shards).map(|_| AtomicBool::new(false)).collect())
    }

    pub fn any(&self) -> bool {
        self.0.iter().any(|f| f.load(Ordering::Relaxed))
    }

    fn set(&self, shard: usize, congested: bool) {
        self.0[shard].store(congested, Ordering::Relaxed);
    }
}

/// The shard's sending side of the mesh with a FIFO backlog per destination: a message goes
/// straight into the ring when nothing is queued before it, else behind the queued ones, so
/// per-destination order always holds (the owner relies on it for invariant 3).
pub struct Outbox {
    links: BoundLinks<ShardMsg>,
    backlog: Vec<VecDeque<ShardMsg>>,
    congestion: Congestion,
    /// This shard's flag in `congestion`, as last written.
    congested: bool,
    /// The shard holds many publications waiting for a sync (`history_fsync = always`).
    held_pressure: bool,
}

impl Outbox {
    pub fn new(links: BoundLinks<ShardMsg>, congestion: Congestion) -> Self {
        let backlog = (0..links.shards()).map(|_| VecDeque::new()).collect();
        Outbox {
            links,
            backlog,
            congestion,
            congested: false,
            held_pressure: false,
        }
    }

    /// Publications held for durability count as backlog too.
    pub fn set_held_pressure(&mut self, pressure: bool) {
        self.held_pressure = pressure;
        self.update_congestion();
    }

    /// Sets this shard's flag from its backlogs, with hysteresis (set above `BACKLOG_HIGH`,
    /// cleared at half of it) so it does not flap.
    fn update_congestion(&mut self) {
        let longest = self.longest_backlog();
        let mark = if self.congested {
            BACKLOG_HIGH / 2
        } else {
            BACKLOG_HIGH
        };
        let congested = self.held_pressure || longest > mark;
        if congested != self.congested {
            self.congested = congested;
            self.congestion.set(self.links.shard(), congested);
        }
    }

    /// True while any shard of the node has a long backlog.
    pub fn congested_anywhere(&self) -> bool {
        self.congestion.any()
    }

    pub fn links(&mut self) -> &mut BoundLinks<ShardMsg> {
        &mut self.links
    }

    /// Sends `msg` to shard `to` (not this shard). Never blocks and never drops: a full ring
    /// queues it in the backlog and wakes this shard's loop to retry.
    pub fn send(&mut self, to: usize, msg: ShardMsg) {
        let backlog = &mut self.backlog[to];
        if backlog.is_empty() {
            if let Err(Full(msg)) = self.links.send(to, msg) {
                backlog.push_back(msg);
                self.links.wake_self();
            }
        } else {
            backlog.push_back(msg);
            if !self.congested && backlog.len() > BACKLOG_HIGH {
                self.update_congestion();
            }
        }
    }

    /// Moves backlogged messages into the rings as far as they fit; true if none are left.
    pub fn flush(&mut self) -> bool {
        let mut empty = true;
        for (to, backlog) in self.backlog.iter_mut().enumerate() {
            if backlog.is_empty() {
                continue;
            }
            self.links
                .send_iter(to, &mut std::iter::from_fn(|| backlog.pop_front()));
            empty &= backlog.is_empty();
        }
        if self.congested {
            self.update_congestion();
        }
        empty
    }

    pub fn longest_backlog(&self) -> usize {
        self.backlog.iter().map(VecDeque::len).max().unwrap_or(0)
    }

    /// Messages waiting behind the ring to `to`.
    pub fn backlog_len(&self, to: usize) -> usize {
        self.backlog[to].len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_is_stable_and_spread() {
        // Fixed values: changing the hash would move every channel's history.
        assert_eq!(partition(""), (0xcbf2_9ce4_8422_2325u64 % 256) as u32);
        assert_eq!(partition("news"), partition("news"));
        let mut seen = [false; PARTITIONS as usize];
        for i in 0..10_000 {
            seen[partition(&format!("room-{i}")) as usize] = true;
        }
        assert!(
            seen.iter().all(|&s| s),
            "10k channels cover every partition"
        );
        assert!(owner_of("news", 3) < 3);
    }

    #[test]
    fn outbox_keeps_order_behind_a_full_ring() {
        let mut links = ringcast_ring::mesh::mesh::<ShardMsg>(2, 2)
            .unwrap()
            .into_iter();
        let (a, b) = (links.next().unwrap(), links.next().unwrap());
        let mut outbox = Outbox::new(a.bind(), Congestion::new(2));
        let mut peer = b.bind();
        let stats = |request| ShardMsg::StatsRequest { request, from: 0 };
        for request in 0..5 {
            outbox.send(1, stats(request));
        }
        assert_eq!(outbox.backlog_len(1), 3);
        let mut got = Vec::new();
        for _ in 0..10 {
            outbox.flush();
            peer.recv_into(&mut got, 1);
        }
        let order: Vec<u64> = got
            .iter()
            .map(|m| match m {
                ShardMsg::StatsRequest { request, .. } => *request,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(order, [0, 1, 2, 3, 4]);
        assert!(outbox.flush());
    }
}
