//! Node-wide backpressure at the sources of new traffic (`router::Congestion`): while any
//! shard is congested, connections stop reading commands but keep writing (woken here when it
//! clears) and API calls wait before handing work to owners. Shard-internal forwarding never
//! waits, so two shards can never deadlock on each other's full rings.

use std::rc::Rc;
use std::time::Duration;

use super::Shard;
use crate::fanout::outbound::Intake;
use crate::fanout::Outbound;
use crate::limits::CONGESTION_POLL_MS;

impl Shard {
    /// True while some shard of the node has a long outgoing backlog.
    pub fn congested(&self) -> bool {
        self.outbox.borrow().congested_anywhere()
    }

    /// Waits while the node is congested (API calls, before they hand work to owners).
    pub async fn wait_for_room(&self) {
        // Bounded by the shards draining their backlogs, which never wait on sources.
        while self.congested() {
            glommio::timer::sleep(Duration::from_millis(CONGESTION_POLL_MS)).await;
        }
    }

    /// For a connection about to read commands: if the node is congested, puts it on the
    /// list the ring loop wakes when the congestion clears and returns true (do not read
    /// now; keep writing). One timer for the shard, not one per connection.
    pub fn hold_intake(&self, out: &Rc<Outbound>) -> bool {
        if !self.congested() {
            return false;
        }
        if out.liveness.intake.replace(Intake::Waiting) == Intake::Reading {
            self.room_waiters.borrow_mut().push(out.clone());
        }
        true
    }

    /// Wakes the connections held back by congestion once it is over.
    pub(super) fn release_intake(&self) {
        if self.room_waiters.borrow().is_empty() || self.congested() {
            return;
        }
        for out in self.room_waiters.take() {
            out.liveness.intake.set(Intake::Reading);
            out.wake();
        }
    }
}
