//! `ChannelOwner`: the state a shard keeps for the channels it owns (DESIGN invariants 2, 3
//! and 7): each channel's stream position (offset, epoch), the set of shards with local
//! subscribers, and the `HistoryLog` of every partition this shard owns. Publishing assigns
//! the next offset, appends to the log when the channel has history, and encodes the push
//! frame once (invariant 4); the caller (`shard`) sends that one `Bytes` to every shard in
//! the set. Subscribing (with or without recovery) and history queries are answered here, in
//! one step on the owner's core.
//!
//! Touches nothing outside itself and its logs' files: no rings, no connections.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::{ChannelOptions, Config};
use crate::history::{FlushJob, HistoryError, HistoryLog, OpenReport, StoredPublication};
use crate::protocol::{self, code};
use crate::router::{partition, HistoryPage, PositionResult, RecoverFrom, Recovery, PARTITIONS};
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
    options: ChannelOptions,
    /// The log's epoch for channels with history, this run's for the others.
    epoch: Arc<str>,
    /// Offset of the last publication (0: none yet).
    offset: u64,
    /// Offset of the last publication handed to subscribers. Equal to `offset` except under
    /// `history_fsync = always`, where a publication is held until its record is durable;
    /// subscribe answers and history stop here so nothing is both recovered and delivered.
    visible: u64,
    shards: ShardSet,
}

/// One publication as its owner produced it.
#[derive(Debug)]
pub struct Outcome {
    pub channel: Arc<str>,
    /// 0 when the publication has no offset (`skip_history` on a channel with history).
    pub offset: u64,
    pub epoch: Arc<str>,
    /// The complete WebSocket frame every subscriber receives.
    pub frame: Bytes,
    pub shards: ShardSet,
    /// True when the publication must wait for its record to be durable before it is
    /// delivered and acknowledged (`history_fsync = always`); see `release`.
    pub held: bool,
}

#[derive(Debug)]
pub struct ChannelOwner {
    shard: usize,
    shards: usize,
    config: Config,
    history_dir: PathBuf,
    /// Epochs for channels without history, random per start: their offsets live in memory
    /// only, so a restart starts a new stream.
    run_epochs: Vec<Arc<str>>,
    /// The history log of each owned partition that has one (opened at start, created on a
    /// history channel's first use).
    logs: HashMap<u32, HistoryLog>,
    channels: HashMap<Arc<str>, ChannelState>,
}

/// Current wall-clock time in Unix milliseconds (history times survive restarts).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ChannelOwner {
    /// An owner with no logs opened (tests and benches).
    pub fn new(shard: usize, shards: usize, config: Config) -> Self {
        let run_epochs = (0..PARTITIONS).map(|_| random_epoch().into()).collect();
        ChannelOwner {
            shard,
            shards,
            history_dir: config.data_dir.join("history"),
            config,
            run_epochs,
            logs: HashMap::new(),
            channels: HashMap::new(),
        }
    }

    /// The owner of shard `shard`, with the logs of the partitions it owns opened (scanned,
    /// verified, torn tails cut). Returns what each open found.
    pub fn open(
        shard: usize,
        shards: usize,
        config: Config,
    ) -> Result<(Self, Vec<OpenReport>), String> {
        let mut owner = ChannelOwner::new(shard, shards, config);
        let mut reports = Vec::new();
        for p in (0..PARTITIONS).filter(|p| *p as usize % shards == shard) {
            if owner.partition_dir(p).exists() {
                reports.extend(owner.open_log(p)?);
            }
        }
        Ok((owner, reports))
    }

    fn partition_dir(&self, partition: u32) -> PathBuf {
        self.history_dir.join(format!("{partition:03}"))
    }

    /// Opens (or creates) the log of `partition` unless it is open; returns what the open
    /// found when it opened one.
    fn open_log(&mut self, partition: u32) -> Result<Option<OpenReport>, String> {
        if self.logs.contains_key(&partition) {
            return Ok(None);
        }
        {
            let dir = self.partition_dir(partition);
            let (mut log, report) =
                HistoryLog::open(&dir, partition, self.config.history_segment_bytes)
                    .map_err(|e| format!("history of partition {partition}: {e}"))?;
            let config = &self.config;
            log.set_policies(|channel| {
                config
                    .channel_options(channel)
                    .filter(ChannelOptions::history)
                    .map_or((0, 0), |o| (o.history_size, o.history_ttl_ms))
            });
            for warning in &report.truncated {
                eprintln!("ringcast: warning: {warning}");
            }
            if let Some(why) = &report.epoch_reset {
                eprintln!("ringcast: warning: partition {partition}: new epoch: {why}");
            }
            self.logs.insert(partition, log);
            Ok(Some(report))
        }
    }

    fn state(&mut self, channel: &str) -> Result<&mut ChannelState, u32> {
        debug_assert_eq!(
            crate::router::owner_of(channel, self.shards),
            self.shard,
            "channel {channel} routed to a shard that does not own it"
        );
        if !self.channels.contains_key(channel) {
            let options = self
                .config
                .channel_options(channel)
                .ok_or(code::UNKNOWN_CHANNEL)?;
            let p = partition(channel);
            let (offset, epoch) = if options.history() {
                self.open_log(p).map_err(|e| {
                    eprintln!("ringcast: {e}");
                    code::INTERNAL
                })?;
                let log = &self.logs[&p];
                (log.top(channel), log.epoch().clone())
            } else {
                (0, self.run_epochs[p as usize].clone())
            };
            let name: Arc<str> = channel.into();
            self.channels.insert(
                name.clone(),
                ChannelState {
                    name,
                    options,
                    epoch,
                    offset,
                    visible: offset,
                    shards: ShardSet::default(),
                },
            );
        }
        Ok(self.channels.get_mut(channel).expect("inserted above"))
    }

    /// Shard `shard` has no local subscribers of `channel` any more.
    pub fn remove_shard(&mut self, channel: &str, shard: usize) {
        if let Some(state) = self.channels.get_mut(channel) {
            state.shards.remove(shard);
        }
        self.forget_if_idle(channel);
    }

    /// Drops the state of a history channel nobody subscribes to and nothing is held for:
    /// its log has the offset and epoch, so the state comes back as it was. Called when a
    /// shard leaves and after history queries, not after publishing: a channel published to
    /// is in its log anyway, and rebuilding its state for every publication to it costs more
    /// than keeping ~150 bytes. (Channels without history keep their state: their offsets
    /// live nowhere else.)
    fn forget_if_idle(&mut self, channel: &str) {
        if self
            .channels
            .get(channel)
            .is_some_and(|s| s.shards.is_empty() && s.options.history() && s.visible == s.offset)
        {
            self.channels.remove(channel);
        }
    }

    /// Assigns the next offset to a publication, appends it to the channel's history, and
    /// encodes its push frame once. Errors are reply codes (102 unknown namespace, 100 when
    /// the log cannot be written).
    pub fn publish(
        &mut self,
        channel: &str,
        data: &[u8],
        info: Option<&[u8]>,
        tags: Option<&[u8]>,
        skip_history: bool,
    ) -> Result<Outcome, u32> {
        let hold = self.config.history_fsync == crate::config::Fsync::Always;
        let state = self.state(channel)?;
        let options = state.options;
        let offset = if !options.history() {
            state.offset + 1
        } else if skip_history {
            0
        } else {
            let offset = state.offset + 1;
            let log = self
                .logs
                .get_mut(&partition(channel))
                .expect("state() opened the log of a history channel");
            log.append(
                channel,
                offset,
                unix_ms(),
                data,
                info,
                tags,
                options.history_size,
                options.history_ttl_ms,
            )
            .map_err(|e| {
                eprintln!("ringcast: history append to {channel:?}: {e}");
                code::INTERNAL
            })?;
            offset
        };
        let held = hold && options.history();
        let state = self.channels.get_mut(channel).expect("state() created it");
        let epoch = state.epoch.clone();
        if offset > 0 {
            state.offset = offset;
            if !held {
                state.visible = offset;
            }
        }
        let mut json = Vec::with_capacity(64 + channel.len() + data.len());
        protocol::publication_push(&mut json, channel, data, info, offset, tags);
        let mut frame = Vec::with_capacity(ws::header_len(json.len()) + json.len());
        ws::put_header(&mut frame, 0x1, json.len());
        frame.extend_from_slice(&json);
        Ok(Outcome {
            channel: state.name.clone(),
            offset,
            epoch,
            frame: Bytes::from(frame),
            shards: state.shards,
            held,
        })
    }

    /// A held publication's record is durable: it becomes visible; returns the shards to
    /// deliver it to now (the set as it is at release, so a shard that subscribed while the
    /// publication was held gets it live).
    pub fn release(&mut self, channel: &str, offset: u64) -> ShardSet {
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

    /// One subscription step (see `router::SubscribeJob`): registers `from` when asked and
    /// answers with the stream position and, when asked, the recovery.
    pub fn subscribe(
        &mut self,
        channel: &str,
        from: usize,
        register: bool,
        recover: Option<&RecoverFrom>,
    ) -> (PositionResult, Option<Recovery>) {
        let state = match self.state(channel) {
            Ok(state) => state,
            Err(code) => return (Err(code), None),
        };
        if register {
            state.shards.insert(from);
        }
        let (options, top, epoch) = (state.options, state.visible, state.epoch.clone());
        let recovery = recover.map(|from| self.recover(channel, &options, from, &epoch, top));
        (Ok((epoch, top)), recovery)
    }

    /// Reference §6 "Recovery", stream mode.
    fn recover(
        &self,
        channel: &str,
        options: &ChannelOptions,
        from: &RecoverFrom,
        epoch: &str,
        top: u64,
    ) -> Recovery {
        let not_recovered = Recovery {
            recovered: false,
            offset: top,
            publications: Vec::new(),
        };
        if !from.epoch.is_empty() && *from.epoch != *epoch {
            return not_recovered;
        }
        if from.offset >= top {
            return Recovery {
                recovered: from.offset == top,
                offset: top,
                publications: Vec::new(),
            };
        }
        let Some(log) = self
            .logs
            .get(&partition(channel))
            .filter(|_| options.history())
        else {
            return not_recovered;
        };
        let now = unix_ms();
        // A position older than what is still served cannot be recovered: say so without
        // reading (and copying) up to `limit` publications first.
        if log
            .first_available(channel, now)
            .is_none_or(|first| first > from.offset + 1)
        {
            return not_recovered;
        }
        let limit = self.config.recovery_max_publication_limit;
        let publications = match log.read(channel, from.offset, false, limit, now) {
            Ok((pubs, _)) => pubs,
            Err(e) => {
                eprintln!("ringcast: history read of {channel:?}: {e}");
                return not_recovered;
            }
        };
        let visible: Vec<&StoredPublication> =
            publications.iter().filter(|p| p.offset <= top).collect();
        let complete = visible.first().is_some_and(|p| p.offset == from.offset + 1)
            && visible.last().is_some_and(|p| p.offset == top);
        if !complete {
            return not_recovered;
        }
        Recovery {
            recovered: true,
            offset: from.offset,
            publications: join_publications(visible.into_iter()),
        }
    }

    /// A `history` query (reference §6): 108 without history, 112 on an epoch mismatch,
    /// 107 for `reverse` from offset 0.
    pub fn history(
        &mut self,
        channel: &str,
        limit: i32,
        since: Option<(u64, &str)>,
        reverse: bool,
    ) -> Result<HistoryPage, u32> {
        // Checked before any state exists: queries of channels without history leave nothing.
        let options = self
            .config
            .channel_options(channel)
            .ok_or(code::UNKNOWN_CHANNEL)?;
        if !options.history() {
            return Err(code::NOT_AVAILABLE);
        }
        let state = self.state(channel)?;
        let (top, epoch) = (state.visible, state.epoch.clone());
        if let Some((offset, since_epoch)) = since {
            if !since_epoch.is_empty() && since_epoch != &*epoch {
                return Err(code::UNRECOVERABLE_POSITION);
            }
            if reverse && offset == 0 {
                return Err(code::BAD_REQUEST);
            }
        }
        let max = self.config.history_max_publication_limit;
        let limit = match limit {
            0 => 0,
            l if l < 0 => max,
            l => (l as usize).min(max),
        };
        let mut publications = Vec::new();
        if limit > 0 {
            let log = self
                .logs
                .get(&partition(channel))
                .expect("state() opened the log of a history channel");
            let from = since.map_or(0, |(offset, _)| offset);
            // Under `always` the log may hold records not yet visible: never return them.
            let (pubs, _) = if reverse && from == 0 {
                // Newest first from the visible top: everything below top + 1.
                log.read(channel, top + 1, true, limit, unix_ms())
            } else {
                log.read(channel, from, reverse, limit, unix_ms())
            }
            .map_err(|e| {
                eprintln!("ringcast: history read of {channel:?}: {e}");
                code::INTERNAL
            })?;
            publications = join_publications(pubs.iter().filter(|p| p.offset <= top));
        }
        self.forget_if_idle(channel);
        Ok(HistoryPage {
            publications,
            epoch,
            offset: top,
        })
    }

    /// Drops the channel's stored publications, keeping its position (API `history_remove`).
    pub fn remove_history(&mut self, channel: &str) -> Result<(), u32> {
        let options = self
            .config
            .channel_options(channel)
            .ok_or(code::UNKNOWN_CHANNEL)?;
        if !options.history() {
            return Ok(());
        }
        self.state(channel)?;
        let log = self
            .logs
            .get_mut(&partition(channel))
            .expect("state() opened the log of a history channel");
        let removed = log.remove(channel, unix_ms()).map_err(|e| {
            eprintln!("ringcast: history remove of {channel:?}: {e}");
            code::INTERNAL
        });
        self.forget_if_idle(channel);
        removed
    }

    /// Retention over every log; returns the segments deleted.
    pub fn retain(&mut self) -> usize {
        let now = unix_ms();
        let mut deleted = 0;
        for (p, log) in &mut self.logs {
            match log.retain(now) {
                Ok(n) => deleted += n,
                // A failed sync: see `Shard::run_flush` for why that ends the process.
                Err(e @ HistoryError::Io { op, .. }) if op.contains("flush") => {
                    eprintln!("ringcast: history retention of partition {p}: {e}; stopping");
                    std::process::exit(70);
                }
                Err(e) => eprintln!("ringcast: history retention of partition {p}: {e}"),
            }
        }
        deleted
    }

    /// The work that makes every log durable up to now.
    pub fn take_flushes(&mut self) -> Vec<FlushJob> {
        self.logs
            .values_mut()
            .filter_map(HistoryLog::take_flush)
            .collect()
    }

    /// Bytes of history on disk and records indexed, over this shard's logs.
    pub fn history_usage(&self) -> (u64, u64) {
        self.logs.values().fold((0, 0), |(bytes, records), log| {
            (
                bytes + log.disk_bytes(),
                records + log.indexed_records() as u64,
            )
        })
    }

    /// Channels with subscribers somewhere.
    pub fn active_channels(&self) -> usize {
        self.channels
            .values()
            .filter(|s| !s.shards.is_empty())
            .count()
    }
}

/// Publications as the comma-joined content of a JSON array.
fn join_publications<'a>(pubs: impl Iterator<Item = &'a StoredPublication>) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in pubs.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        protocol::put_publication(
            &mut out,
            &p.data,
            p.info.as_deref(),
            p.offset,
            p.tags.as_deref(),
        );
    }
    out
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
        let mut owner = ChannelOwner::new(0, 1, Config::default());
        owner.subscribe("a", 0, true, None).0.unwrap();
        owner.subscribe("a", 3, true, None).0.unwrap();
        let first = owner.publish("a", b"{}", None, None, false).unwrap();
        let second = owner.publish("a", b"{}", None, None, false).unwrap();
        let other = owner.publish("b", b"1", None, None, false).unwrap();
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
                .publish("a", b"{}", None, None, false)
                .unwrap()
                .shards
                .iter()
                .collect::<Vec<_>>(),
            [3]
        );
        assert_eq!(first.epoch.len(), 8);
        assert_eq!(first.epoch, second.epoch);
        assert_eq!(
            owner.history("a", 10, None, false).unwrap_err(),
            code::NOT_AVAILABLE
        );
    }
}
