//! Time as the server reads it: `Millis`, the monotonic milliseconds every connection's timers
//! use, the wall clock in Unix seconds and milliseconds (token expiry, publication times that
//! survive restarts), and `ThrottledLog`, a repeated log line written at most once a while.
//!
//! Owns one process-wide monotonic epoch (set on first use); imports nothing of the crate.

use std::num::NonZeroU64;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A point in time in whole milliseconds since the process's clock epoch: 8 bytes where an
/// `Instant` takes 16 (and `Option<Millis>` 8 where `Option<Instant>` takes 16), for the times
/// every connection keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Millis(NonZeroU64);

impl Millis {
    pub fn now() -> Millis {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        let epoch = *EPOCH.get_or_init(Instant::now);
        let ms = epoch.elapsed().as_millis() as u64;
        Millis(NonZeroU64::MIN.saturating_add(ms))
    }

    pub fn after(self, duration: Duration) -> Millis {
        let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Millis(self.0.saturating_add(ms))
    }

    /// Milliseconds since the clock's epoch (never 0).
    pub fn as_ms(self) -> u64 {
        self.0.get()
    }

    /// Time from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.get().saturating_sub(earlier.0.get()))
    }
}

/// Wall-clock time in Unix milliseconds (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Wall-clock time in Unix seconds (0 if the clock is before 1970).
pub fn unix_secs() -> u64 {
    unix_ms() / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_move_forward_and_saturate() {
        let now = Millis::now();
        let later = now.after(Duration::from_millis(1500));
        assert_eq!(later.since(now), Duration::from_millis(1500));
        assert_eq!(now.since(later), Duration::ZERO);
        assert!(Millis::now() >= now);
        assert_eq!(std::mem::size_of::<Option<Millis>>(), 8);
        assert!(unix_secs() > 1_700_000_000);
        // A token expiring in the far future does not wrap around to now.
        assert!(now.after(Duration::from_secs(u64::MAX)) > now.after(Duration::from_secs(1)));
    }
}

/// A log line that may repeat very often (an accept failing at EMFILE, refusals under a
/// flood): written at most once per `interval`, with how many were left out since.
#[derive(Debug)]
pub struct ThrottledLog {
    interval: Duration,
    written: Option<Instant>,
    left_out: u64,
}

impl ThrottledLog {
    pub fn new(interval: Duration) -> Self {
        ThrottledLog {
            interval,
            written: None,
            left_out: 0,
        }
    }

    /// Writes the line `line` makes (to stderr), unless one went out less than the interval
    /// ago.
    pub fn write(&mut self, line: impl FnOnce() -> String) {
        let now = Instant::now();
        if self
            .written
            .is_some_and(|at| now.duration_since(at) < self.interval)
        {
            self.left_out += 1;
            return;
        }
        match std::mem::take(&mut self.left_out) {
            0 => eprintln!("{}", line()),
            n => eprintln!("{} ({n} more like it since the last)", line()),
        }
        self.written = Some(now);
    }
}
