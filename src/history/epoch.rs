//! The partition's `EPOCH` file: eight lowercase letters naming the stream generation, kept
//! across restarts and replaced (write to `EPOCH.tmp`, fsync, rename, fsync the directory)
//! only when history was lost. A new partition's first epoch is written as it is created and
//! synced by the log's next flush job ([`EpochFile::Written`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use super::error::{io_error, HistoryError};
use super::segment::sync_dir;

pub const EPOCH_FILE: &str = "EPOCH";
pub const EPOCH_TMP: &str = "EPOCH.tmp";

/// How far the `EPOCH` file holds the log's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochFile {
    /// Written and synced.
    Durable,
    /// Written, not synced yet: the next flush job syncs it. Only a new partition's first
    /// epoch is in this state; a crash before the sync leaves no usable `EPOCH`, and the
    /// restart writes a new epoch (see the module doc of `history`).
    Written,
    /// Not written: a full disk stopped it. It is written before the first segment is.
    Missing,
}

/// Removes an `EPOCH.tmp` a crash left between write and rename.
pub fn remove_leftover(dir: &Path, partition: u32) -> Result<(), HistoryError> {
    let path = dir.join(EPOCH_TMP);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(io_error(partition, "remove", &path)(e))
        }
        _ => Ok(()),
    }
}

/// The stored epoch: `Ok(None)` if there is none, `Err(why)` if it is unusable.
pub fn read_epoch(dir: &Path) -> Result<Option<Arc<str>>, String> {
    match fs::read(dir.join(EPOCH_FILE)) {
        Ok(bytes) if bytes.len() == 8 && bytes.iter().all(u8::is_ascii_lowercase) => {
            Ok(Some(String::from_utf8_lossy(&bytes).into_owned().into()))
        }
        Ok(bytes) => Err(format!("{} bytes, not 8 lowercase letters", bytes.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// A fresh epoch (not stored).
pub fn new_epoch(dir: &Path, partition: u32) -> Result<Arc<str>, HistoryError> {
    crate::rand::epoch()
        .map(Arc::from)
        .map_err(|e| io_error(partition, "generate an epoch for", dir)(io::Error::other(e)))
}

/// Generates and durably stores a new epoch.
pub fn write_new_epoch(dir: &Path, partition: u32) -> Result<Arc<str>, HistoryError> {
    let epoch = new_epoch(dir, partition)?;
    write_epoch(dir, partition, &epoch)?;
    Ok(epoch)
}

/// Writes a new partition's first epoch without syncing it ([`EpochFile::Written`]). There is
/// no earlier epoch to protect, so no rename: a torn file is an unreadable `EPOCH`.
pub fn write_first_epoch(dir: &Path, partition: u32, epoch: &str) -> Result<(), HistoryError> {
    let path = dir.join(EPOCH_FILE);
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut file| file.write_all(epoch.as_bytes()))
        .map_err(io_error(partition, "write", &path))
}

/// Durably stores `epoch` as the partition's epoch.
pub fn write_epoch(dir: &Path, partition: u32, epoch: &str) -> Result<(), HistoryError> {
    let tmp = dir.join(EPOCH_TMP);
    let mut file = File::create(&tmp).map_err(io_error(partition, "create", &tmp))?;
    file.write_all(epoch.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error(partition, "write", &tmp))?;
    let path = dir.join(EPOCH_FILE);
    fs::rename(&tmp, &path).map_err(io_error(partition, "rename to", &path))?;
    sync_dir(dir, partition)
}
