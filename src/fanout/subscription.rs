//! Subscriptions on their way in: what a subscribe command waits for (`PendingSubscription`),
//! a channel's registration with its owner (`Registration`), and `join`, which queues the
//! subscribe reply and makes the connection a subscriber once the owner has answered.

use std::rc::Rc;
use std::sync::Arc;

use super::outbound::Outbound;
use crate::protocol::json::encode;
use crate::protocol::{Codec, ErrorCode};
use crate::router::msg::Recovery;

/// Who gets the subscribe reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeReply {
    /// The client's subscribe command with this id.
    Command(u32),
    /// A server-side subscription (from the connect token's `channels`): no reply.
    ServerSide,
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

/// Whether the subscription asked its owner for a recovery of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryAsk {
    NotAsked,
    /// Asked; with `reject_unrecovered` an unrecovered answer is error 112 instead.
    Asked {
        reject_unrecovered: bool,
    },
}

/// A subscribe command waiting for its answer, with what the reply needs.
#[derive(Debug)]
pub struct PendingSubscription {
    pub conn: Rc<Outbound>,
    pub reply: SubscribeReply,
    pub mode: StreamMode,
    pub recovery: RecoveryAsk,
}

impl PendingSubscription {
    /// A subscription without positioning or recovery.
    pub fn plain(conn: Rc<Outbound>, reply: SubscribeReply) -> Self {
        PendingSubscription {
            conn,
            reply,
            mode: StreamMode::Plain,
            recovery: RecoveryAsk::NotAsked,
        }
    }

    /// Answers it `{}` without making it a subscriber: it left while waiting, and every
    /// subscribe command gets its reply (before the unsubscribe's, which the session queues
    /// after this).
    pub fn abandon(self) {
        if let SubscribeReply::Command(id) = self.reply {
            let mut reply = Vec::new();
            encode::empty_result(&mut reply, id, "subscribe");
            self.conn.push_message(&reply);
        }
    }
}

/// A subscription waiting for the answer with `ticket`.
#[derive(Debug)]
pub struct Waiting {
    pub ticket: u64,
    pub sub: PendingSubscription,
}

/// This shard's registration with a channel's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Not asked yet, or refused (the next subscriber asks again).
    Unasked,
    /// Asked with this ticket; the entry is never removed while the ask is in flight, so its
    /// answer always finds it.
    Asking { ticket: u64 },
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
        ticket: u64,
    },
}

/// Queues the subscribe reply (or the error) for `sub` and, unless refused, makes it a
/// subscriber by pushing it onto `subscribers`. Returns true if it joined. The reply is
/// encoded in the connection's codec (JSON, the one there is).
pub fn join(
    subscribers: &mut Vec<Rc<Outbound>>,
    sub: PendingSubscription,
    position: Result<(&Arc<str>, u64), ErrorCode>,
    recovery: Option<Recovery>,
) -> bool {
    let Codec::Json = sub.conn.codec();
    let answer = |write: &dyn Fn(&mut Vec<u8>, u32)| {
        if let SubscribeReply::Command(id) = sub.reply {
            let mut reply = Vec::new();
            write(&mut reply, id);
            sub.conn.push_message(&reply);
        }
    };
    let (epoch, top) = match position {
        Ok(position) => position,
        Err(error) => {
            answer(&|out, id| encode::error_reply(out, id, error));
            return false;
        }
    };
    let recovered = recovery.as_ref().map(|r| r.recovered);
    let reject = matches!(
        sub.recovery,
        RecoveryAsk::Asked {
            reject_unrecovered: true
        }
    );
    if reject && recovered == Some(false) {
        answer(&|out, id| encode::error_reply(out, id, ErrorCode::UnrecoverablePosition));
        return false;
    }
    let (offset, publications) = match &recovery {
        // Recovered: the client's own offset; it advances through the publications.
        Some(r) if r.recovered => (r.offset, r.publications.as_slice()),
        _ => (top, &[][..]),
    };
    let result = encode::SubscribeResult {
        recoverable: sub.mode == StreamMode::Recoverable,
        positioned: sub.mode != StreamMode::Plain,
        epoch,
        offset,
        recovered,
        publications,
    };
    answer(&|out, id| encode::subscribe_reply(out, id, &result));
    subscribers.push(sub.conn);
    true
}
