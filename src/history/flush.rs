//! Durability: what appends and new files left unsynced (a new `EPOCH`, the dirty byte ranges
//! in the mappings, new directory entries), handed out as a `FlushJob`. The job is `Send` and
//! blocking: the shard runs it on a blocking thread, so creating a partition's log or a
//! segment costs the shard no sync.

use std::fs::File;
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
#[derive(Debug)]
pub struct FlushRange {
    pub mapping: Arc<Mapping>,
    pub from: usize,
    pub to: usize,
}

/// Makes durable what was appended before `take_flush`. Blocking: run it off the shard.
#[derive(Debug)]
pub struct FlushJob {
    /// A new partition's `EPOCH`, written since the last job.
    pub(super) epoch: Option<PathBuf>,
    pub(super) ranges: Vec<FlushRange>,
    /// Directories whose entries changed, innermost first.
    pub(super) dirs: Vec<PathBuf>,
}

fn fsync(path: &Path) -> io::Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io::Error::new(e.kind(), format!("fsync {}: {e}", path.display())))
}

impl FlushJob {
    /// fsync of a new `EPOCH`, msync(MS_SYNC) of each dirty range, oldest first, then fsync of
    /// each directory whose entries changed. On error nothing is retried: the caller treats
    /// the appended data as not durable. A crash part way leaves a state `open` accepts (a
    /// missing or torn `EPOCH`, a blank or torn segment: see the module doc of `history`).
    pub fn run(self) -> io::Result<()> {
        if let Some(epoch) = &self.epoch {
            fsync(epoch)?;
        }
        for range in &self.ranges {
            range
                .mapping
                .map
                .flush_range(range.from, range.to - range.from)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("msync {}: {e}", range.mapping.path.display()),
                    )
                })?;
        }
        for dir in &self.dirs {
            fsync(dir)?;
        }
        Ok(())
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
        let mut ranges = std::mem::take(&mut self.pending);
        if let Some(head) = self.segs.head() {
            if head.end > self.dirty_from {
                ranges.push(FlushRange {
                    mapping: head.mapping.clone(),
                    from: self.dirty_from,
                    to: head.end,
                });
                self.dirty_from = head.end;
            }
        }
        let epoch = (self.epoch_file == EpochFile::Written).then(|| {
            self.epoch_file = EpochFile::Durable;
            self.dir.join(EPOCH_FILE)
        });
        let dirs = match std::mem::replace(&mut self.dir_entries, DirEntries::Durable) {
            DirEntries::Durable => Vec::new(),
            DirEntries::Added => vec![self.dir.clone()],
            DirEntries::Created => {
                let parent = self.dir.parent().unwrap_or(Path::new("."));
                vec![self.dir.clone(), parent.to_path_buf()]
            }
        };
        if epoch.is_none() && ranges.is_empty() && dirs.is_empty() {
            return None;
        }
        Some(FlushJob {
            epoch,
            ranges,
            dirs,
        })
    }
}
