//! Subscriptions on their way in: what a subscribe command waits for (`PendingSubscription`),
//! a channel's registration with its owner (`Registration`), and `join`, which queues the
//! subscribe reply and makes the connection a subscriber once the owner has answered.

use std::rc::Rc;
use std::sync::Arc;

use smallvec::SmallVec;

use super::outbound::Outbound;
use super::pending_connect::ConnectSlot;
use crate::protocol::json::encode;
use crate::protocol::{Codec, ErrorCode};
use crate::router::msg::{PresenceJoin, Recovery};

/// Who gets the subscribe reply.
#[derive(Debug, Clone)]
pub enum SubscribeReply {
    /// The client's subscribe command with this id.
    Command(u32),
    /// A server-side subscription: its result goes into the connect reply that waits for
    /// it, if one does.
    ServerSide(Option<ConnectSlot>),
    /// A server-side subscription the server API made: the `subscribe` push carries its
    /// result (nothing is sent when it is refused). `ack`: the API call waiting for it to be
    /// settled (joined, refused or abandoned), handed back by `Hub::take_acked`.
    Push { ack: Option<u64> },
}

impl SubscribeReply {
    /// The API call waiting for this subscription to be settled, if any.
    pub fn ack(&self) -> Option<u64> {
        match self {
            SubscribeReply::Push { ack } => *ack,
            _ => None,
        }
    }
}

/// What the subscribe result carries about the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMode {
    Plain,
    /// Epoch and offset in the result.
    Positioned,
    /// Positioned, and the client may recover with them later.
    Recoverable,
}

impl StreamMode {
    /// The mode of a subscription that is `recoverable` (and so positioned) or `positioned`.
    pub fn of(recoverable: bool, positioned: bool) -> StreamMode {
        match (recoverable, positioned) {
            (true, _) => StreamMode::Recoverable,
            (false, true) => StreamMode::Positioned,
            (false, false) => StreamMode::Plain,
        }
    }

    /// A server-side subscription's: what its options force (with history only).
    pub fn forced(options: &crate::config::ChannelOptions) -> StreamMode {
        let history = options.history();
        StreamMode::of(
            history && options.force_recovery,
            history && options.force_positioning,
        )
    }
}

/// Whether the subscription asked its owner for a recovery of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryAsk {
    NotAsked,
    /// Asked; with `reject_unrecovered` an unrecovered answer is error 112 instead.
    Asked {
        reject_unrecovered: bool,
    },
}

/// What a subscription token adds to the subscribe result (boxed: most subscriptions have
/// no token).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenReply {
    /// Seconds until the subscription expires, if it does.
    pub ttl: Option<u32>,
    /// The token's `data`, raw JSON.
    pub data: Option<Box<str>>,
}

/// A subscribe command waiting for its answer, with what the reply needs.
#[derive(Debug)]
pub struct PendingSubscription {
    pub conn: Rc<Outbound>,
    pub reply: SubscribeReply,
    pub mode: StreamMode,
    pub recovery: RecoveryAsk,
    pub token_reply: Option<Box<TokenReply>>,
    /// The subscriber's presence entry, for the owner once it joined (the channel has
    /// presence or join/leave on).
    pub presence: Option<Box<PresenceJoin>>,
    /// It takes the channel's join and leave pushes.
    pub push_join_leave: bool,
}

impl PendingSubscription {
    /// A subscription without positioning, recovery or presence.
    pub fn plain(conn: Rc<Outbound>, reply: SubscribeReply) -> Self {
        PendingSubscription {
            conn,
            reply,
            mode: StreamMode::Plain,
            recovery: RecoveryAsk::NotAsked,
            token_reply: None,
            presence: None,
            push_join_leave: false,
        }
    }

    /// Answers it `{}` without making it a subscriber: it left while waiting, and every
    /// subscribe command gets its reply (before the unsubscribe's, which the session queues
    /// after this).
    pub fn abandon(self) {
        match self.reply {
            SubscribeReply::Command(id) => {
                let mut reply = Vec::new();
                encode::empty_result(&mut reply, id, "subscribe");
                self.conn.push_message(&reply);
            }
            SubscribeReply::ServerSide(Some(slot)) => slot.fill(b"{}".to_vec()),
            SubscribeReply::ServerSide(None) | SubscribeReply::Push { .. } => {}
        }
    }
}

/// A subscription waiting for the answer with `ticket`.
#[derive(Debug)]
pub struct Waiting {
    pub ticket: u32,
    pub sub: PendingSubscription,
}

/// A channel's local subscribers: inline while there is one (a personal channel), so the
/// commonest channel costs no allocation for them.
pub type Subscribers = SmallVec<[Rc<Outbound>; 1]>;

/// The subscriptions of a channel waiting for answers: empty almost always, so 8 bytes in
/// every channel's entry rather than a 24-byte `Vec`.
#[derive(Debug, Default)]
// Boxed on purpose: 8 bytes in every entry where an empty `Vec` takes 24.
#[allow(clippy::box_collection)]
pub struct Waitlist(Option<Box<Vec<Waiting>>>);

impl Waitlist {
    pub fn push(&mut self, waiting: Waiting) {
        self.0.get_or_insert_with(Default::default).push(waiting);
    }

    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|w| w.is_empty())
    }

    /// Takes every waiting subscription, oldest first, leaving the list empty.
    pub fn take(&mut self) -> Vec<Waiting> {
        self.0.take().map(|w| *w).unwrap_or_default()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Waiting> {
        self.0.iter().flat_map(|w| w.iter())
    }

    /// Removes the subscription of connection `conn`, if it waits here.
    pub fn remove(&mut self, conn: u64) -> Option<Waiting> {
        let list = self.0.as_mut()?;
        let index = list.iter().position(|w| w.sub.conn.id == conn)?;
        let waiting = list.swap_remove(index);
        if list.is_empty() {
            self.0 = None;
        }
        Some(waiting)
    }
}

/// This shard's registration with a channel's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Not asked yet, or refused (the next subscriber asks again).
    Unasked,
    /// Asked with this ticket; the entry is never removed while the ask is in flight, so its
    /// answer always finds it.
    Asking { ticket: u32 },
    /// The owner answered: deliveries flow.
    Registered,
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
        ticket: u32,
    },
}

/// Queues the subscribe reply (or the error) for `sub` and, unless refused, makes it a
/// subscriber by pushing it onto `subscribers`. Returns true if it joined. The reply is
/// encoded in the connection's codec (JSON, the one there is).
pub fn join(
    channel: &str,
    subscribers: &mut Subscribers,
    sub: PendingSubscription,
    position: Result<(&Arc<str>, u64), ErrorCode>,
    recovery: Option<Recovery>,
) -> bool {
    let Codec::Json = sub.conn.codec();
    let PendingSubscription {
        conn,
        reply,
        mode,
        recovery: asked,
        token_reply,
        presence: _,
        push_join_leave: _,
    } = sub;
    // The subscribe command's reply, or a server-side subscription's result (`{}` when
    // refused) for the connect reply that waits for it.
    let answer = |result: Result<&encode::SubscribeResult<'_>, ErrorCode>| match reply {
        SubscribeReply::Command(id) => {
            let mut out = Vec::new();
            match result {
                Ok(result) => encode::subscribe_reply(&mut out, id, result),
                Err(error) => encode::error_reply(&mut out, id, error),
            }
            conn.push_message(&out);
        }
        SubscribeReply::ServerSide(Some(slot)) => {
            let mut out = Vec::new();
            match result {
                Ok(result) => encode::put_subscribe_result(&mut out, result),
                Err(_) => out.extend_from_slice(b"{}"),
            }
            slot.fill(out);
        }
        SubscribeReply::ServerSide(None) => {}
        SubscribeReply::Push { .. } => {
            // The push, then a recovery's publications as publication pushes (Centrifugo's
            // push has no room for them; the client's position advances through them).
            if let Ok(result) = result {
                let mut out = Vec::new();
                encode::subscribe_push(&mut out, channel, result);
                conn.push_message(&out);
                for publication in result.publications {
                    out.clear();
                    encode::publication_push(&mut out, channel, publication);
                    conn.push_message(&out);
                }
            }
        }
    };
    let (epoch, top) = match position {
        Ok(position) => position,
        Err(error) => {
            answer(Err(error));
            return false;
        }
    };
    let recovered = recovery.as_ref().map(|r| r.recovered);
    let reject = matches!(
        asked,
        RecoveryAsk::Asked {
            reject_unrecovered: true
        }
    );
    if reject && recovered == Some(false) {
        answer(Err(ErrorCode::UnrecoverablePosition));
        return false;
    }
    let (offset, publications) = match &recovery {
        // Recovered: the client's own offset; it advances through the publications.
        Some(r) if r.recovered => (r.offset, r.publications.as_slice()),
        _ => (top, &[][..]),
    };
    let token = token_reply.as_deref();
    let result = encode::SubscribeResult {
        ttl: token.and_then(|t| t.ttl),
        data: token.and_then(|t| t.data.as_deref()),
        recoverable: mode == StreamMode::Recoverable,
        positioned: mode != StreamMode::Plain,
        epoch,
        offset,
        recovered,
        publications,
    };
    answer(Ok(&result));
    subscribers.push(conn);
    true
}
