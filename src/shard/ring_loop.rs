//! The ring loop: applies incoming messages, flushes the outbox backlog, wakes connections
//! held back by congestion, and parks on the doorbell when there is nothing to do. Runs for
//! the life of the shard.

use std::rc::Rc;
use std::time::Duration;

use super::{Origin, Shard};
use crate::limits::{
    CONGESTION_POLL_MS, RING_BATCH_MESSAGES, RING_FULL_POLL_US, RING_INBOX_MESSAGES,
};

impl Shard {
    pub async fn run_ring_loop(self: Rc<Self>) -> std::io::Result<()> {
        let waiter = self.outbox.borrow_mut().links().glommio_waiter()?;
        let mut inbox = Vec::with_capacity(RING_INBOX_MESSAGES);
        loop {
            let flushed = self.outbox.borrow_mut().flush();
            if self.holds_too_much() {
                // Work waits for partition logs: take no more until they exist (the rings
                // fill and the other shards' congestion holds their sources back).
                glommio::timer::sleep(Duration::from_millis(CONGESTION_POLL_MS)).await;
                continue;
            }
            inbox.clear();
            let received = self
                .outbox
                .borrow_mut()
                .links()
                .recv_into(&mut inbox, RING_BATCH_MESSAGES);
            for msg in inbox.drain(..) {
                self.handle(msg, Origin::Ring);
            }
            self.release_intake();
            if received > 0 {
                glommio::yield_if_needed().await;
                continue;
            }
            if !flushed {
                // A peer's ring is full; it does not ring us when it drains, so poll.
                glommio::timer::sleep(Duration::from_micros(RING_FULL_POLL_US)).await;
                continue;
            }
            if !self.room_waiters.borrow().is_empty() {
                // Another shard's congestion clears without ringing us: poll for it.
                glommio::timer::sleep(Duration::from_millis(CONGESTION_POLL_MS)).await;
                continue;
            }
            let may_sleep = self.outbox.borrow_mut().links().prepare_park();
            if may_sleep {
                let woke = waiter.wait().await;
                self.outbox.borrow_mut().links().retract_park();
                woke?;
            }
        }
    }
}
