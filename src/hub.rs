//! `Hub`: a shard's local side of fan-out. It owns the map channel → local subscribers and the
//! registry of the shard's WebSocket connections, and hands each delivered frame (one shared
//! `Bytes`, encoded once by the channel's owner) to every subscriber's `Outbound` queue.
//!
//! `Outbound` is the one piece of a connection that other parts of the shard touch: a bounded
//! byte queue (over its limit the connection is disconnected as slow, DESIGN invariant 5), a
//! pending disconnect, the waker of the connection's task, and the ping/pong/expiry times the
//! shard's ticker checks (invariant 6: no timer per connection).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU64;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::OnceLock;
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::protocol::Disconnect;

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
        Millis(self.0.saturating_add(duration.as_millis() as u64))
    }

    /// Time from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.get().saturating_sub(earlier.0.get()))
    }
}

/// The shared, per-connection state: what the connection must send, and its timers.
#[derive(Debug)]
// repr(C): the fields `push` touches come first, in the first cache line (the ones the
// ticker uses follow); fan-out to a million subscribers is bound by these cache misses.
#[repr(C)]
pub struct Outbound {
    queued_bytes: Cell<usize>,
    limit: usize,
    /// The oldest queued frame, kept inline: most pushes find the queue empty, and this
    /// saves them a miss on a separately allocated buffer.
    first: RefCell<Option<Bytes>>,
    /// The frames after `first`, oldest first; empty while `first` is `None`.
    /// Boxed on purpose: 8 bytes in every connection instead of a 32-byte empty deque.
    #[allow(clippy::box_collection)]
    rest: RefCell<Option<Box<VecDeque<Bytes>>>>,
    waker: RefCell<Option<Waker>>,
    disconnect: Cell<Option<Disconnect>>,
    pub id: u64,
    /// When the connection was accepted (for the stale check).
    pub opened: Millis,
    /// Set once the client's connect succeeded.
    pub connected: Cell<bool>,
    /// Next server ping.
    pub next_ping: Cell<Millis>,
    /// Deadline for the pong to the last ping, if one is outstanding.
    pub pong_due: Cell<Option<Millis>>,
    /// When the connection's token expires, if it does.
    pub expires_at: Cell<Option<Millis>>,
}

impl Outbound {
    pub fn new(id: u64, limit: usize, now: Millis, first_ping: Millis) -> Self {
        Outbound {
            id,
            first: RefCell::new(None),
            rest: RefCell::new(None),
            queued_bytes: Cell::new(0),
            limit,
            disconnect: Cell::new(None),
            waker: RefCell::new(None),
            opened: now,
            connected: Cell::new(false),
            next_ping: Cell::new(first_ping),
            pong_due: Cell::new(None),
            expires_at: Cell::new(None),
        }
    }

    /// Queues one frame. Returns false if the connection is closing or this frame would take
    /// it over its limit; in the second case it is disconnected as slow.
    #[inline]
    pub fn push(&self, frame: Bytes) -> bool {
        if self.disconnect.get().is_some() {
            return false;
        }
        let queued = self.queued_bytes.get() + frame.len();
        if queued > self.limit {
            self.disconnect(Disconnect::SLOW);
            return false;
        }
        self.queued_bytes.set(queued);
        let mut first = self.first.borrow_mut();
        if first.is_none() {
            debug_assert!(self.rest.borrow().as_ref().is_none_or(|r| r.is_empty()));
            *first = Some(frame);
        } else {
            self.rest
                .borrow_mut()
                .get_or_insert_with(Default::default)
                .push_back(frame);
        }
        drop(first);
        self.wake();
        true
    }

    /// Takes the oldest queued frame.
    pub fn pop(&self) -> Option<Bytes> {
        let mut first = self.first.borrow_mut();
        let frame = first.take()?;
        let mut rest = self.rest.borrow_mut();
        *first = rest.as_mut().and_then(|r| r.pop_front());
        if rest.as_ref().is_some_and(|r| r.is_empty()) {
            // A drained backlog gives its buffer back: idle connections hold none.
            *rest = None;
        }
        self.queued_bytes.set(self.queued_bytes.get() - frame.len());
        Some(frame)
    }

    pub fn has_output(&self) -> bool {
        self.first.borrow().is_some()
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.get()
    }

    /// Asks the connection to close with `reason` after what is already queued; the first
    /// reason wins.
    pub fn disconnect(&self, reason: Disconnect) {
        if self.disconnect.get().is_none() {
            self.disconnect.set(Some(reason));
            self.wake();
        }
    }

    pub fn pending_disconnect(&self) -> Option<Disconnect> {
        self.disconnect.get()
    }

    /// Registers the waker of the connection's task.
    pub fn set_waker(&self, waker: &Waker) {
        let mut slot = self.waker.borrow_mut();
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    fn wake(&self) {
        let waker = self.waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

#[derive(Debug)]
struct LocalChannel {
    /// The map key again, so a lookup by `&str` can hand out the shared name.
    name: Arc<str>,
    subscribers: Vec<Rc<Outbound>>,
}

/// Local subscribers per channel and the shard's connections.
#[derive(Debug, Default)]
pub struct Hub {
    channels: HashMap<Arc<str>, LocalChannel>,
    connections: HashMap<u64, Rc<Outbound>>,
    /// Connected users and how many of their connections this shard holds.
    users: HashMap<String, u32>,
    subscriptions: usize,
    slow_disconnects: u64,
    deliveries: u64,
}

impl Hub {
    pub fn register(&mut self, conn: Rc<Outbound>) {
        let previous = self.connections.insert(conn.id, conn);
        assert!(previous.is_none(), "connection ids are unique per shard");
    }

    pub fn unregister(&mut self, id: u64) {
        if let Some(conn) = self.connections.remove(&id) {
            if conn.pending_disconnect() == Some(Disconnect::SLOW) {
                self.slow_disconnects += 1;
            }
        }
    }

    pub fn add_user(&mut self, user: &str) {
        *self.users.entry(user.to_owned()).or_default() += 1;
    }

    pub fn remove_user(&mut self, user: &str) {
        if let Some(count) = self.users.get_mut(user) {
            *count -= 1;
            if *count == 0 {
                self.users.remove(user);
            }
        }
    }

    /// Adds a local subscriber; returns the channel's shared name and whether it is the
    /// first local subscriber (then the owner must learn that this shard is interested).
    pub fn subscribe(&mut self, channel: &str, conn: &Rc<Outbound>) -> (Arc<str>, bool) {
        self.subscriptions += 1;
        if let Some(local) = self.channels.get_mut(channel) {
            debug_assert!(!local.subscribers.iter().any(|c| c.id == conn.id));
            local.subscribers.push(conn.clone());
            return (local.name.clone(), false);
        }
        let name: Arc<str> = channel.into();
        let local = LocalChannel {
            name: name.clone(),
            subscribers: vec![conn.clone()],
        };
        self.channels.insert(name.clone(), local);
        (name, true)
    }

    /// Removes a local subscriber; returns true if it was the last one on this shard.
    pub fn unsubscribe(&mut self, channel: &str, conn_id: u64) -> bool {
        let Some(LocalChannel { subscribers, .. }) = self.channels.get_mut(channel) else {
            return false;
        };
        let Some(index) = subscribers.iter().position(|c| c.id == conn_id) else {
            return false;
        };
        subscribers.swap_remove(index);
        self.subscriptions -= 1;
        if subscribers.is_empty() {
            self.channels.remove(channel);
            return true;
        }
        false
    }

    /// Hands `frame` to every local subscriber of `channel`; returns how many took it.
    #[inline]
    pub fn deliver(&mut self, channel: &str, frame: &Bytes) -> usize {
        let Some(LocalChannel { subscribers, .. }) = self.channels.get(channel) else {
            return 0;
        };
        let mut delivered = 0;
        for conn in subscribers {
            delivered += usize::from(conn.push(frame.clone()));
        }
        self.deliveries += delivered as u64;
        delivered
    }

    /// `deliver` for a frame that another shard encoded: takes one core-local copy first, so
    /// the per-subscriber reference counting touches a counter in this core's cache instead
    /// of one shared with every other shard (a contended atomic per delivery otherwise).
    pub fn deliver_remote(&mut self, channel: &str, frame: &Bytes) -> usize {
        if !self.channels.contains_key(channel) {
            return 0;
        }
        self.deliver(channel, &Bytes::copy_from_slice(frame))
    }

    pub fn connections(&self) -> impl Iterator<Item = &Rc<Outbound>> {
        self.connections.values()
    }

    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn subscription_count(&self) -> usize {
        self.subscriptions
    }

    pub fn slow_disconnects(&self) -> u64 {
        self.slow_disconnects
    }

    pub fn deliveries(&self) -> u64 {
        self.deliveries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: u64, limit: usize) -> Rc<Outbound> {
        let now = Millis::now();
        Rc::new(Outbound::new(id, limit, now, now))
    }

    #[test]
    fn slow_subscriber_is_cut_and_others_keep_receiving() {
        let mut hub = Hub::default();
        let (fast, slow) = (conn(1, 1 << 20), conn(2, 100));
        assert!(hub.subscribe("c", &fast).1);
        assert!(!hub.subscribe("c", &slow).1);
        let frame = Bytes::from(vec![b'x'; 40]);
        for _ in 0..3 {
            hub.deliver("c", &frame);
        }
        assert_eq!(slow.pending_disconnect(), Some(Disconnect::SLOW));
        assert_eq!(slow.queued_bytes(), 80, "nothing past the limit was queued");
        assert_eq!(fast.queued_bytes(), 120);
        assert_eq!(hub.deliver("c", &frame), 1, "the slow one takes no more");
        assert!(!hub.unsubscribe("c", 2));
        assert!(hub.unsubscribe("c", 1), "last local subscriber");
        assert_eq!(hub.subscription_count(), 0);
        assert_eq!(hub.deliver("c", &frame), 0);
    }
}
