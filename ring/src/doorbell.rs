//! `Doorbell`: how a parked consumer shard is woken. A `ParkFlag` decides *whether* to wake;
//! an eventfd is *how*. One doorbell per consumer shard, shared by every producer into it.
//!
//! Why an eventfd: any thread can ring it with one `write(2)` (no executor needed on the
//! producer side), a plain thread can sleep on it with `poll(2)`, and a glommio executor can
//! await it as an io_uring read, so a parked shard sleeps inside the executor's own
//! `io_uring_enter` with every other I/O source (0% CPU) and wakes on the first ring. Its
//! counter semantics mean a ring that arrives before the wait is not lost.
//!
//! The eventfd is blocking on purpose: io_uring returns `EAGAIN` for reads on an `O_NONBLOCK`
//! file instead of waiting, and blocking writes cannot block here (the counter is drained on
//! every wake and gains at most one per announcement).

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::park::{LastRung, ParkFlag};

#[derive(Debug)]
pub struct Doorbell {
    flag: ParkFlag,
    bell: EventFd,
}

impl Doorbell {
    pub fn new() -> io::Result<Self> {
        let bell = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)
            .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("eventfd: {e}")))?;
        Ok(Doorbell {
            flag: ParkFlag::new(),
            bell,
        })
    }

    /// Producer: call once after publishing a batch, with the producer's own `LastRung`.
    /// Costs a fence and a load unless the consumer has announced it is parking; then each
    /// producer rings the eventfd at most once per park.
    #[inline]
    pub fn notify(&self, last: &mut LastRung) {
        if self.flag.should_ring(last) {
            self.ring();
        }
    }

    /// Rings unconditionally: wakes the consumer if it sleeps, or makes its next sleep return
    /// at once. For a shard that must wake itself (work queued by one of its own tasks).
    #[cold]
    pub fn ring(&self) {
        loop {
            match self.bell.write(1) {
                Ok(_) => return,
                Err(Errno::EINTR) => continue,
                // The eventfd is ours and valid, and its counter cannot overflow (see the
                // module doc): any other error is a bug, and a silent loss would hang a shard.
                Err(e) => panic!("doorbell eventfd write failed: {e}"),
            }
        }
    }

    /// Consumer: announce the intention to sleep. The caller must re-check every ring it
    /// consumes afterwards and call `retract` if it finds work (see `ParkFlag`).
    #[inline]
    pub fn announce(&self) {
        self.flag.announce();
    }

    /// Consumer: it found work after announcing, or it woke up.
    #[inline]
    pub fn retract(&self) {
        self.flag.retract();
    }

    /// Consumer on a plain thread: sleeps until rung or `timeout` passes, then clears the
    /// bell. Returns true if it was rung. Call only after `announce` and a re-check that
    /// found nothing; call `retract` afterwards.
    pub fn wait_blocking(&self, timeout: Option<Duration>) -> io::Result<bool> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let timeout = match timeout {
            None => PollTimeout::NONE,
            Some(d) => PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX),
        };
        let mut fds = [PollFd::new(self.bell.as_fd(), PollFlags::POLLIN)];
        let ready = loop {
            match poll(&mut fds, timeout) {
                Ok(n) => break n,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        io::Error::from(e).kind(),
                        format!("poll: {e}"),
                    ))
                }
            }
        };
        if ready == 0 {
            return Ok(false);
        }
        // Readable, and we are the only reader, so this read does not block.
        self.bell
            .read()
            .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("eventfd read: {e}")))?;
        Ok(true)
    }

    /// Consumer on a glommio executor: a waiter bound to the calling executor.
    #[cfg(feature = "glommio")]
    pub fn glommio_waiter(&self) -> io::Result<GlommioWaiter> {
        use std::os::fd::{FromRawFd, IntoRawFd};
        let fd = self
            .bell
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| io::Error::new(e.kind(), format!("dup eventfd: {e}")))?;
        let raw = fd.into_raw_fd();
        // SAFETY: `raw` is a fresh descriptor (from dup) that nothing else owns; the
        // BufferedFile takes over closing it.
        let file = unsafe { glommio::io::BufferedFile::from_raw_fd(raw) };
        Ok(GlommioWaiter { file })
    }
}

/// Awaits a `Doorbell` from a glommio task: an io_uring read of the eventfd, so the executor
/// sleeps in the kernel together with its other I/O and uses no CPU while parked. Not `Send`:
/// it belongs to the executor that created it.
#[cfg(feature = "glommio")]
pub struct GlommioWaiter {
    file: glommio::io::BufferedFile,
}

#[cfg(feature = "glommio")]
impl GlommioWaiter {
    /// Sleeps until the doorbell is rung and clears it. Call only after `Doorbell::announce`
    /// and a re-check that found nothing; call `Doorbell::retract` afterwards.
    pub async fn wait(&self) -> io::Result<()> {
        let read = self
            .file
            .read_at(0, 8)
            .await
            .map_err(|e| io::Error::other(format!("doorbell read: {e}")))?;
        if read.len() != 8 {
            return Err(io::Error::other(format!(
                "doorbell read returned {} bytes, expected 8",
                read.len()
            )));
        }
        Ok(())
    }
}

#[cfg(feature = "glommio")]
impl std::fmt::Debug for GlommioWaiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GlommioWaiter")
    }
}
