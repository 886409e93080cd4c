//! `ChannelOwner`: the local engine. The state a shard keeps for the channels it owns: each
//! channel's stream position (offset, epoch, visible offset), the set of shards with local
//! subscribers, and the `HistoryLog` of every partition this shard owns. Recovery and history
//! queries are in `recovery`.
//!
//! Touches nothing outside itself and its logs' files: no rings, no connections.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::sync::Arc;

use crate::clock::unix_ms;
use crate::config::{ChannelOptions, Config, Fsync};
use crate::history::{self, FlushError, FlushJob, HistoryError, HistoryLog, OpenReport};
use crate::limits::{PARTITIONS, PARTITION_DIR_DIGITS, STREAM_OFFSET_MAX};
use crate::protocol::{ErrorCode, Publication};
use crate::router::msg::{HistoryPage, HistoryQuery, RecoverFrom, Recovery, StreamTop};
use crate::router::partition;

use super::{Engine, Outcome, PublishInput, Release, ShardSet, SyncJob, Usage};

#[derive(Debug)]
pub(super) struct ChannelState {
    pub name: Arc<str>,
    pub options: ChannelOptions,
    /// The log's epoch for channels with history, this run's for the others.
    pub epoch: Arc<str>,
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
    /// Epochs for channels without history, random per start: their offsets live in memory
    /// only, so a restart starts a new stream.
    run_epochs: Vec<Arc<str>>,
    /// The history log of each owned partition that has one (opened at start, created on a
    /// history channel's first use).
    pub(super) logs: HashMap<u32, HistoryLog>,
    pub(super) channels: HashMap<Arc<str>, ChannelState>,
}

impl ChannelOwner {
    /// An owner with no logs opened (tests and benches).
    pub fn new(shard: usize, shards: usize, config: Config) -> Result<Self, String> {
        let run_epochs = (0..PARTITIONS)
            .map(|_| crate::rand::epoch().map(Arc::from))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        Ok(ChannelOwner {
            shard,
            shards,
            history_dir: config.history_storage.data_dir.join("history"),
            config,
            run_epochs,
            logs: HashMap::new(),
            channels: HashMap::new(),
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
        for p in (0..PARTITIONS).filter(|p| *p as usize % shards == shard) {
            if owner.partition_dir(p).exists() {
                reports.extend(owner.open_log(p)?);
            }
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
        if self.logs.contains_key(&partition) {
            return Ok(None);
        }
        let dir = self.partition_dir(partition);
        let (mut log, report) =
            HistoryLog::open(&dir, partition, self.config.history_storage.segment_size)
                .map_err(|e| format!("history of partition {partition}: {e}"))?;
        let config = &self.config;
        log.set_policies(|channel| policy_of(config.channel_options(channel)));
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
        Ok(Some(report))
    }

    pub(super) fn state(&mut self, channel: &str) -> Result<&mut ChannelState, ErrorCode> {
        debug_assert_eq!(
            partition::owner_of(channel, self.shards),
            self.shard,
            "channel {channel} routed to a shard that does not own it"
        );
        if !self.channels.contains_key(channel) {
            let options = self
                .config
                .channel_options(channel)
                .ok_or(ErrorCode::UnknownChannel)?;
            let p = partition::partition(channel);
            let (offset, epoch) = if options.history() {
                self.open_log(p).map_err(|e| {
                    eprintln!("ringcast: {e}");
                    ErrorCode::Internal
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
        self.channels.get_mut(channel).ok_or(ErrorCode::Internal)
    }

    /// The log of a history channel whose state exists (`state` opened it).
    pub(super) fn log_of(&self, channel: &str) -> Result<&HistoryLog, ErrorCode> {
        self.logs
            .get(&partition::partition(channel))
            .ok_or(ErrorCode::Internal)
    }

    fn log_of_mut(&mut self, channel: &str) -> Result<&mut HistoryLog, ErrorCode> {
        self.logs
            .get_mut(&partition::partition(channel))
            .ok_or(ErrorCode::Internal)
    }

    /// Drops the state of a history channel nobody subscribes to and nothing is held for:
    /// its log has the offset and epoch, so the state comes back as it was. Called when a
    /// shard leaves and after history queries, not after publishing: a channel published to
    /// is in its log anyway, and rebuilding its state for every publication to it costs more
    /// than keeping ~150 bytes. (Channels without history keep their state: their offsets
    /// live nowhere else.)
    pub(super) fn forget_if_idle(&mut self, channel: &str) {
        if self
            .channels
            .get(channel)
            .is_some_and(|s| s.shards.is_empty() && s.options.history() && s.visible == s.offset)
        {
            self.channels.remove(channel);
        }
    }

    /// Appends a publication of a history channel at `offset`.
    fn append(
        &mut self,
        channel: &str,
        offset: u64,
        options: &ChannelOptions,
        input: &PublishInput<'_>,
    ) -> Result<(), ErrorCode> {
        let entry = history::Entry {
            data: input.data,
            info: input.info.map(|b| &b[..]),
            tags: input.tags.map(|b| &b[..]),
        };
        self.log_of_mut(channel)?
            .append(channel, offset, unix_ms(), entry, policy_of(Some(*options)))
            .map_err(|e| {
                eprintln!("ringcast: history append to {channel:?}: {e}");
                match e {
                    // A publication larger than a record can be: the request's fault.
                    HistoryError::TooLarge { .. } => ErrorCode::BadRequest,
                    _ => ErrorCode::Internal,
                }
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

/// A channel's history policy from its options (none: keep nothing).
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

fn policy_of(options: Option<ChannelOptions>) -> history::Policy {
    options
        .filter(ChannelOptions::history)
        .map_or(history::Policy { keep: 0, ttl_ms: 0 }, |o| {
            history::Policy {
                keep: o.history_size,
                ttl_ms: o.history_ttl_ms(),
            }
        })
}

impl Engine for ChannelOwner {
    fn publish(&mut self, channel: &str, input: PublishInput<'_>) -> Result<Outcome, ErrorCode> {
        let hold = self.config.history_storage.fsync == Fsync::Always;
        let state = self.state(channel)?;
        let options = state.options;
        let next = state.offset + 1;
        let takes_offset = !(options.history() && input.skip_history);
        if takes_offset && next > STREAM_OFFSET_MAX {
            eprintln!(
                "ringcast: channel {channel:?} reached the largest offset {STREAM_OFFSET_MAX}"
            );
            return Err(ErrorCode::Internal);
        }
        let offset = if !options.history() {
            Some(next)
        } else if input.skip_history {
            None
        } else {
            self.append(channel, next, &options, &input)?;
            Some(next)
        };
        let release = if hold && options.history() {
            Release::AfterSync
        } else {
            Release::Now
        };
        let state = self.channels.get_mut(channel).ok_or(ErrorCode::Internal)?;
        if let Some(offset) = offset {
            state.offset = offset;
            if release == Release::Now {
                state.visible = offset;
            }
        }
        Ok(Outcome {
            channel: state.name.clone(),
            publication: Publication {
                offset: offset.and_then(NonZeroU64::new),
                data: input.data.clone(),
                info: input.info.cloned(),
                tags: input.tags.cloned(),
            },
            epoch: state.epoch.clone(),
            shards: state.shards,
            release,
        })
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
        channel: &str,
        from: usize,
        register: bool,
        recover: Option<&RecoverFrom>,
    ) -> (Result<StreamTop, ErrorCode>, Option<Recovery>) {
        let state = match self.state(channel) {
            Ok(state) => state,
            Err(code) => return (Err(code), None),
        };
        if register {
            state.shards.insert(from);
        }
        let (options, top, epoch) = (state.options, state.visible, state.epoch.clone());
        let recovery = recover.map(|from| self.recover(channel, &options, from, &epoch, top));
        (Ok(StreamTop { epoch, offset: top }), recovery)
    }

    fn remove_shard(&mut self, channel: &str, shard: usize) {
        if let Some(state) = self.channels.get_mut(channel) {
            state.shards.remove(shard);
        }
        self.forget_if_idle(channel);
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
        let removed = self
            .log_of_mut(channel)?
            .remove(channel, unix_ms())
            .map_err(|e| {
                eprintln!("ringcast: history remove of {channel:?}: {e}");
                ErrorCode::Internal
            });
        self.forget_if_idle(channel);
        removed
    }

    fn retain(&mut self) -> Vec<SyncJob> {
        let now = unix_ms();
        let mut jobs = Vec::new();
        for (p, log) in &mut self.logs {
            match log.retain(now) {
                Ok(None) => {}
                Ok(Some(job)) => jobs.push(sync_job(*p, job)),
                Err(e) => eprintln!("ringcast: history retention of partition {p}: {e}"),
            }
        }
        jobs
    }

    fn take_syncs(&mut self) -> Vec<SyncJob> {
        self.logs
            .iter_mut()
            .filter_map(|(p, log)| Some(sync_job(*p, log.take_flush()?)))
            .collect()
    }

    fn usage(&self) -> Usage {
        let (history_bytes, history_records) =
            self.logs.values().fold((0, 0), |(bytes, records), log| {
                (
                    bytes + log.disk_bytes(),
                    records + log.indexed_records() as u64,
                )
            });
        Usage {
            history_bytes,
            history_records,
            active_channels: self.active_channels() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn input(data: &Bytes) -> PublishInput<'_> {
        PublishInput {
            data,
            info: None,
            tags: None,
            skip_history: false,
        }
    }

    #[test]
    fn offsets_are_contiguous_per_channel_and_shard_sets_follow_subscribers() {
        let mut owner = ChannelOwner::new(0, 1, Config::default()).unwrap();
        owner.subscribe("a", 0, true, None).0.unwrap();
        owner.subscribe("a", 3, true, None).0.unwrap();
        let data = Bytes::from_static(b"{}");
        let first = owner.publish("a", input(&data)).unwrap();
        let second = owner.publish("a", input(&data)).unwrap();
        let other = owner.publish("b", input(&data)).unwrap();
        let offset = |o: &Outcome| o.publication.offset.map_or(0, NonZeroU64::get);
        assert_eq!((offset(&first), offset(&second), offset(&other)), (1, 2, 1));
        assert_eq!(first.shards.iter().collect::<Vec<_>>(), [0, 3]);
        assert!(other.shards.is_empty());
        assert_eq!(first.release, Release::Now);
        owner.remove_shard("a", 0);
        assert_eq!(
            owner
                .publish("a", input(&data))
                .unwrap()
                .shards
                .iter()
                .collect::<Vec<_>>(),
            [3]
        );
        assert_eq!(first.epoch.len(), 8);
        assert_eq!(first.epoch, second.epoch);
        let query = HistoryQuery {
            limit: 10,
            since: None,
            reverse: false,
        };
        assert_eq!(
            owner.history("a", &query).unwrap_err(),
            ErrorCode::NotAvailable
        );
    }
}
