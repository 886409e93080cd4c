//! What can go wrong with a partition's history, as values with their context (partition,
//! operation, file, byte position), and what `HistoryLog::open` reports about a start.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What `open` found.
#[derive(Debug, Default, Clone)]
pub struct OpenReport {
    pub partition: u32,
    /// Segment files kept.
    pub segments: usize,
    /// Valid records scanned (publications and positions).
    pub records: u64,
    /// Bytes of the valid records scanned (framing and padding included).
    pub bytes: u64,
    /// One warning per cut, removed or quarantined file: partition, segment file, byte
    /// position, reason.
    pub truncated: Vec<String>,
    /// Why a new epoch replaced the stored one (history lost); `None` when the epoch was kept
    /// or the partition is new.
    pub epoch_reset: Option<String>,
    /// The disk was full while preparing the log for writes: it serves what it holds and
    /// creates its head segment at the first append that finds room.
    pub no_space: Option<String>,
}

#[derive(Debug)]
pub enum HistoryError {
    Io {
        partition: u32,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A record larger than a segment can hold, or a channel name longer than a record allows.
    TooLarge {
        partition: u32,
        channel: String,
        len: usize,
        max: usize,
    },
    /// The index points at bytes that are not the expected record (the file changed under the
    /// mapping).
    Corrupt {
        partition: u32,
        segment: PathBuf,
        position: u64,
        reason: String,
    },
    Config {
        partition: u32,
        reason: String,
    },
}

impl HistoryError {
    /// The disk (or the user's quota) is full: an operational state, not a broken log.
    pub fn is_no_space(&self) -> bool {
        matches!(self, HistoryError::Io { source, .. } if is_no_space(source))
    }
}

/// ENOSPC or EDQUOT.
pub fn is_no_space(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || e.raw_os_error() == Some(nix::errno::Errno::EDQUOT as i32)
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::Io {
                partition,
                op,
                path,
                source,
            } => write!(
                f,
                "history partition {partition}: {op} {}: {source}",
                path.display()
            ),
            HistoryError::TooLarge {
                partition,
                channel,
                len,
                max,
            } => write!(
                f,
                "history partition {partition}: record of channel {channel:?} needs {len} bytes, \
                 at most {max} fit"
            ),
            HistoryError::Corrupt {
                partition,
                segment,
                position,
                reason,
            } => write!(
                f,
                "history partition {partition}: {} byte {position}: {reason}",
                segment.display()
            ),
            HistoryError::Config { partition, reason } => {
                write!(f, "history partition {partition}: {reason}")
            }
        }
    }
}

impl std::error::Error for HistoryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HistoryError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A function turning an `io::Error` of `op` on `path` into a `HistoryError`.
pub fn io_error(
    partition: u32,
    op: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> HistoryError {
    let path = path.to_path_buf();
    move |source| HistoryError::Io {
        partition,
        op,
        path,
        source,
    }
}
