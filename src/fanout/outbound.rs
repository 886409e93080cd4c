//! `Outbound`: the one piece of a connection that other parts of the shard touch. A bounded
//! queue of frames (over its limit the connection is disconnected as slow, DESIGN invariant
//! 5), a pending disconnect, the connection's place on its transport's `ReadyList` (how the
//! transport learns that there is something to do), and its `Liveness`: the ping/pong/expiry
//! times the shard's ticker checks (invariant 6: no timer per connection).
//! It knows its connection's codec and framing, so replies are framed here, not by callers.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

use super::ready::ReadyList;
use crate::clock::Millis;
use crate::framing::Framing;
use crate::protocol::{Codec, Disconnect};

/// Where a connection is in its life, as the ticker needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepted at this time; no successful connect command yet (stale after a while).
    Accepted(Millis),
    /// The client's connect succeeded.
    Connected,
}

/// Whether the connection reads client commands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    Reading,
    /// Stopped while the node is congested, waiting in the shard's list to be woken.
    Waiting,
}

/// Work a connection has besides its I/O, as bits (one byte in every connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chores(u8);

impl Chores {
    pub const NONE: Chores = Chores(0);
    /// The ticker found a subscription token past its expiry (and grace).
    pub const EXPIRED_SUBSCRIPTIONS: Chores = Chores(1);
    /// The shard holds server API actions for it (`Shard::take_directives`).
    pub const DIRECTIVES: Chores = Chores(2);

    fn with(self, other: Chores) -> Chores {
        Chores(self.0 | other.0)
    }

    fn has(self, other: Chores) -> bool {
        self.0 & other.0 != 0
    }
}

/// The times the shard's ticker checks.
#[derive(Debug)]
pub struct Liveness {
    pub phase: Cell<Phase>,
    pub intake: Cell<Intake>,
    /// Next server ping.
    pub next_ping: Cell<Millis>,
    /// Deadline for the pong to the last ping, if one is outstanding.
    pub pong_due: Cell<Option<Millis>>,
    /// When the connection's token expires, if it does.
    pub expires_at: Cell<Option<Millis>>,
    /// When the first of its subscriptions' tokens expires, if one does (the session then
    /// ends those not refreshed in time).
    pub sub_expires_at: Cell<Option<Millis>>,
    /// The tag (low 32 bits) of the tick at which the shard's deadline wheel visits this
    /// connection next, 0: none; the wheel's other entries for it are stale. 32 bits fit in
    /// this struct's padding, so the wheel costs a connection no memory.
    pub due_tick: Cell<u32>,
}

/// The queued frames, oldest first.
#[derive(Debug, Default)]
struct Queue {
    /// The oldest queued frame, kept inline: most pushes find the queue empty, and this
    /// saves them a miss on a separately allocated buffer.
    first: Option<Bytes>,
    /// The frames after `first`, oldest first; empty while `first` is `None`.
    /// Boxed on purpose: 8 bytes in every connection instead of a 32-byte empty deque.
    #[allow(clippy::box_collection)]
    rest: Option<Box<VecDeque<Bytes>>>,
}

/// The shared, per-connection state: what the connection must send, and its timers.
#[derive(Debug)]
// repr(C): the fields `push` touches come first, in the first cache line (the ones the
// ticker uses follow); fan-out to a million subscribers is bound by these cache misses.
#[repr(C)]
pub struct Outbound {
    /// Bytes queued; never above `limit`.
    queued_bytes: Cell<u32>,
    /// The queue's limit in bytes (`client.queue_max_size`, at most 4 GiB).
    limit: u32,
    /// This connection's slot on `ready`.
    slot: u32,
    /// On the list already, until the transport has served the connection.
    listed: Cell<bool>,
    disconnect: Cell<Option<Disconnect>>,
    /// What the connection must do besides its I/O when next served (`Chores`).
    chores: Cell<Chores>,
    queue: RefCell<Queue>,
    /// The transport's list of connections to serve (`None`: no transport, in tests).
    ready: Option<Rc<ReadyList>>,
    /// How the connection's messages are encoded and framed (one variant each today, so
    /// both take no bytes).
    codec: Codec,
    framing: Framing,
    pub id: u64,
    pub liveness: Liveness,
}

impl Outbound {
    pub fn new(id: u64, limit: usize, now: Millis, first_ping: Millis) -> Self {
        Outbound {
            id,
            queue: RefCell::new(Queue::default()),
            queued_bytes: Cell::new(0),
            // Validation keeps the limit within a u32 (`CLIENT_QUEUE_BYTES_MAX`); tests
            // and benches that pass more mean no limit.
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            disconnect: Cell::new(None),
            chores: Cell::new(Chores::NONE),
            ready: None,
            slot: 0,
            listed: Cell::new(false),
            codec: Codec::Json,
            framing: Framing::WebSocket,
            liveness: Liveness {
                phase: Cell::new(Phase::Accepted(now)),
                intake: Cell::new(Intake::Reading),
                next_ping: Cell::new(first_ping),
                pong_due: Cell::new(None),
                expires_at: Cell::new(None),
                sub_expires_at: Cell::new(None),
                due_tick: Cell::new(0),
            },
        }
    }

    /// The same connection, served by a transport through `ready` at `slot`.
    pub fn listed_in(mut self, ready: Rc<ReadyList>, slot: u32) -> Self {
        self.ready = Some(ready);
        self.slot = slot;
        self
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Queues one frame. Returns false if the connection is closing or this frame would take
    /// it over its limit; in the second case it is disconnected as slow.
    #[inline]
    pub fn push(&self, frame: Bytes) -> bool {
        debug_assert!(
            !frame.is_empty(),
            "an empty frame is a barrier (push_barrier)"
        );
        self.enqueue(frame)
    }

    /// Holds a place in the queue for a frame that is not ready yet (a connect reply
    /// waiting for its server-side subscriptions): nothing queued after it is written until
    /// `fill_barrier` puts the frame there.
    pub fn push_barrier(&self) -> bool {
        self.enqueue(Bytes::new())
    }

    /// Puts `frame` in the place `push_barrier` held (the oldest one), and lets the queue
    /// flow again. Returns false if there is none (the connection is closing).
    pub fn fill_barrier(&self, frame: Bytes) -> bool {
        debug_assert!(!frame.is_empty());
        let mut queue = self.queue.borrow_mut();
        let Queue { first, rest } = &mut *queue;
        let place = std::iter::once(first)
            .flatten()
            .chain(rest.iter_mut().flat_map(|r| r.iter_mut()))
            .find(|f| f.is_empty());
        let Some(place) = place else {
            return false;
        };
        let len = frame.len();
        *place = frame;
        drop(queue);
        // Over the limit by a frame at most, once: the reply was owed before anything else.
        self.queued_bytes
            .set(self.queued_bytes.get().saturating_add(len as u32));
        self.wake();
        true
    }

    fn enqueue(&self, frame: Bytes) -> bool {
        if self.disconnect.get().is_some() {
            return false;
        }
        let queued = self.queued_bytes.get() as usize + frame.len();
        if queued > self.limit as usize {
            self.disconnect(Disconnect::Slow);
            return false;
        }
        // Within `limit`, a u32.
        self.queued_bytes.set(queued as u32);
        let mut queue = self.queue.borrow_mut();
        if queue.first.is_none() {
            debug_assert!(queue.rest.as_ref().is_none_or(|r| r.is_empty()));
            queue.first = Some(frame);
        } else {
            queue
                .rest
                .get_or_insert_with(Default::default)
                .push_back(frame);
        }
        drop(queue);
        self.wake();
        true
    }

    /// Queues one protocol message (a line or newline-joined lines of the connection's codec),
    /// framed for the connection's transport.
    pub fn push_message(&self, payload: &[u8]) -> bool {
        self.push(self.framing.message(payload))
    }

    /// Takes the oldest queued frame (none while the oldest is a barrier).
    pub fn pop(&self) -> Option<Bytes> {
        let mut queue = self.queue.borrow_mut();
        let Queue { first, rest } = &mut *queue;
        if first.as_ref().is_some_and(Bytes::is_empty) {
            return None;
        }
        let frame = first.take()?;
        *first = rest.as_mut().and_then(|r| r.pop_front());
        if rest.as_ref().is_some_and(|r| r.is_empty()) {
            // A drained backlog gives its buffer back: idle connections hold none.
            *rest = None;
        }
        // A queued frame's length is part of `queued_bytes`, so it fits a u32.
        self.queued_bytes
            .set(self.queued_bytes.get() - frame.len() as u32);
        Some(frame)
    }

    /// Whether a frame can be written now.
    pub fn has_output(&self) -> bool {
        self.queue
            .borrow()
            .first
            .as_ref()
            .is_some_and(|f| !f.is_empty())
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.get() as usize
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

    /// The ticker found a subscription whose token expired: the transport has the session
    /// end the subscriptions not refreshed in time.
    pub fn expire_subscriptions(&self) {
        self.add_chore(Chores::EXPIRED_SUBSCRIPTIONS);
    }

    /// The shard holds server API actions for this connection.
    pub fn direct(&self) {
        self.add_chore(Chores::DIRECTIVES);
    }

    fn add_chore(&self, chore: Chores) {
        self.chores.set(self.chores.get().with(chore));
        self.wake();
    }

    /// Whether `chore` was asked for since the last look (and forgets it).
    pub fn take_chore(&self, chore: Chores) -> bool {
        let chores = self.chores.get();
        self.chores.set(Chores(chores.0 & !chore.0));
        chores.has(chore)
    }

    /// Tells the transport there is something to do: output, a disconnect, or reading
    /// allowed again. Lists the connection once until the transport has served it.
    pub fn wake(&self) {
        if let Some(ready) = &self.ready {
            if !self.listed.replace(true) {
                ready.push(self.slot);
            }
        }
    }

    /// The transport served the connection (everything queued so far is seen): the next
    /// `wake` lists it again.
    pub fn served(&self) {
        self.listed.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outbound_stays_small() {
        // Every connection holds one; BENCHMARKS.md's per-connection budget counts it.
        assert!(
            std::mem::size_of::<Outbound>() <= 128,
            "{}",
            std::mem::size_of::<Outbound>()
        );
        assert_eq!(std::mem::size_of::<Phase>(), 8);
    }

    #[test]
    fn messages_are_framed_for_the_transport() {
        let now = Millis::now();
        let out = Outbound::new(1, 1 << 20, now, now);
        out.push_message(b"{}");
        assert_eq!(&out.pop().unwrap()[..], b"\x81\x02{}");
    }
}
