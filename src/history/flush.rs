//! Durability: what appends and new files left unsynced (a new `EPOCH`, the dirty byte ranges
//! in the mappings, new directory entries), handed out as a `FlushJob`, which also deletes the
//! segments retention retired once the syncs are done. The job is `Send` and blocking: the
//! shard runs it on a blocking thread, so creating a partition's log or a segment, and
//! retiring one, cost the shard no sync, unlink or unmap.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::epoch::{EpochFile, EPOCH_FILE};
use super::segment::Mapping;
use super::HistoryLog;

/// What the partition's directory entries need from the next flush job. Ordered: a later
/// state includes what an earlier one syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DirEntries {
    /// Nothing was created since the last job.
    Durable,
    /// Files were created in it (segments, `EPOCH`): fsync the directory.
    Added,
    /// The directory itself is new: fsync it, then its parent (which holds its entry).
    Created,
}

/// The dirty bytes of one segment.
#[derive(Debug, Clone)]
pub struct FlushRange {
    pub mapping: Arc<Mapping>,
    pub from: usize,
    pub to: usize,
}

/// Makes durable what was appended before `take_flush`. Blocking: run it off the shard.
#[derive(Debug, Default)]
pub struct FlushJob {
    /// A new partition's `EPOCH`, written since the last job.
    pub(super) epoch: Option<PathBuf>,
    pub(super) ranges: Vec<FlushRange>,
    /// Directories whose entries changed, innermost first.
    pub(super) dirs: Vec<PathBuf>,
    /// Segments retention took out of the log, oldest first: deleted after the syncs (which
    /// carry the positions they held), unmapped when the job drops them.
    pub(super) retired: Vec<Arc<Mapping>>,
}

/// Why a `FlushJob` failed.
#[derive(Debug)]
pub enum FlushError {
    /// A sync failed: nothing the job covered can be trusted as durable.
    Sync(io::Error),
    /// A retired segment could not be deleted. It and the later retired ones stay on disk
    /// (deleting a later one would leave a gap that reads as lost history); a restart scans
    /// them as the oldest segments and retention retires them again.
    Delete(io::Error),
}

impl std::fmt::Display for FlushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (FlushError::Sync(e) | FlushError::Delete(e)) = self;
        write!(f, "{e}")
    }
}

fn fsync(path: &Path) -> io::Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io::Error::new(e.kind(), format!("fsync {}: {e}", path.display())))
}

impl FlushJob {
    /// fsync of a new `EPOCH`, msync(MS_SYNC) of each dirty range, oldest first, fsync of each
    /// directory whose entries changed, then the retired segments deleted, oldest first. On a
    /// sync error nothing is retried: the caller treats the appended data as not durable. A
    /// crash part way leaves a state `open` accepts (a missing or torn `EPOCH`, a blank or torn
    /// segment, retired segments still there: see the module doc of `history`).
    pub fn run(self) -> Result<(), FlushError> {
        if let Some(epoch) = &self.epoch {
            fsync(epoch).map_err(FlushError::Sync)?;
        }
        for range in &self.ranges {
            range
                .mapping
                .map
                .flush_range(range.from, range.to - range.from)
                .map_err(|e| {
                    FlushError::Sync(io::Error::new(
                        e.kind(),
                        format!("msync {}: {e}", range.mapping.path.display()),
                    ))
                })?;
        }
        for dir in &self.dirs {
            fsync(dir).map_err(FlushError::Sync)?;
        }
        for mapping in &self.retired {
            match fs::remove_file(&mapping.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(FlushError::Delete(io::Error::new(
                        e.kind(),
                        format!("delete retired segment {}: {e}", mapping.path.display()),
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Segments this job deletes.
    pub fn retired(&self) -> usize {
        self.retired.len()
    }

    fn is_empty(&self) -> bool {
        self.epoch.is_none()
            && self.ranges.is_empty()
            && self.dirs.is_empty()
            && self.retired.is_empty()
    }

    /// Dirty bytes this job syncs.
    pub fn bytes(&self) -> u64 {
        self.ranges.iter().map(|r| (r.to - r.from) as u64).sum()
    }
}

impl HistoryLog {
    /// The work that makes everything appended so far durable, or `None` if nothing is dirty.
    /// Later appends start a new dirty range.
    pub fn take_flush(&mut self) -> Option<FlushJob> {
        self.land();
        let job = self.unsynced();
        self.pending.clear();
        if let Some(head) = self.segs.head() {
            debug_assert!(self.dirty_from <= head.end);
            self.dirty_from = head.end;
        }
        if self.epoch_file == EpochFile::Written {
            self.epoch_file = EpochFile::Durable;
        }
        self.dir_entries = DirEntries::Durable;
        (!job.is_empty()).then_some(job)
    }

    /// What the next `take_flush` job will sync, left in place: a job built from it makes the
    /// same data durable without taking it from the syncer (which, under `always`, releases
    /// publications once its own job returns).
    pub(super) fn unsynced(&self) -> FlushJob {
        let mut ranges = self.pending.clone();
        if let Some(head) = self.segs.head() {
            if head.end > self.dirty_from {
                ranges.push(FlushRange {
                    mapping: head.mapping.clone(),
                    from: self.dirty_from,
                    to: head.end,
                });
            }
        }
        let epoch = (self.epoch_file == EpochFile::Written).then(|| self.dir.join(EPOCH_FILE));
        let dirs = match self.dir_entries {
            DirEntries::Durable => Vec::new(),
            DirEntries::Added => vec![self.dir.clone()],
            DirEntries::Created => {
                let parent = self.dir.parent().unwrap_or(Path::new("."));
                vec![self.dir.clone(), parent.to_path_buf()]
            }
        };
        FlushJob {
            epoch,
            ranges,
            dirs,
            retired: Vec::new(),
        }
    }
}
