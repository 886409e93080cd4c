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

use crate::protocol::{self, code, Disconnect};
use crate::router::{Recovery, SubscribeAnswer};

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
    /// The connection stopped reading commands while the node is congested and waits in
    /// the shard's list to be woken (kept next to `connected`: it fills padding).
    pub waiting_room: Cell<bool>,
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
            waiting_room: Cell::new(false),
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

    pub fn wake(&self) {
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
    /// Subscriptions waiting for the owner's answer (registration or recovery); they get no
    /// deliveries until it arrives. Empty (no allocation) almost always.
    pending: Vec<PendingSubscription>,
    /// The owner has answered this shard's registration: deliveries flow.
    registered: bool,
    /// Ticket of the registration ask in flight (0: none). The entry is never removed
    /// while one is in flight, so its answer always finds it.
    registering: u64,
    /// The stream position of the last delivery or answer (for positioned subscribers that
    /// join without asking the owner).
    epoch: Option<Arc<str>>,
    top: u64,
}

/// A subscribe command waiting for its answer, with what the reply needs.
#[derive(Debug)]
pub struct PendingSubscription {
    pub conn: Rc<Outbound>,
    /// The subscribe command's id.
    pub command: u32,
    pub positioned: bool,
    pub recoverable: bool,
    /// Asked the owner for a recovery of its own.
    pub recovering: bool,
    /// The ticket of the answer it waits for (set by `Hub::subscribe`).
    pub ticket: u64,
    pub reject_unrecovered: bool,
}

impl PendingSubscription {
    /// A subscription without positioning or recovery (`command` 0: a server-side one, which
    /// gets no reply).
    pub fn plain(conn: Rc<Outbound>, command: u32) -> Self {
        PendingSubscription {
            conn,
            command,
            positioned: false,
            recoverable: false,
            recovering: false,
            ticket: 0,
            reject_unrecovered: false,
        }
    }
}

/// What `Hub::subscribe` needs from the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum SubscribeStep {
    /// Nothing: the subscriber joined (reply queued) or waits for an answer already asked.
    Done,
    /// Ask the owner (register this shard if `register`), quoting `ticket`.
    AskOwner {
        name: Arc<str>,
        register: bool,
        ticket: u64,
    },
}

/// Local subscribers per channel and the shard's connections.
#[derive(Debug, Default)]
pub struct Hub {
    channels: HashMap<Arc<str>, LocalChannel>,
    connections: HashMap<u64, Rc<Outbound>>,
    /// Connected users and how many of their connections this shard holds.
    users: HashMap<String, u32>,
    subscriptions: usize,
    /// Tickets of subscription asks (see `subscribe`).
    next_ticket: u64,
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

    /// Starts a subscription. A subscriber joins at once only when this shard already gets
    /// the channel's deliveries and it wants no recovery; otherwise it waits for an answer
    /// of the owner (`subscribed`), which arrives on the ring the deliveries take (invariant
    /// 3). Every ask carries a fresh ticket and answers are matched by ticket, so a late
    /// answer to an earlier, abandoned subscription of the same connection is never taken
    /// for the current one.
    pub fn subscribe(&mut self, channel: &str, mut sub: PendingSubscription) -> SubscribeStep {
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        let Some(local) = self.channels.get_mut(channel) else {
            let name: Arc<str> = channel.into();
            sub.ticket = ticket;
            self.channels.insert(
                name.clone(),
                LocalChannel {
                    name: name.clone(),
                    subscribers: Vec::new(),
                    pending: vec![sub],
                    registered: false,
                    registering: ticket,
                    epoch: None,
                    top: 0,
                },
            );
            return SubscribeStep::AskOwner {
                name,
                register: true,
                ticket,
            };
        };
        debug_assert!(!local.subscribers.iter().any(|c| c.id == sub.conn.id));
        let register = !local.registered && local.registering == 0;
        if sub.recovering || register {
            // Its own ask: a recovery, or a registration after an earlier one was refused.
            if register {
                local.registering = ticket;
            }
            sub.ticket = ticket;
            local.pending.push(sub);
            return SubscribeStep::AskOwner {
                name: local.name.clone(),
                register,
                ticket,
            };
        }
        if !local.registered {
            // Joins with the registration in flight.
            sub.ticket = local.registering;
            local.pending.push(sub);
            return SubscribeStep::Done;
        }
        let epoch = local.epoch.clone().unwrap_or_else(|| "".into());
        let top = local.top;
        if join(local, sub, Ok((&epoch, top)), None) {
            self.subscriptions += 1;
        }
        SubscribeStep::Done
    }

    /// Applies the owner's answer: the waiting subscribers it concerns join (their replies
    /// queued first) or get the error. Returns the channel's name if the owner must drop this
    /// shard (it has no subscriber left, or the answer registered a shard that no longer
    /// cares).
    pub fn subscribed(&mut self, answer: SubscribeAnswer) -> Option<Arc<str>> {
        let Some(local) = self.channels.get_mut(&answer.channel) else {
            // Entries are never removed while a registration is in flight, so this is a late
            // recovery answer for subscribers that left: nothing to do.
            debug_assert!(!answer.registration);
            return None;
        };
        if answer.registration {
            debug_assert_eq!(
                local.registering, answer.ticket,
                "one registration at a time"
            );
            if local.registering == answer.ticket {
                local.registering = 0;
                local.registered = answer.result.is_ok();
            }
        }
        if local.registered {
            if let Ok((epoch, top)) = &answer.result {
                local.epoch = Some(epoch.clone());
                local.top = *top;
            }
        }
        let waiting = std::mem::take(&mut local.pending);
        let mut recovery = answer.recovery;
        // An answer for a channel this shard is not registered for cannot be joined: the
        // owner would not deliver to it.
        let result = match &answer.result {
            Ok((epoch, top)) if local.registered => Ok((epoch, *top)),
            Ok(_) => Err(&code::INTERNAL),
            Err(code) => Err(code),
        };
        for sub in waiting {
            if sub.ticket != answer.ticket {
                local.pending.push(sub);
                continue;
            }
            let recovery = if sub.recovering {
                recovery.take()
            } else {
                None
            };
            if join(local, sub, result, recovery) {
                self.subscriptions += 1;
            }
        }
        self.leave_if_unused(&answer.channel)
    }

    /// Removes the channel's entry if nobody is subscribed or waiting and no registration is
    /// in flight; returns its name if the owner must drop this shard.
    fn leave_if_unused(&mut self, channel: &str) -> Option<Arc<str>> {
        let local = self.channels.get(channel)?;
        if !local.subscribers.is_empty() || !local.pending.is_empty() || local.registering != 0 {
            return None;
        }
        let local = self.channels.remove(channel)?;
        local.registered.then_some(local.name)
    }

    /// Removes a local subscriber (joined or waiting); returns true if the owner must now
    /// drop this shard (it was the last one and the registration is complete).
    pub fn unsubscribe(&mut self, channel: &str, conn_id: u64) -> bool {
        let Some(local) = self.channels.get_mut(channel) else {
            return false;
        };
        if let Some(index) = local.subscribers.iter().position(|c| c.id == conn_id) {
            local.subscribers.swap_remove(index);
            self.subscriptions -= 1;
        } else if let Some(index) = local.pending.iter().position(|p| p.conn.id == conn_id) {
            let sub = local.pending.swap_remove(index);
            if sub.command != 0 {
                // Every subscribe command gets its reply, and before the unsubscribe's (the
                // session queues that one after this call), as if it had been answered
                // before the unsubscribe was read.
                let mut reply = Vec::new();
                protocol::empty_result(&mut reply, sub.command, "subscribe");
                sub.conn.push(crate::ws::text_frame(&reply));
            }
        } else {
            return false;
        }
        // With a registration in flight the entry stays: its answer cleans up.
        self.leave_if_unused(channel).is_some()
    }

    /// True if connection `conn_id` is subscribed to `channel` or waiting to be.
    pub fn is_member(&self, channel: &str, conn_id: u64) -> bool {
        self.channels.get(channel).is_some_and(|local| {
            local.subscribers.iter().any(|c| c.id == conn_id)
                || local.pending.iter().any(|p| p.conn.id == conn_id)
        })
    }

    /// Queues `frame` for connection `conn_id` if it is still here.
    pub fn reply_to(&self, conn_id: u64, frame: Bytes) {
        if let Some(conn) = self.connections.get(&conn_id) {
            conn.push(frame);
        }
    }

    /// Hands `frame` (publication `offset`, 0 if it has none) to every local subscriber of
    /// `channel`; returns how many took it.
    #[inline]
    pub fn deliver(&mut self, channel: &str, offset: u64, frame: &Bytes) -> usize {
        let Some(local) = self.channels.get_mut(channel) else {
            return 0;
        };
        if offset > 0 {
            debug_assert!(offset > local.top, "deliveries arrive in offset order");
            local.top = offset;
        }
        let mut delivered = 0;
        for conn in &local.subscribers {
            delivered += usize::from(conn.push(frame.clone()));
        }
        self.deliveries += delivered as u64;
        delivered
    }

    /// `deliver` for a frame that another shard encoded: takes one core-local copy first, so
    /// the per-subscriber reference counting touches a counter in this core's cache instead
    /// of one shared with every other shard (a contended atomic per delivery otherwise).
    pub fn deliver_remote(&mut self, channel: &str, offset: u64, frame: &Bytes) -> usize {
        if !self.channels.contains_key(channel) {
            return 0;
        }
        self.deliver(channel, offset, &Bytes::copy_from_slice(frame))
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

/// Queues the subscribe reply (or the error) for `sub` and, unless refused, makes it a
/// subscriber. Returns true if it joined.
fn join(
    local: &mut LocalChannel,
    sub: PendingSubscription,
    position: Result<(&Arc<str>, u64), &u32>,
    recovery: Option<Recovery>,
) -> bool {
    let mut reply = Vec::new();
    // Command 0: a server-side subscription (from the connect token), which has no reply.
    let answer = |reply: &[u8]| {
        if sub.command != 0 {
            sub.conn.push(crate::ws::text_frame(reply));
        }
    };
    let (epoch, top) = match position {
        Ok(position) => position,
        Err(&error) => {
            protocol::error_reply(&mut reply, sub.command, error, error == code::INTERNAL);
            answer(&reply);
            return false;
        }
    };
    let recovered = recovery.as_ref().map(|r| r.recovered);
    if sub.reject_unrecovered && recovered == Some(false) {
        protocol::error_reply(&mut reply, sub.command, code::UNRECOVERABLE_POSITION, false);
        answer(&reply);
        return false;
    }
    let (offset, publications) = match &recovery {
        // Recovered: the client's own offset; it advances through the publications.
        Some(r) if r.recovered => (r.offset, r.publications.as_slice()),
        _ => (top, &[][..]),
    };
    protocol::subscribe_reply(
        &mut reply,
        sub.command,
        &protocol::SubscribeResult {
            recoverable: sub.recoverable,
            positioned: sub.positioned || sub.recoverable,
            epoch,
            offset,
            recovered,
            publications,
        },
    );
    answer(&reply);
    local.subscribers.push(sub.conn);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::PositionResult;

    fn conn(id: u64, limit: usize) -> Rc<Outbound> {
        let now = Millis::now();
        Rc::new(Outbound::new(id, limit, now, now))
    }

    fn sub(conn: &Rc<Outbound>, command: u32) -> PendingSubscription {
        PendingSubscription {
            positioned: true,
            ..PendingSubscription::plain(conn.clone(), command)
        }
    }

    fn registered(hub: &mut Hub, channel: &str, ticket: u64, top: u64) -> Option<Arc<str>> {
        hub.subscribed(SubscribeAnswer {
            channel: channel.into(),
            registration: true,
            ticket,
            result: Ok(("ep".into(), top)),
            recovery: None,
        })
    }

    fn text(frame: Option<Bytes>) -> String {
        let frame = frame.expect("a frame is queued");
        String::from_utf8(frame[2..].to_vec()).unwrap()
    }

    #[test]
    fn subscribers_wait_for_the_owner_and_skip_earlier_deliveries() {
        let mut hub = Hub::default();
        let (a, b) = (conn(1, 1 << 20), conn(2, 1 << 20));
        let step = hub.subscribe("c", sub(&a, 7));
        assert!(matches!(
            step,
            SubscribeStep::AskOwner { register: true, .. }
        ));
        assert_eq!(hub.subscribe("c", sub(&b, 8)), SubscribeStep::Done);
        assert!(hub.is_member("c", 2));
        // Deliveries before the answer belong to the stream before the subscribers joined.
        assert_eq!(hub.deliver("c", 0, &Bytes::from_static(b"old")), 0);
        assert!(!a.has_output());
        assert_eq!(registered(&mut hub, "c", 1, 5), None);
        assert_eq!(
            text(a.pop()),
            r#"{"id":7,"subscribe":{"positioned":true,"epoch":"ep","offset":5}}"#
        );
        assert_eq!(
            text(b.pop()),
            r#"{"id":8,"subscribe":{"positioned":true,"epoch":"ep","offset":5}}"#
        );
        assert_eq!(hub.deliver("c", 6, &Bytes::from_static(b"new")), 2);
        assert_eq!(hub.subscription_count(), 2);
        // A later subscriber joins at once with the position of the last delivery.
        let c = conn(3, 1 << 20);
        assert_eq!(hub.subscribe("c", sub(&c, 9)), SubscribeStep::Done);
        assert!(text(c.pop()).contains(r#""offset":6"#));
        assert!(!hub.unsubscribe("c", 1));
        assert!(!hub.unsubscribe("c", 2));
        assert!(hub.unsubscribe("c", 3), "last subscriber leaves the owner");
    }

    fn recovering(conn: &Rc<Outbound>, command: u32) -> PendingSubscription {
        PendingSubscription {
            recovering: true,
            recoverable: true,
            ..sub(conn, command)
        }
    }

    fn answer(ticket: u64, registration: bool, result: PositionResult) -> SubscribeAnswer {
        SubscribeAnswer {
            channel: "c".into(),
            registration,
            ticket,
            result,
            recovery: Some(Recovery {
                recovered: true,
                offset: 3,
                publications: Vec::new(),
            }),
        }
    }

    #[test]
    fn a_late_answer_to_an_abandoned_subscription_is_not_taken_for_a_new_one() {
        let mut hub = Hub::default();
        let (a, x) = (conn(1, 1 << 20), conn(2, 1 << 20));
        hub.subscribe("c", sub(&a, 1)); // ticket 1, registration
        registered(&mut hub, "c", 1, 3);
        a.pop();
        let step = hub.subscribe("c", recovering(&x, 2)); // ticket 2, recovery only
        assert!(matches!(
            step,
            SubscribeStep::AskOwner {
                register: false,
                ticket: 2,
                ..
            }
        ));
        assert!(!hub.unsubscribe("c", 2));
        assert_eq!(text(x.pop()), r#"{"id":2,"subscribe":{}}"#);
        assert!(hub.unsubscribe("c", 1), "the shard leaves the owner");
        let step = hub.subscribe("c", recovering(&x, 3)); // ticket 3, registration again
        assert!(matches!(
            step,
            SubscribeStep::AskOwner {
                register: true,
                ticket: 3,
                ..
            }
        ));
        assert_eq!(hub.subscribed(answer(2, false, Ok(("ep".into(), 3)))), None);
        assert!(!x.has_output(), "the stale answer is ignored");
        assert!(hub.is_member("c", 2));
        hub.subscribed(answer(3, true, Ok(("ep".into(), 9))));
        let reply = text(x.pop());
        assert!(reply.starts_with(r#"{"id":3,"#), "{reply}");
        assert!(reply.contains(r#""was_recovering":true"#), "{reply}");
    }

    #[test]
    fn a_refused_registration_is_asked_again_by_the_next_subscriber() {
        let mut hub = Hub::default();
        let (a, r, b) = (conn(1, 1 << 20), conn(2, 1 << 20), conn(3, 1 << 20));
        hub.subscribe("c", sub(&a, 1)); // ticket 1, registration
        hub.subscribe("c", recovering(&r, 2)); // ticket 2
        assert_eq!(hub.subscribed(answer(1, true, Err(code::INTERNAL))), None);
        let reply = text(a.pop());
        assert!(
            reply.contains(r#""code":100"#) && reply.contains("temporary"),
            "{reply}"
        );
        let step = hub.subscribe("c", sub(&b, 3));
        assert!(matches!(
            step,
            SubscribeStep::AskOwner {
                register: true,
                ticket: 3,
                ..
            }
        ));
        // The recovery answered for an unregistered shard cannot be joined.
        hub.subscribed(answer(2, false, Ok(("ep".into(), 4))));
        assert!(text(r.pop()).contains(r#""code":100"#));
        hub.subscribed(answer(3, true, Ok(("ep".into(), 4))));
        assert!(text(b.pop()).contains(r#""offset":4"#));
        assert_eq!(hub.deliver("c", 5, &Bytes::from_static(b"x")), 1);
    }

    #[test]
    fn leaving_before_the_answer_unregisters_after_it() {
        let mut hub = Hub::default();
        let a = conn(1, 1 << 20);
        hub.subscribe("c", sub(&a, 1));
        assert!(!hub.unsubscribe("c", 1), "registration still in flight");
        assert_eq!(
            text(a.pop()),
            r#"{"id":1,"subscribe":{}}"#,
            "answered at the unsubscribe"
        );
        assert_eq!(registered(&mut hub, "c", 1, 0).as_deref(), Some("c"));
        assert!(
            !a.has_output(),
            "nothing more for a subscription that was left"
        );
        assert!(!hub.is_member("c", 1));
    }

    #[test]
    fn unrecovered_with_reject_flag_is_refused_with_112() {
        let mut hub = Hub::default();
        let a = conn(1, 1 << 20);
        let mut s = sub(&a, 4);
        s.recovering = true;
        s.recoverable = true;
        s.reject_unrecovered = true;
        hub.subscribe("c", s);
        hub.subscribed(SubscribeAnswer {
            channel: "c".into(),
            registration: true,
            ticket: 1,
            result: Ok(("ep".into(), 9)),
            recovery: Some(Recovery {
                recovered: false,
                offset: 9,
                publications: Vec::new(),
            }),
        });
        assert!(text(a.pop()).contains(r#""code":112"#));
        assert!(!hub.is_member("c", 1));
    }

    #[test]
    fn slow_subscriber_is_cut_and_others_keep_receiving() {
        let mut hub = Hub::default();
        let (fast, slow) = (conn(1, 1 << 20), conn(2, 100));
        hub.subscribe("c", sub(&fast, 0));
        hub.subscribe("c", sub(&slow, 0));
        registered(&mut hub, "c", 1, 0);
        let frame = Bytes::from(vec![b'x'; 40]);
        for _ in 0..3 {
            hub.deliver("c", 0, &frame);
        }
        assert_eq!(slow.pending_disconnect(), Some(Disconnect::SLOW));
        assert_eq!(slow.queued_bytes(), 80, "nothing past the limit was queued");
        assert_eq!(fast.queued_bytes(), 120);
        assert_eq!(hub.deliver("c", 0, &frame), 1, "the slow one takes no more");
        assert!(!hub.unsubscribe("c", 2));
        assert!(hub.unsubscribe("c", 1), "last local subscriber");
        assert_eq!(hub.subscription_count(), 0);
        assert_eq!(hub.deliver("c", 0, &frame), 0);
    }
}
