//! The partition's `EPOCH` file: eight lowercase letters naming the stream generation, kept
//! across restarts and replaced (write to `EPOCH.tmp`, fsync, rename, fsync the directory)
//! only when history was lost.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use super::error::{io_error, HistoryError};
use super::segment::sync_dir;

pub const EPOCH_FILE: &str = "EPOCH";
pub const EPOCH_TMP: &str = "EPOCH.tmp";

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
