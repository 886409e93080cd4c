//! `ReadyList`: the connections of a shard that have something for their transport to do
//! (output queued, a disconnect asked for, reading allowed again), named by the transport's
//! slot. `Outbound::wake` lists its connection at most once until the transport takes it;
//! the transport (the shard's WebSocket reactor) takes the whole list and is woken through the
//! one waker kept here. No connection has a task or a waker of its own.

use std::cell::RefCell;
use std::task::Waker;

#[derive(Debug, Default)]
pub struct ReadyList {
    slots: RefCell<Vec<u32>>,
    waker: RefCell<Option<Waker>>,
}

impl ReadyList {
    /// Lists `slot` and wakes the transport if it waits.
    pub fn push(&self, slot: u32) {
        self.slots.borrow_mut().push(slot);
        let waker = self.waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Moves the listed slots into `into` (emptied first), oldest first.
    pub fn take(&self, into: &mut Vec<u32>) {
        into.clear();
        std::mem::swap(&mut *self.slots.borrow_mut(), into);
    }

    pub fn is_empty(&self) -> bool {
        self.slots.borrow().is_empty()
    }

    /// Registers the transport's waker, woken by the next `push`.
    pub fn set_waker(&self, waker: &Waker) {
        let mut slot = self.waker.borrow_mut();
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}
