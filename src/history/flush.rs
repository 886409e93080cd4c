//! Durability: the dirty byte ranges appends leave in the mappings, handed out as a
//! `FlushJob` (msync of each range, then fsync of the directory if segments were created).
//! The job is `Send` and blocking: the shard runs it on a blocking thread.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::segment::Mapping;
use super::HistoryLog;

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
    pub(super) ranges: Vec<FlushRange>,
    /// Set when segment files were created: their directory entries need an fsync too.
    pub(super) dir: Option<PathBuf>,
}

impl FlushJob {
    /// msync(MS_SYNC) of each dirty range, oldest first, then fsync of the directory if
    /// segments were created. On error nothing is retried: the caller treats the appended data
    /// as not durable.
    pub fn run(self) -> io::Result<()> {
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
        if let Some(dir) = &self.dir {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io::Error::new(e.kind(), format!("fsync {}: {e}", dir.display())))?;
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
        let dir = std::mem::take(&mut self.dir_dirty).then(|| self.dir.clone());
        if ranges.is_empty() && dir.is_none() {
            return None;
        }
        Some(FlushJob { ranges, dir })
    }
}
