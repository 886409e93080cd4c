//! `ChannelOwner`: the local engine. The state a shard keeps for the channels it owns: each
//! channel's stream position (offset, epoch, visible offset), the set of shards with local
//! subscribers, and the `HistoryLog` of every partition this shard owns. Recovery and history
//! queries are in `recovery`.
//!
//! A channel's state lives while some shard subscribes to it or a publication is held for
//! it. A channel without history has no stream (its publications carry no offset, as in
//! Centrifugo), so nothing of it outlives its last subscriber and a publication to it with
//! nobody subscribed leaves nothing behind. A channel with history published to while nobody
//! subscribes keeps its state `CHANNEL_IDLE_STATE_MS` (its log keeps the position until the
//! channel's `history_meta_ttl` runs out, never while this owner holds its state).
//!
//! Touches nothing outside itself and its logs' files: no rings, no connections.

use std::collections::VecDeque;
use std::hash::RandomState;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::sync::Arc;

use crate::clock::unix_ms;
use crate::config::{ChannelOptions, Config, Fsync, NamespaceId};
use crate::history::{
    self, ChannelSlot, FlushError, FlushJob, HistoryError, HistoryLog, OpenReport,
};
use crate::limits::{
    CHANNEL_IDLE_STATES_MAX, CHANNEL_IDLE_STATE_MS, PARTITIONS, PARTITION_DIR_DIGITS,
    STREAM_OFFSET_MAX,
};
use crate::protocol::{ClientId, ErrorCode, Publication};
use crate::router::msg::{
    HistoryPage, HistoryQuery, PresenceItem, PresenceStats, RecoverFrom, Recovery, StreamTop,
};
use crate::router::partition;

use super::presence::{Joined, PresenceTable};
use super::{Engine, LogJob, NewLog, Outcome, PublishInput, Release, ShardSet, SyncJob, Usage};

#[derive(Debug)]
pub(super) struct ChannelState {
    /// The channel's partition (an index into the owner's logs).
    pub partition: u32,
    /// Where the partition's log keeps the channel: known once a publication of it was
    /// written (appending then costs no lookup by name).
    pub slot: Option<ChannelSlot>,
    /// Where its options are (the configuration keeps them once, not every channel).
    pub namespace: NamespaceId,
    /// Offset of the last publication (0: none yet).
    pub offset: u64,
    /// Offset of the last publication handed to subscribers. Equal to `offset` except under
    /// `history_fsync = always`, where a publication is held until its record is durable;
    /// subscribe answers and history stop here so nothing is both recovered and delivered.
    pub visible: u64,
    pub shards: ShardSet,
}

#[derive(Debug)]
pub struct ChannelOwner {
    shard: usize,
    shards: usize,
    pub(super) config: Config,
    history_dir: PathBuf,
    /// The empty epoch of channels without history, shared.
    no_stream: Arc<str>,
    /// States of history channels published to while nobody subscribed, with when, oldest
    /// first: dropped after `CHANNEL_IDLE_STATE_MS` if still idle (see the module doc).
    idle: VecDeque<(Arc<str>, u64)>,
    /// The history log of each owned partition that has one (opened at start, created on a
    /// history channel's first use), indexed by partition.
    pub(super) logs: Logs,
    /// Owned partitions without a log while history is configured (0 when it is not): the
    /// shard asks `missing_log` only while some remain.
    missing_logs: u32,
    /// Partitions whose log creation off the shard failed: work in them creates it inline.
    failed_logs: Vec<u32>,
    /// Partitions whose logs staged appends since the last `land`.
    staged: Vec<u32>,
    /// By name; the key is the channel's one shared name (the log's, once it has one).
    /// hashbrown for `get_key_value_mut` (the state need not repeat the name), with the
    /// standard library's seeded SipHash: names come from clients.
    pub(super) channels: hashbrown::HashMap<Arc<str>, ChannelState, RandomState>,
    /// Who is in each owned channel. Apart from the channel states: presence comes and goes
    /// with subscriptions, not with the stream, and a channel without presence pays nothing
    /// for it in its state.
    presence: PresenceTable,
}

impl ChannelOwner {
    /// An owner with no logs opened (tests and benches).
    pub fn new(shard: usize, shards: usize, config: Config) -> Result<Self, String> {
        Ok(ChannelOwner {
            shard,
            shards,
            history_dir: config.history_storage.data_dir.join("history"),
            config,
            no_stream: Arc::from(""),
            idle: VecDeque::new(),
            logs: Logs::default(),
            missing_logs: 0,
            failed_logs: Vec::new(),
            staged: Vec::new(),
            channels: hashbrown::HashMap::with_hasher(RandomState::new()),
            presence: PresenceTable::default(),
        })
    }

    /// The owner of shard `shard`, with the logs of the partitions it owns opened (scanned,
    /// verified, torn tails cut). Returns what each open found. A partition whose disk is
    /// full is opened read-only in effect (its report says so); any other error stops the
    /// start, naming the file.
    pub fn open(
        shard: usize,
        shards: usize,
        config: Config,
    ) -> Result<(Self, Vec<OpenReport>), String> {
        let mut owner = ChannelOwner::new(shard, shards, config)?;
        let mut reports = Vec::new();
        let owned = (0..PARTITIONS).filter(|p| *p as usize % shards == shard);
        for p in owned.clone() {
            if owner.partition_dir(p).exists() {
                reports.extend(owner.open_log(p)?);
            }
        }
        let channel = &owner.config.channel;
        let history_configured = channel.without_namespace.history()
            || channel.namespaces.iter().any(|ns| ns.options.history());
        if history_configured {
            owner.missing_logs = owned.filter(|p| owner.logs.get(*p).is_none()).count() as u32;
        }
        Ok((owner, reports))
    }

    fn partition_dir(&self, partition: u32) -> PathBuf {
        self.history_dir
            .join(format!("{partition:0width$}", width = PARTITION_DIR_DIGITS))
    }

    /// Opens (or creates) the log of `partition` unless it is open; returns what the open
    /// found when it opened one.
    fn open_log(&mut self, partition: u32) -> Result<Option<OpenReport>, String> {
        if self.logs.get(partition).is_some() {
            return Ok(None);
        }
        let opened = open_partition_log(
            self.partition_dir(partition),
            partition,
            self.config.history_storage.segment_size,
        )?;
        Ok(Some(self.adopt_log(partition, opened)))
    }

    /// Puts an opened log in place: its retention policies set, what its open found
    /// reported.
    fn adopt_log(&mut self, partition: u32, opened: NewLog) -> OpenReport {
        let NewLog { mut log, report } = opened;
        let config = &self.config;
        log.set_policies(|channel| policy_of(config, config.channel_options(channel)));
        for warning in &report.truncated {
            eprintln!("ringcast: warning: {warning}");
        }
        if let Some(why) = &report.epoch_reset {
            eprintln!("ringcast: warning: partition {partition}: new epoch: {why}");
        }
        if let Some(why) = &report.no_space {
            eprintln!(
                "ringcast: warning: partition {partition}: disk full ({why}); its history is \
                 served, new publications to it fail with error 100 until there is room"
            );
        }
        self.logs.insert(partition, log);
        self.missing_logs = self.missing_logs.saturating_sub(1);
        report
    }

    pub(super) fn state(&mut self, channel: &str) -> Result<&mut ChannelState, ErrorCode> {
        self.state_named(channel, None)
    }

    /// `state`, keeping `name` (the subscriber's shard's allocation of the name) when a new
    /// state needs one and the log has none to share.
    fn state_named(
        &mut self,
        channel: &str,
        name: Option<&Arc<str>>,
    ) -> Result<&mut ChannelState, ErrorCode> {
        let new_name = || name.cloned().unwrap_or_else(|| Arc::from(channel));
        debug_assert_eq!(
            partition::owner_of(channel, self.shards),
            self.shard,
            "channel {channel} routed to a shard that does not own it"
        );
        if !self.channels.contains_key(channel) {
            let namespace = self
                .config
                .channel
                .namespace_of(channel)
                .ok_or(ErrorCode::UnknownChannel)?;
            let options = *self.config.channel.options_of(namespace);
            let p = partition::partition(channel);
            let (name, slot, offset) = if options.history() {
                self.open_log(p).map_err(|e| {
                    eprintln!("ringcast: {e}");
                    ErrorCode::Internal
                })?;
                let log = self.logs.get(p).ok_or(ErrorCode::Internal)?;
                match log.slot(channel) {
                    // The log's name is shared: one allocation per channel name.
                    Some(slot) => {
                        let (name, top) = log.channel_at(slot);
                        (name.clone(), Some(slot), top)
                    }
                    // Not in the log (never published, or its position dropped): its
                    // stream starts above the floor.
                    None => (new_name(), None, log.floor()),
                }
            } else {
                (new_name(), None, 0)
            };
            self.channels.insert(
                name,
                ChannelState {
                    partition: p,
                    slot,
                    namespace,
                    offset,
                    visible: offset,
                    shards: ShardSet::default(),
                },
            );
        }
        self.channels.get_mut(channel).ok_or(ErrorCode::Internal)
    }

    /// The log of a history channel whose state exists (`state` opened it).
    pub(super) fn log_of(&self, channel: &str) -> Result<&HistoryLog, ErrorCode> {
        self.logs
            .get(partition::partition(channel))
            .ok_or(ErrorCode::Internal)
    }

    fn log_of_mut(&mut self, channel: &str) -> Result<&mut HistoryLog, ErrorCode> {
        self.logs
            .get_mut(partition::partition(channel))
            .ok_or(ErrorCode::Internal)
    }

    /// Drops the state of a channel nobody subscribes to and nothing is held for: a history
    /// channel's log has the offset and epoch, so its state comes back as it was; a channel
    /// without history has no stream to keep. Called when a shard leaves, after history
    /// queries, and for channels published to while idle once `CHANNEL_IDLE_STATE_MS` passed
    /// (`forget_idle`); returns whether the state is gone.
    pub(super) fn forget_if_idle(&mut self, channel: &str) -> bool {
        let Some(state) = self.channels.get(channel) else {
            return true;
        };
        let history = self.config.channel.options_of(state.namespace).history();
        let idle = state.shards.is_empty() && (!history || state.visible == state.offset);
        if idle {
            self.channels.remove(channel);
        }
        idle
    }

    /// Drops the idle states published-to channels left that waited `CHANNEL_IDLE_STATE_MS`.
    /// A state still held for a sync waits another round; one subscribed to again leaves the
    /// queue (its last unsubscribe drops it).
    fn forget_idle(&mut self, now_ms: u64) {
        let mut waited = Vec::new();
        while let Some(&(_, since)) = self.idle.front() {
            if since.saturating_add(CHANNEL_IDLE_STATE_MS) > now_ms {
                break;
            }
            waited.extend(self.forget_oldest_idle());
        }
        self.idle
            .extend(waited.into_iter().map(|name| (name, now_ms)));
    }

    /// Queues the state of a history channel a publication created while nobody subscribed;
    /// past `CHANNEL_IDLE_STATES_MAX` waiting, the oldest goes at once.
    fn queue_idle(&mut self, name: Arc<str>, now_ms: u64) {
        self.idle.push_back((name, now_ms));
        if self.idle.len() > CHANNEL_IDLE_STATES_MAX {
            if let Some(held) = self.forget_oldest_idle() {
                self.idle.push_back((held, now_ms));
            }
        }
    }

    /// Takes the oldest idle entry and drops its state if it is still idle; returns its name
    /// if the state is held for a sync (to be queued again).
    fn forget_oldest_idle(&mut self) -> Option<Arc<str>> {
        let (name, _) = self.idle.pop_front()?;
        let held = self
            .channels
            .get(&name)
            .is_some_and(|s| s.shards.is_empty() && s.visible != s.offset);
        (!self.forget_if_idle(&name) && held).then_some(name)
    }

    /// States this owner holds (subscribed channels, idle ones waiting to be dropped).
    pub fn channel_states(&self) -> usize {
        self.channels.len()
    }

    /// Channels with subscribers somewhere.
    pub fn active_channels(&self) -> usize {
        self.channels
            .values()
            .filter(|s| !s.shards.is_empty())
            .count()
    }
}

/// Opens (or creates) a partition's log: blocking, on the shard at start or on a blocking
/// thread (`LogJob`) for a partition's first use.
fn open_partition_log(dir: PathBuf, partition: u32, segment_size: u64) -> Result<NewLog, String> {
    HistoryLog::open(&dir, partition, segment_size)
        .map(|(log, report)| NewLog { log, report })
        .map_err(|e| format!("history of partition {partition}: {e}"))
}

/// The history logs of one owner, indexed by partition (at most `PARTITIONS`; a lookup is an
/// index, not a hash).
#[derive(Debug)]
pub(super) struct Logs(Vec<Option<HistoryLog>>);

impl Default for Logs {
    fn default() -> Self {
        Logs((0..PARTITIONS).map(|_| None).collect())
    }
}

impl Logs {
    pub fn get(&self, partition: u32) -> Option<&HistoryLog> {
        self.0.get(partition as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, partition: u32) -> Option<&mut HistoryLog> {
        self.0.get_mut(partition as usize)?.as_mut()
    }

    fn insert(&mut self, partition: u32, log: HistoryLog) {
        assert!(partition < PARTITIONS, "partition {partition} out of range");
        debug_assert_eq!(log.partition(), partition);
        self.0[partition as usize] = Some(log);
    }

    pub fn iter(&self) -> impl Iterator<Item = &HistoryLog> + '_ {
        self.0.iter().flatten()
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut HistoryLog> + '_ {
        self.0.iter_mut().flatten()
    }
}

/// A channel's epoch: its partition log's for a channel with history, empty (no stream) for
/// the others. Not kept per channel: every channel of a partition shares it.
fn epoch_of(
    logs: &Logs,
    no_stream: &Arc<str>,
    partition: u32,
    options: &ChannelOptions,
) -> Arc<str> {
    match logs.get(partition) {
        Some(log) if options.history() => log.epoch().clone(),
        _ => no_stream.clone(),
    }
}

impl ChannelOwner {
    /// `epoch_of` a channel's partition and options.
    pub(super) fn epoch(&self, partition: u32, options: &ChannelOptions) -> Arc<str> {
        epoch_of(&self.logs, &self.no_stream, partition, options)
    }
}

/// A log's flush job as the shard runs it: a failed sync is an error (the shard stops, see
/// `shard::durability`); a retired segment that could not be deleted is only reported.
fn sync_job(partition: u32, job: FlushJob) -> SyncJob {
    Box::new(move || match job.run() {
        Ok(()) => Ok(()),
        Err(FlushError::Sync(e)) => Err(e),
        Err(FlushError::Delete(e)) => {
            eprintln!(
                "ringcast: history retention of partition {partition}: {e}; it stays on disk \
                 until a restart retires it again"
            );
            Ok(())
        }
    })
}

/// Appends a publication of a history channel at `offset` to its partition's log (by the
/// slot the log keeps it in, once known).
fn append(
    log: &mut HistoryLog,
    name: &Arc<str>,
    state: &mut ChannelState,
    policy: history::Policy,
    offset: u64,
    now_ms: u64,
    input: &PublishInput<'_>,
) -> Result<(), ErrorCode> {
    let entry = history::Entry {
        data: input.data,
        info: input.info.map(|b| &b[..]),
        tags: input.tags.map(|b| &b[..]),
    };
    let written = match state.slot {
        Some(slot) => log.append_at(slot, offset, now_ms, entry, policy),
        None => log
            .append_new(name, offset, now_ms, entry, policy)
            .map(|slot| state.slot = Some(slot)),
    };
    written.map_err(|e| {
        eprintln!("ringcast: history append to {name:?}: {e}");
        match e {
            // A publication larger than a record can be: the request's fault.
            HistoryError::TooLarge { .. } => ErrorCode::BadRequest,
            _ => ErrorCode::Internal,
        }
    })
}

/// The publication `input` makes at `offset` (none: outside any stream).
fn publication_of(input: &PublishInput<'_>, offset: Option<NonZeroU64>) -> Publication {
    Publication {
        offset,
        data: input.data.clone(),
        info: input.info.cloned(),
        tags: input.tags.cloned(),
    }
}

/// A channel's history policy from its options (none, or no history: keep no publication;
/// the position still goes after the meta ttl).
fn policy_of(config: &Config, options: Option<ChannelOptions>) -> history::Policy {
    let meta_ttl_ms = config.channel.history_meta_ttl_ms(
        options
            .as_ref()
            .unwrap_or(&config.channel.without_namespace),
    );
    match options.filter(ChannelOptions::history) {
        Some(o) => history::Policy {
            keep: o.history_size,
            ttl_ms: o.history_ttl_ms(),
            meta_ttl_ms,
        },
        None => history::Policy {
            keep: 0,
            ttl_ms: 0,
            meta_ttl_ms,
        },
    }
}

impl Engine for ChannelOwner {
    fn publish(&mut self, channel: &str, input: PublishInput<'_>) -> Result<Outcome, ErrorCode> {
        let hold = self.config.history_storage.fsync == Fsync::Always;
        let now = input.time_ms;
        // One lookup for a channel whose state exists (the common path: a broadcast pays it
        // per channel); a new one is created first.
        let (name, state) = match self.channels.get_key_value_mut(channel) {
            Some(entry) => entry,
            None => {
                let options = self
                    .config
                    .channel_options(channel)
                    .ok_or(ErrorCode::UnknownChannel)?;
                if !options.history() {
                    // No stream and nobody subscribed: nothing to deliver, nothing to keep.
                    return Ok(Outcome {
                        channel: None,
                        publication: publication_of(&input, None),
                        epoch: self.no_stream.clone(),
                        shards: ShardSet::default(),
                        release: Release::Now,
                    });
                }
                self.state(channel)?;
                let name = self.channels.get_key_value(channel).map(|(n, _)| n.clone());
                self.queue_idle(name.ok_or(ErrorCode::Internal)?, now);
                self.channels
                    .get_key_value_mut(channel)
                    .ok_or(ErrorCode::Internal)?
            }
        };
        let options = *self.config.channel.options_of(state.namespace);
        let next = state.offset + 1;
        // Only a channel with history has a stream; `skip_history` publications take no
        // place in it.
        let takes_offset = options.history() && !input.skip_history;
        let offset = if takes_offset {
            if next > STREAM_OFFSET_MAX {
                eprintln!(
                    "ringcast: channel {channel:?} reached the largest offset {STREAM_OFFSET_MAX}"
                );
                return Err(ErrorCode::Internal);
            }
            let log = self
                .logs
                .get_mut(state.partition)
                .ok_or(ErrorCode::Internal)?;
            let first_staged = !log.has_staged();
            let policy = policy_of(&self.config, Some(options));
            append(log, name, state, policy, next, now, &input)?;
            if first_staged && log.has_staged() {
                self.staged.push(state.partition);
            }
            state.offset = next;
            if !hold {
                state.visible = next;
            }
            NonZeroU64::new(next)
        } else {
            None
        };
        let release = if hold && options.history() {
            Release::AfterSync
        } else {
            Release::Now
        };
        Ok(Outcome {
            channel: (release == Release::AfterSync || !state.shards.is_empty())
                .then(|| name.clone()),
            publication: publication_of(&input, offset),
            epoch: epoch_of(&self.logs, &self.no_stream, state.partition, &options),
            shards: state.shards,
            release,
        })
    }

    fn land(&mut self) {
        for p in self.staged.drain(..) {
            if let Some(log) = self.logs.get_mut(p) {
                log.land();
            }
        }
    }

    fn release(&mut self, channel: &str, offset: u64) -> ShardSet {
        let Some(state) = self.channels.get_mut(channel) else {
            return ShardSet::default();
        };
        if offset > 0 {
            debug_assert_eq!(
                offset,
                state.visible + 1,
                "held publications release in order"
            );
            state.visible = offset;
        }
        state.shards
    }

    fn subscribe(
        &mut self,
        channel: &Arc<str>,
        from: usize,
        register: bool,
        recover: Option<&RecoverFrom>,
    ) -> (Result<StreamTop, ErrorCode>, Option<Recovery>) {
        let state = match self.state_named(channel, Some(channel)) {
            Ok(state) => state,
            Err(code) => return (Err(code), None),
        };
        if register {
            state.shards.insert(from);
        }
        let (namespace, top, partition) = (state.namespace, state.visible, state.partition);
        let options = *self.config.channel.options_of(namespace);
        let epoch = self.epoch(partition, &options);
        let recovery = recover.map(|from| self.recover(channel, &options, from, &epoch, top));
        (Ok(StreamTop { epoch, offset: top }), recovery)
    }

    fn remove_shard(&mut self, channel: &str, shard: usize) {
        if let Some(state) = self.channels.get_mut(channel) {
            state.shards.remove(shard);
        }
        self.forget_if_idle(channel);
    }

    fn subscribers(&self, channel: &str) -> ShardSet {
        self.channels
            .get(channel)
            .map_or(ShardSet::default(), |state| state.shards)
    }

    fn presence_add(&mut self, channel: &Arc<str>, item: PresenceItem, join_leave: bool) -> Joined {
        self.presence.join(channel, item, join_leave)
    }

    fn presence_remove(&mut self, channel: &str, client: ClientId) -> Option<(PresenceItem, bool)> {
        self.presence.leave(channel, client)
    }

    fn presence(&self, channel: &str) -> Vec<PresenceItem> {
        self.presence.list(channel)
    }

    fn presence_stats(&self, channel: &str) -> PresenceStats {
        self.presence.stats(channel)
    }

    fn presence_channels(&self) -> Vec<Arc<str>> {
        self.presence.channels()
    }

    fn history(&mut self, channel: &str, query: &HistoryQuery) -> Result<HistoryPage, ErrorCode> {
        self.query_history(channel, query)
    }

    fn remove_history(&mut self, channel: &str) -> Result<(), ErrorCode> {
        let options = self
            .config
            .channel_options(channel)
            .ok_or(ErrorCode::UnknownChannel)?;
        if !options.history() {
            return Ok(());
        }
        self.state(channel)?;
        let removed = self.log_of_mut(channel)?.remove(channel).map_err(|e| {
            eprintln!("ringcast: history remove of {channel:?}: {e}");
            ErrorCode::Internal
        });
        self.forget_if_idle(channel);
        removed
    }

    fn retain(&mut self) -> Vec<SyncJob> {
        let now = unix_ms();
        self.forget_idle(now);
        let mut jobs = Vec::new();
        // A position whose meta ttl ran out stays while this owner holds the channel: its
        // state's offset and slot refer to it.
        let held = &self.channels;
        for log in self.logs.iter_mut() {
            let p = log.partition();
            match log.retain(now, |name| held.contains_key(name)) {
                Ok(None) => {}
                Ok(Some(job)) => jobs.push(sync_job(p, job)),
                Err(e) => eprintln!("ringcast: history retention of partition {p}: {e}"),
            }
        }
        jobs
    }

    fn take_syncs(&mut self) -> Vec<SyncJob> {
        self.logs
            .iter_mut()
            .filter_map(|log| Some(sync_job(log.partition(), log.take_flush()?)))
            .collect()
    }

    fn may_miss_logs(&self) -> bool {
        self.missing_logs > 0
    }

    fn missing_log(&self, channel: &str) -> Option<u32> {
        if self.missing_logs == 0 {
            return None;
        }
        let namespace = self.config.channel.namespace_of(channel)?;
        if !self.config.channel.options_of(namespace).history() {
            return None;
        }
        let p = partition::partition(channel);
        (self.logs.get(p).is_none() && !self.failed_logs.contains(&p)).then_some(p)
    }

    fn log_job(&self, partition: u32) -> LogJob {
        let dir = self.partition_dir(partition);
        let segment_size = self.config.history_storage.segment_size;
        Box::new(move || open_partition_log(dir, partition, segment_size))
    }

    fn install_log(&mut self, partition: u32, log: Result<NewLog, String>) {
        match log {
            Ok(opened) if self.logs.get(partition).is_none() => {
                self.adopt_log(partition, opened);
            }
            // Opened meanwhile by work that could not wait (it does not happen: the shard
            // holds the partition's work until now).
            Ok(_) => {}
            Err(e) => {
                eprintln!("ringcast: {e}");
                self.failed_logs.push(partition);
            }
        }
    }

    fn usage(&self) -> Usage {
        let (history_bytes, history_records) =
            self.logs.iter().fold((0, 0), |(bytes, records), log| {
                (
                    bytes + log.disk_bytes(),
                    records + log.indexed_records() as u64,
                )
            });
        let (history_appends, history_appended_bytes) =
            self.logs.iter().fold((0, 0), |(n, bytes), log| {
                let (appended, appended_bytes) = log.appended();
                (n + appended, bytes + appended_bytes)
            });
        Usage {
            history_appends,
            history_appended_bytes,
            history_segments: self.logs.iter().map(|l| l.segments() as u64).sum(),
            history_bytes,
            history_records,
            active_channels: self.active_channels() as u64,
            channel_states: self.channel_states() as u64,
            history_channels: self
                .logs
                .iter()
                .map(HistoryLog::channel_count)
                .sum::<usize>() as u64,
            presence_entries: self.presence.entries() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GoDuration;
    use bytes::Bytes;

    fn input(data: &Bytes) -> PublishInput<'_> {
        PublishInput {
            data,
            info: None,
            tags: None,
            skip_history: false,
            time_ms: unix_ms(),
        }
    }

    #[test]
    fn a_channel_state_stays_small() {
        // A bucket of the owner's table: a broadcast loads one per channel, and every
        // subscribed channel keeps one.
        let bucket = std::mem::size_of::<(Arc<str>, ChannelState)>();
        assert!(bucket <= 80, "{bucket}");
    }

    #[test]
    fn channels_without_history_have_no_stream_and_no_state_without_subscribers() {
        let mut owner = ChannelOwner::new(0, 1, Config::default()).unwrap();
        owner.subscribe(&"a".into(), 0, true, None).0.unwrap();
        owner.subscribe(&"a".into(), 3, true, None).0.unwrap();
        let data = Bytes::from_static(b"{}");
        let first = owner.publish("a", input(&data)).unwrap();
        let other = owner.publish("b", input(&data)).unwrap();
        // As in Centrifugo: no offset, no epoch (the publish result is `{}`).
        assert_eq!((first.publication.offset, &*first.epoch), (None, ""));
        assert_eq!(other.publication.offset, None);
        assert_eq!(first.shards.iter().collect::<Vec<_>>(), [0, 3]);
        assert_eq!(first.release, Release::Now);
        assert!(other.shards.is_empty());
        assert_eq!(
            owner.channel_states(),
            1,
            "publishing to \"b\" left nothing"
        );
        owner.remove_shard("a", 0);
        let shards = owner.publish("a", input(&data)).unwrap().shards;
        assert_eq!(shards.iter().collect::<Vec<_>>(), [3]);
        owner.remove_shard("a", 3);
        assert_eq!(
            owner.channel_states(),
            0,
            "nothing outlives the last subscriber"
        );
        let query = HistoryQuery {
            limit: 10,
            since: None,
            reverse: false,
        };
        assert_eq!(
            owner.history("a", &query).unwrap_err(),
            ErrorCode::NotAvailable
        );
        assert_eq!(owner.channel_states(), 0);
    }

    #[test]
    fn idle_states_of_history_channels_are_dropped_and_come_back_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.history_storage.data_dir = dir.path().to_path_buf();
        config.channel.without_namespace.history_size = 10;
        config.channel.without_namespace.history_ttl = GoDuration::from_millis(300_000);
        let mut owner = ChannelOwner::new(0, 1, config).unwrap();
        let data = Bytes::from_static(b"{}");
        let offset = |o: Outcome| o.publication.offset.map_or(0, NonZeroU64::get);
        assert_eq!(offset(owner.publish("h", input(&data)).unwrap()), 1);
        assert_eq!(offset(owner.publish("h", input(&data)).unwrap()), 2);
        owner.subscribe(&"s".into(), 1, true, None).0.unwrap();
        assert_eq!(offset(owner.publish("s", input(&data)).unwrap()), 1);
        assert_eq!(owner.channel_states(), 2);

        let now = unix_ms();
        owner.forget_idle(now);
        assert_eq!(owner.channel_states(), 2, "not idle long enough yet");
        owner.forget_idle(now + CHANNEL_IDLE_STATE_MS);
        assert_eq!(
            owner.channel_states(),
            1,
            "\"h\" dropped, \"s\" is subscribed"
        );
        assert_eq!(
            owner.usage().history_channels,
            2,
            "the log keeps both positions"
        );
        let again = owner.publish("h", input(&data)).unwrap();
        assert_eq!(offset(again), 3, "the stream goes on from the log");

        // A flood of new names: at most CHANNEL_IDLE_STATES_MAX states wait, at any moment.
        owner.forget_idle(now + 2 * CHANNEL_IDLE_STATE_MS);
        for i in 0..CHANNEL_IDLE_STATES_MAX + 10 {
            owner.publish(&format!("n{i}"), input(&data)).unwrap();
        }
        assert_eq!(owner.channel_states(), 1 + CHANNEL_IDLE_STATES_MAX);
    }
}
