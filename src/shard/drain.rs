//! The drain (SIGTERM or SIGINT; `config::Shutdown`): `/health` answers 503 as soon as the
//! signal came (`Lifecycle`, read by every request); the shard's ticker notices it within a
//! tick and rings `drain_bell`, on which the shard's main task (`server`) runs `drain`: keep
//! accepting for `shutdown.accept_delay`, stop accepting, close the clients with 3001 over at
//! most `shutdown.timeout` (a step every `DRAIN_STEP_MS`, each closing its share), wait for
//! the API calls in flight to be answered, sync the history. Then the shard's executor ends,
//! and with every shard's, the process (exit 0).

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::Shard;
use crate::config::Fsync;
use crate::limits::DRAIN_STEP_MS;
use crate::protocol::Disconnect;

/// An API request being answered on this shard; the drain waits while any is alive.
pub struct ApiInFlight<'a>(&'a Cell<usize>);

impl Drop for ApiInFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl Shard {
    /// The process drains (a signal came): `/health` answers 503.
    pub fn draining(&self) -> bool {
        self.lifecycle.draining()
    }

    /// Rings the drain bell once the signal came (the ticker calls this every tick).
    pub(super) fn notice_drain(&self) {
        if self.draining() && !self.drain_rung.replace(true) {
            let _ = self.drain_bell.try_send(());
        }
    }

    /// Waits for the drain to begin.
    pub async fn drain_begun(&self) {
        let Some(bell) = self.drain_bell_rx.borrow_mut().take() else {
            return;
        };
        let _ = bell.recv().await;
    }

    /// Counts an API request until the guard drops (its response written).
    pub fn api_in_flight(&self) -> ApiInFlight<'_> {
        self.api_requests.set(self.api_requests.get() + 1);
        ApiInFlight(&self.api_requests)
    }

    /// The drain after accepting stopped: clients closed with 3001 spread over
    /// `shutdown.timeout`, API calls answered, history synced. Returns when done (or at the
    /// timeout: what is left is dropped with the process).
    pub async fn drain(&self) {
        let timeout = self.config.shutdown.timeout.positive().unwrap_or_default();
        let started = Instant::now();
        let step = Duration::from_millis(DRAIN_STEP_MS);
        let steps = (timeout.as_millis() / step.as_millis()).max(1) as usize;
        let total = self.registry.borrow().connection_count();
        let per_step = total.div_ceil(steps).max(1);
        println!(
            "ringcast: shard {}: draining: closing {total} connections (3001) over at most {} ms",
            self.id,
            timeout.as_millis()
        );
        // Bounded by the timeout; each step closes up to `per_step` connections.
        loop {
            let open: Vec<_> = self
                .registry
                .borrow()
                .connections()
                .filter(|c| c.pending_disconnect().is_none())
                .take(per_step)
                .cloned()
                .collect();
            for conn in &open {
                conn.disconnect(Disconnect::Shutdown);
            }
            let idle =
                self.registry.borrow().connection_count() == 0 && self.api_requests.get() == 0;
            if idle || started.elapsed() >= timeout {
                break;
            }
            glommio::timer::sleep(step).await;
        }
        // The history: everything appended so far made durable (`never` leaves it to the
        // kernel's write-back, which a process exit does not undo).
        if self.config.history_storage.fsync != Fsync::Never {
            let jobs = self.engine.borrow_mut().take_syncs();
            for job in jobs {
                self.run_sync(job).await;
            }
        }
        println!(
            "ringcast: shard {}: drained in {} ms",
            self.id,
            started.elapsed().as_millis()
        );
        // The shards end together: until the last has drained this one still serves its
        // share of the internal listener and answers the others' asks.
        self.lifecycle.drained();
        // Bounded: every shard's drain ends by its timeout.
        while self.lifecycle.shards_drained() < self.count {
            glommio::timer::sleep(step).await;
        }
    }
}
