//! `Hub`: a shard's map channel → local subscribers. It starts subscriptions (joining at once
//! or waiting for the owner's answer, DESIGN invariant 3), applies the owner's answers, and
//! hands each delivery (encoded once by the channel's owner) to every subscriber's `Outbound`.

use std::collections::hash_map::RandomState;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::frames::LocalFrames;
use super::outbound::Outbound;
use super::subscription::{
    join, PendingSubscription, RecoveryAsk, Registration, SubscribeStep, Subscribers, Waiting,
    Waitlist,
};
use crate::protocol::ErrorCode;
use crate::router::msg::{Delivery, JoinLeave, PresenceJoin, Recovery, SubscribeAnswer};

/// The subscribers of a channel that take its join and leave pushes: none almost always, so
/// 8 bytes in every channel's entry.
#[derive(Debug, Default)]
// Boxed on purpose, as `Waitlist`.
#[allow(clippy::box_collection)]
struct Listeners(Option<Box<Vec<Rc<Outbound>>>>);

impl Listeners {
    fn push(&mut self, conn: Rc<Outbound>) {
        self.0.get_or_insert_with(Default::default).push(conn);
    }

    fn remove(&mut self, conn: u64) {
        if let Some(list) = self.0.as_mut() {
            if let Some(index) = list.iter().position(|c| c.id == conn) {
                list.swap_remove(index);
            }
            if list.is_empty() {
                self.0 = None;
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Rc<Outbound>> {
        self.0.iter().flat_map(|l| l.iter())
    }
}

/// What `Hub::unsubscribe` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsubscribed {
    /// The connection had joined (not only waited): its presence entry, if it has one,
    /// must leave.
    pub joined: bool,
    /// It was the last local subscriber: the owner must drop this shard.
    pub last: bool,
}

#[derive(Debug)]
struct LocalChannel {
    subscribers: Subscribers,
    /// Subscriptions waiting for the owner's answer (registration or recovery); they get no
    /// deliveries until it arrives. Empty (no allocation) almost always.
    pending: Waitlist,
    registration: Registration,
    /// The stream position of the last delivery or answer (for positioned subscribers that
    /// join without asking the owner).
    epoch: Option<Arc<str>>,
    top: u64,
    listeners: Listeners,
}

/// Local subscribers per channel.
#[derive(Debug, Default)]
pub struct Hub {
    /// hashbrown for `get_key_value_mut`: the entry need not repeat its name.
    channels: hashbrown::HashMap<Arc<str>, LocalChannel, RandomState>,
    subscriptions: usize,
    /// Tickets of subscription asks (see `subscribe`).
    /// 32 bits: a ticket only has to differ from the others in flight for one channel, and
    /// the next repeat is 2^32 subscribes away (the registration then fits 8 bytes).
    next_ticket: u32,
    deliveries: u64,
    /// What settling subscriptions left for the shard (`take_settled`).
    settled: Settled,
}

/// What settling subscriptions leaves for the shard: the presence entries of subscribers
/// that joined, for their owners, and the acks of API subscriptions settled (joined, refused
/// or abandoned), for the API calls waiting on them.
#[derive(Debug, Default)]
pub struct Settled {
    /// Boxed as the ring message that takes them is.
    #[allow(clippy::vec_box)]
    pub joined: Vec<Box<PresenceJoin>>,
    pub acked: Vec<u64>,
}

/// `join`, then what a joined subscriber adds to its channel: its place among the listeners
/// of join/leave pushes, and its presence entry for the owner; an API subscription's ack
/// either way.
fn admit(
    channel: &str,
    local: &mut LocalChannel,
    mut sub: PendingSubscription,
    position: Result<(&Arc<str>, u64), ErrorCode>,
    recovery: Option<Recovery>,
    settled: &mut Settled,
) -> bool {
    let presence = sub.presence.take();
    let listener = sub.push_join_leave.then(|| sub.conn.clone());
    settled.acked.extend(sub.reply.ack());
    if !join(channel, &mut local.subscribers, sub, position, recovery) {
        return false;
    }
    if let Some(conn) = listener {
        local.listeners.push(conn);
    }
    settled.joined.extend(presence);
    true
}

impl Hub {
    /// Starts a subscription. A subscriber joins at once only when this shard already gets
    /// the channel's deliveries and it wants no recovery; otherwise it waits for an answer
    /// of the owner (`subscribed`), which arrives on the ring the deliveries take (invariant
    /// 3). Every ask carries a fresh ticket and answers are matched by ticket, so a late
    /// answer to an earlier, abandoned subscription of the same connection is never taken
    /// for the current one.
    pub fn subscribe(&mut self, channel: &str, sub: PendingSubscription) -> SubscribeStep {
        self.next_ticket = self.next_ticket.wrapping_add(1);
        let ticket = self.next_ticket;
        let Some((name, local)) = self.channels.get_key_value_mut(channel) else {
            let name: Arc<str> = channel.into();
            let mut pending = Waitlist::default();
            pending.push(Waiting { ticket, sub });
            self.channels.insert(
                name.clone(),
                LocalChannel {
                    subscribers: Subscribers::new(),
                    pending,
                    registration: Registration::Asking { ticket },
                    epoch: None,
                    top: 0,
                    listeners: Listeners::default(),
                },
            );
            return SubscribeStep::AskOwner {
                name,
                register: true,
                ticket,
            };
        };
        debug_assert!(!local.subscribers.iter().any(|c| c.id == sub.conn.id));
        let recovering = sub.recovery != RecoveryAsk::NotAsked;
        match local.registration {
            Registration::Unasked => {
                // A registration after an earlier one was refused (with a recovery, if asked).
                local.registration = Registration::Asking { ticket };
                local.pending.push(Waiting { ticket, sub });
                SubscribeStep::AskOwner {
                    name: name.clone(),
                    register: true,
                    ticket,
                }
            }
            _ if recovering => {
                // Its own ask: the recovery is for this subscriber alone.
                local.pending.push(Waiting { ticket, sub });
                SubscribeStep::AskOwner {
                    name: name.clone(),
                    register: false,
                    ticket,
                }
            }
            Registration::Asking { ticket } => {
                // Joins with the registration in flight.
                local.pending.push(Waiting { ticket, sub });
                SubscribeStep::Done
            }
            Registration::Registered => {
                let epoch = local.epoch.clone().unwrap_or_else(|| "".into());
                let top = local.top;
                if admit(name, local, sub, Ok((&epoch, top)), None, &mut self.settled) {
                    self.subscriptions += 1;
                }
                SubscribeStep::Done
            }
        }
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
                local.registration,
                Registration::Asking {
                    ticket: answer.ticket
                },
                "one registration at a time"
            );
            if local.registration
                == (Registration::Asking {
                    ticket: answer.ticket,
                })
            {
                local.registration = if answer.result.is_ok() {
                    Registration::Registered
                } else {
                    Registration::Unasked
                };
            }
        }
        let registered = local.registration == Registration::Registered;
        if registered {
            if let Ok(top) = &answer.result {
                local.epoch = Some(top.epoch.clone());
                local.top = top.offset;
            }
        }
        let waiting = local.pending.take();
        let mut recovery = answer.recovery;
        // An answer for a channel this shard is not registered for cannot be joined: the
        // owner would not deliver to it.
        let result = match &answer.result {
            Ok(top) if registered => Ok((&top.epoch, top.offset)),
            Ok(_) => Err(ErrorCode::Internal),
            Err(code) => Err(*code),
        };
        for Waiting { ticket, sub } in waiting {
            if ticket != answer.ticket {
                local.pending.push(Waiting { ticket, sub });
                continue;
            }
            let recovery = if sub.recovery != RecoveryAsk::NotAsked {
                recovery.take()
            } else {
                None
            };
            if admit(
                &answer.channel,
                local,
                sub,
                result,
                recovery,
                &mut self.settled,
            ) {
                self.subscriptions += 1;
            }
        }
        self.leave_if_unused(&answer.channel)
    }

    /// Removes the channel's entry if nobody is subscribed or waiting and no registration is
    /// in flight; returns its name if the owner must drop this shard.
    fn leave_if_unused(&mut self, channel: &str) -> Option<Arc<str>> {
        let local = self.channels.get(channel)?;
        if !local.subscribers.is_empty()
            || !local.pending.is_empty()
            || matches!(local.registration, Registration::Asking { .. })
        {
            return None;
        }
        let (name, local) = self.channels.remove_entry(channel)?;
        (local.registration == Registration::Registered).then_some(name)
    }

    /// Removes a local subscriber (joined or waiting): whether it had joined, and whether
    /// the owner must now drop this shard (it was the last one and the registration is
    /// complete).
    pub fn unsubscribe(&mut self, channel: &str, conn_id: u64) -> Unsubscribed {
        let mut done = Unsubscribed {
            joined: false,
            last: false,
        };
        let Some(local) = self.channels.get_mut(channel) else {
            return done;
        };
        if let Some(index) = local.subscribers.iter().position(|c| c.id == conn_id) {
            local.subscribers.swap_remove(index);
            local.listeners.remove(conn_id);
            self.subscriptions -= 1;
            done.joined = true;
        } else if let Some(waiting) = local.pending.remove(conn_id) {
            self.settled.acked.extend(waiting.sub.reply.ack());
            waiting.sub.abandon();
        } else {
            return done;
        }
        // With a registration in flight the entry stays: its answer cleans up.
        done.last = self.leave_if_unused(channel).is_some();
        done
    }

    /// What settling subscriptions left since the last call: presence entries for their
    /// channels' owners, acks for the API calls waiting.
    pub fn take_settled(&mut self) -> Settled {
        std::mem::take(&mut self.settled)
    }

    /// Hands a join or leave push to the channel's subscribers that take them; `local`: it
    /// was encoded on this shard (else copied core-locally first, as deliveries are).
    pub fn deliver_join_leave(&mut self, event: &JoinLeave, local: bool) -> usize {
        let Some(channel) = self.channels.get(&*event.channel) else {
            return 0;
        };
        let mut listeners = channel.listeners.iter().peekable();
        if listeners.peek().is_none() {
            return 0;
        }
        let frame = if local {
            event.frame.clone()
        } else {
            Bytes::copy_from_slice(&event.frame)
        };
        listeners
            .map(|conn| usize::from(conn.push(frame.clone())))
            .sum()
    }

    /// True if connection `conn_id` is subscribed to `channel` or waiting to be.
    pub fn is_member(&self, channel: &str, conn_id: u64) -> bool {
        self.channels.get(channel).is_some_and(|local| {
            local.subscribers.iter().any(|c| c.id == conn_id)
                || local.pending.iter().any(|w| w.sub.conn.id == conn_id)
        })
    }

    /// Hands a delivery encoded on this shard to every local subscriber of its channel but
    /// connection `skip` (the excluded client, when it is on this shard); returns how many
    /// took it.
    #[inline]
    pub fn deliver(&mut self, delivery: &Delivery, skip: Option<u64>) -> usize {
        if !self.channels.contains_key(&*delivery.channel) {
            return 0;
        }
        self.deliver_frames(delivery, &LocalFrames::local(delivery), skip)
    }

    /// `deliver` for a delivery another shard encoded (its frames copied core-locally first,
    /// see `LocalFrames::remote`).
    pub fn deliver_remote(&mut self, delivery: &Delivery, skip: Option<u64>) -> usize {
        if !self.channels.contains_key(&*delivery.channel) {
            return 0;
        }
        self.deliver_frames(delivery, &LocalFrames::remote(delivery), skip)
    }

    #[inline]
    fn deliver_frames(
        &mut self,
        delivery: &Delivery,
        frames: &LocalFrames,
        skip: Option<u64>,
    ) -> usize {
        let Some(local) = self.channels.get_mut(&*delivery.channel) else {
            return 0;
        };
        if let Some(offset) = delivery.publication.offset {
            debug_assert!(
                offset.get() > local.top,
                "deliveries arrive in offset order"
            );
            local.top = offset.get();
        }
        let mut delivered = 0;
        for conn in &local.subscribers {
            if skip == Some(conn.id) {
                continue;
            }
            let frame = frames.get(conn.codec(), conn.framing());
            delivered += usize::from(conn.push(frame.clone()));
        }
        self.deliveries += delivered as u64;
        delivered
    }

    /// Disconnects every local subscriber of `channel` with `reason`; how many.
    pub fn disconnect_subscribers(
        &self,
        channel: &str,
        reason: crate::protocol::Disconnect,
    ) -> usize {
        let Some(local) = self.channels.get(channel) else {
            return 0;
        };
        for conn in &local.subscribers {
            conn.disconnect(reason);
        }
        local.subscribers.len()
    }

    /// Every channel with local subscribers, and how many.
    pub fn channels(&self) -> impl Iterator<Item = (&Arc<str>, usize)> {
        self.channels
            .iter()
            .filter(|(_, local)| !local.subscribers.is_empty())
            .map(|(name, local)| (name, local.subscribers.len()))
    }

    pub fn subscription_count(&self) -> usize {
        self.subscriptions
    }

    pub fn deliveries(&self) -> u64 {
        self.deliveries
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::clock::Millis;
    use crate::fanout::subscription::{StreamMode, SubscribeReply};
    use crate::fanout::Outbound;
    use crate::protocol::Publication;
    use crate::router::msg::{Recovery, StreamTop};
    use bytes::Bytes;
    use std::num::NonZeroU64;

    #[test]
    fn a_channel_entry_stays_small() {
        // A bucket of the hub's table: every channel with a local subscriber keeps one (a
        // personal channel per connection makes it part of what an idle connection costs).
        let bucket = std::mem::size_of::<(Arc<str>, LocalChannel)>();
        assert!(bucket <= 88, "{bucket}");
    }

    fn conn(id: u64, limit: usize) -> Rc<Outbound> {
        let now = Millis::now();
        Rc::new(Outbound::new(id, limit, now, now))
    }

    fn sub(conn: &Rc<Outbound>, command: u32) -> PendingSubscription {
        let reply = match command {
            0 => SubscribeReply::ServerSide(None),
            id => SubscribeReply::Command(id),
        };
        PendingSubscription {
            mode: StreamMode::Positioned,
            ..PendingSubscription::plain(conn.clone(), reply)
        }
    }

    /// A delivery of channel `c` at `offset` (0: none) whose frame is `frame` itself.
    fn delivery(offset: u64, frame: &'static [u8]) -> Delivery {
        Delivery {
            channel: "c".into(),
            publication: Publication {
                offset: NonZeroU64::new(offset),
                data: Bytes::from_static(b"{}"),
                info: None,
                tags: None,
            },
            frame: Bytes::from_static(frame),
            exclude: None,
        }
    }

    fn top(offset: u64) -> Result<StreamTop, ErrorCode> {
        Ok(StreamTop {
            epoch: "ep".into(),
            offset,
        })
    }

    fn registered(hub: &mut Hub, channel: &str, ticket: u32, offset: u64) -> Option<Arc<str>> {
        hub.subscribed(SubscribeAnswer {
            channel: channel.into(),
            registration: true,
            ticket,
            result: top(offset),
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
        assert_eq!(hub.deliver(&delivery(0, b"old"), None), 0);
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
        assert_eq!(hub.deliver(&delivery(6, b"new"), None), 2);
        assert_eq!(hub.subscription_count(), 2);
        // A later subscriber joins at once with the position of the last delivery.
        let c = conn(3, 1 << 20);
        assert_eq!(hub.subscribe("c", sub(&c, 9)), SubscribeStep::Done);
        assert!(text(c.pop()).contains(r#""offset":6"#));
        assert!(!hub.unsubscribe("c", 1).last);
        assert!(!hub.unsubscribe("c", 2).last);
        assert!(
            hub.unsubscribe("c", 3).last,
            "last subscriber leaves the owner"
        );
    }

    fn recovering(conn: &Rc<Outbound>, command: u32) -> PendingSubscription {
        PendingSubscription {
            recovery: RecoveryAsk::Asked {
                reject_unrecovered: false,
            },
            mode: StreamMode::Recoverable,
            ..sub(conn, command)
        }
    }

    fn answer(
        ticket: u32,
        registration: bool,
        result: Result<StreamTop, ErrorCode>,
    ) -> SubscribeAnswer {
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
        assert!(!hub.unsubscribe("c", 2).last);
        assert_eq!(text(x.pop()), r#"{"id":2,"subscribe":{}}"#);
        assert!(hub.unsubscribe("c", 1).last, "the shard leaves the owner");
        let step = hub.subscribe("c", recovering(&x, 3)); // ticket 3, registration again
        assert!(matches!(
            step,
            SubscribeStep::AskOwner {
                register: true,
                ticket: 3,
                ..
            }
        ));
        assert_eq!(hub.subscribed(answer(2, false, top(3))), None);
        assert!(!x.has_output(), "the stale answer is ignored");
        assert!(hub.is_member("c", 2));
        hub.subscribed(answer(3, true, top(9)));
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
        assert_eq!(
            hub.subscribed(answer(1, true, Err(ErrorCode::Internal))),
            None
        );
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
        hub.subscribed(answer(2, false, top(4)));
        assert!(text(r.pop()).contains(r#""code":100"#));
        hub.subscribed(answer(3, true, top(4)));
        assert!(text(b.pop()).contains(r#""offset":4"#));
        assert_eq!(hub.deliver(&delivery(5, b"x"), None), 1);
    }

    #[test]
    fn leaving_before_the_answer_unregisters_after_it() {
        let mut hub = Hub::default();
        let a = conn(1, 1 << 20);
        hub.subscribe("c", sub(&a, 1));
        assert!(
            !hub.unsubscribe("c", 1).last,
            "registration still in flight"
        );
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
        let mut s = recovering(&a, 4);
        s.recovery = RecoveryAsk::Asked {
            reject_unrecovered: true,
        };
        hub.subscribe("c", s);
        hub.subscribed(SubscribeAnswer {
            channel: "c".into(),
            registration: true,
            ticket: 1,
            result: top(9),
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
        let frame = delivery(0, &[b'x'; 40]);
        for _ in 0..3 {
            hub.deliver(&frame, None);
        }
        assert_eq!(
            slow.pending_disconnect(),
            Some(crate::protocol::Disconnect::Slow)
        );
        assert_eq!(slow.queued_bytes(), 80, "nothing past the limit was queued");
        assert_eq!(fast.queued_bytes(), 120);
        assert_eq!(hub.deliver(&frame, None), 1, "the slow one takes no more");
        assert!(!hub.unsubscribe("c", 2).last);
        assert!(hub.unsubscribe("c", 1).last, "last local subscriber");
        assert_eq!(hub.subscription_count(), 0);
        assert_eq!(hub.deliver(&frame, None), 0);
    }
}
