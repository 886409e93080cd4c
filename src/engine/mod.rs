//! The engine: the owner side of a channel (DESIGN invariants 2, 3, 7): offsets and epochs,
//! history, the set of shards with subscribers, durability holds. `Engine` is the boundary the
//! shard calls for the channels it owns; `ChannelOwner` implements it over the local
//! `HistoryLog`s, and a Redis-backed engine (several nodes sharing channels) implements the
//! same calls later.
//!
//! Imports `history`, `config`, `protocol`, `router::{msg, partition}`, `limits`, `clock`,
//! `rand`. Touches no rings and no connections: the shard routes what it returns.

pub mod owner;
pub mod presence;
mod recovery;
pub mod redis;
pub mod redis_instances;
pub mod shard_set;

use std::sync::Arc;

use bytes::Bytes;

use crate::protocol::{ClientId, ErrorCode, Publication};
use crate::router::msg::{
    HistoryPage, HistoryQuery, PresenceItem, PresenceStats, RecoverFrom, Recovery, StreamTop,
};

pub use owner::ChannelOwner;
pub use presence::Joined;
pub use shard_set::ShardSet;

/// A publication handed to its channel's owner.
#[derive(Debug, Clone, Copy)]
pub struct PublishInput<'a> {
    /// Raw JSON, newlines already stripped.
    pub data: &'a Bytes,
    /// ClientInfo of a client-side publisher.
    pub info: Option<&'a Bytes>,
    pub tags: Option<&'a Bytes>,
    /// No history record and no offset (API `skip_history`).
    pub skip_history: bool,
    /// When it was published (unix ms; read once per batch, not per channel).
    pub time_ms: u64,
}

/// When an accepted publication may reach subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Now.
    Now,
    /// Once the sync covering its record returns (`history_fsync = always`); then
    /// `Engine::release` says to which shards.
    AfterSync,
}

/// One publication as its owner accepted it.
#[derive(Debug)]
pub struct Outcome {
    /// The channel, when a delivery needs it: subscribers now, or a publication held for its
    /// sync (delivered then to whoever subscribes). `None` otherwise, which spares a
    /// broadcast a reference count per channel nobody listens to.
    pub channel: Option<Arc<str>>,
    /// With its offset, when it has one.
    pub publication: Publication,
    pub epoch: Arc<str>,
    /// The shards with subscribers now.
    pub shards: ShardSet,
    pub release: Release,
}

/// Work that makes what the engine stored so far durable. Blocking: the shard runs it on a
/// blocking thread, never on its core.
pub type SyncJob = Box<dyn FnOnce() -> std::io::Result<()> + Send>;

/// Creates a partition's log (directory, `EPOCH`, first segment, reserved space): blocking
/// filesystem work, so the shard runs it on a blocking thread and gives the result to
/// `Engine::install_log` (DESIGN: no blocking work on a shard).
pub type LogJob = Box<dyn FnOnce() -> Result<NewLog, String> + Send>;

/// A log a `LogJob` created, for `Engine::install_log`.
pub struct NewLog {
    pub(crate) log: crate::history::HistoryLog,
    pub(crate) report: crate::history::OpenReport,
}

/// What the engine holds, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub history_bytes: u64,
    pub history_records: u64,
    /// Channels with subscribers somewhere.
    pub active_channels: u64,
    /// Channel states held (subscribed channels and idle ones waiting to be dropped).
    pub channel_states: u64,
    /// Channels whose position the history logs keep.
    pub history_channels: u64,
    /// Presence entries over every owned channel.
    pub presence_entries: u64,
    /// Publications the logs wrote since the start, and their payload bytes.
    pub history_appends: u64,
    pub history_appended_bytes: u64,
    /// Segment files the logs hold.
    pub history_segments: u64,
}

/// The calls a shard makes for the channels it owns. Errors are reply codes.
pub trait Engine {
    /// Assigns the next offset (unless the publication has none), stores the record when the
    /// channel has history.
    fn publish(&mut self, channel: &str, input: PublishInput<'_>) -> Result<Outcome, ErrorCode>;

    /// Puts the records of the publishes since the last call in the files, together (see
    /// `HistoryLog::land`): called after each batch of `publish` calls, before anyone hears
    /// of them.
    fn land(&mut self);

    /// A held publication's record is durable: it becomes visible; returns the shards to
    /// deliver it to now.
    fn release(&mut self, channel: &str, offset: u64) -> ShardSet;

    /// One subscription step: registers `from` when asked and answers with the stream
    /// position and, when asked, the recovery (DESIGN invariant 3).
    fn subscribe(
        &mut self,
        channel: &Arc<str>,
        from: usize,
        register: bool,
        recover: Option<&RecoverFrom>,
    ) -> (Result<StreamTop, ErrorCode>, Option<Recovery>);

    /// Shard `shard` has no local subscribers of `channel` any more.
    fn remove_shard(&mut self, channel: &str, shard: usize);

    /// The shards with subscribers of `channel` now (where its join and leave pushes go).
    fn subscribers(&self, channel: &str) -> ShardSet;

    /// Records a subscriber's presence in `channel` (`join_leave`: its joins and leaves are
    /// announced).
    fn presence_add(&mut self, channel: &Arc<str>, item: PresenceItem, join_leave: bool) -> Joined;

    /// Removes `client` from `channel`'s presence: its entry, and whether to announce it.
    fn presence_remove(&mut self, channel: &str, client: ClientId) -> Option<(PresenceItem, bool)>;

    /// Every presence entry of `channel`.
    fn presence(&self, channel: &str) -> Vec<PresenceItem>;

    /// `channel`'s presence counts (kept, not computed).
    fn presence_stats(&self, channel: &str) -> PresenceStats;

    /// The channels with presence entries.
    fn presence_channels(&self) -> Vec<Arc<str>>;

    /// A `history` query (reference §6).
    fn history(&mut self, channel: &str, query: &HistoryQuery) -> Result<HistoryPage, ErrorCode>;

    /// Drops the channel's stored publications, keeping its position.
    fn remove_history(&mut self, channel: &str) -> Result<(), ErrorCode>;

    /// Retention over everything stored: drops what the policies no longer serve and returns
    /// the blocking work it leaves (syncing carried positions, then deleting retired
    /// segments), to run off the core one job after another, in order.
    fn retain(&mut self) -> Vec<SyncJob>;

    /// The work that makes everything stored so far durable.
    fn take_syncs(&mut self) -> Vec<SyncJob>;

    fn usage(&self) -> Usage;

    /// True while some partition this owner owns may still need its log created (history is
    /// configured and not every owned partition has a log): only then need the shard ask
    /// `missing_log`.
    fn may_miss_logs(&self) -> bool;

    /// The partition whose log the work on `channel` (a subscribe or a publish) would create
    /// first, if any: a channel with history in a partition used for the first time.
    fn missing_log(&self, channel: &str) -> Option<u32>;

    /// The blocking work that creates `partition`'s log.
    fn log_job(&self, partition: u32) -> LogJob;

    /// Takes the log a `log_job` created. On an error, later work in the partition tries to
    /// create the log itself (on the shard) and answers 100 if that fails too, as before.
    fn install_log(&mut self, partition: u32, log: Result<NewLog, String>);
}
