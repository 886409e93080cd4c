//! The server API's actions on a user's connections (`disconnect`, `subscribe`,
//! `unsubscribe`, `refresh`): sent to every shard, where the registry finds the user's
//! connections; each gets the action in this shard's mailbox (`directives`) and is woken to
//! apply it (its session checks the client and session filters) before it reads on. Each
//! shard answers once every connection it handed the action to has applied it (a
//! subscription: once the owner answered it; a connection that closes first counts as done),
//! so the API call is answered after every connection of the user has acted, as Centrifugo's
//! is on its node.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use super::ask::Ask;
use super::Shard;
use crate::limits::DIRECTIVES_PER_CONNECTION_MAX;
use crate::protocol::{Disconnect, ErrorCode};
use crate::router::msg::{ReplyTo, UserAction};
use crate::router::ShardMsg;

/// A user action sent to every shard.
pub type UserAsk = Ask<()>;

/// One action waiting for a connection, with the ack its applying completes.
#[derive(Debug)]
pub struct Directive {
    pub action: Arc<UserAction>,
    pub ack: Option<u64>,
}

/// An API call's wait on this shard: its connections still to apply the action.
#[derive(Debug)]
pub(super) struct PendingAck {
    reply: ReplyTo,
    remaining: usize,
}

/// The acks of this shard's pending user actions, by id.
#[derive(Debug, Default)]
pub(super) struct Acks {
    pending: HashMap<u64, PendingAck>,
    next: u64,
}

impl Shard {
    /// Sends `action` to every shard now.
    pub fn send_user_action(&self, action: UserAction) -> UserAsk {
        self.forward_user_action(&action);
        let ask = self.user_acts.open(self.count);
        let reply = ReplyTo {
            shard: self.id,
            request: ask.id,
        };
        self.spread_user_action(action, Some(reply));
        ask
    }

    /// Sends `action` to every shard, nobody waiting for it.
    pub fn tell_user_action(&self, action: UserAction) {
        self.spread_user_action(action, None);
    }

    fn spread_user_action(&self, action: UserAction, reply: Option<ReplyTo>) {
        let action = Arc::new(action);
        for shard in 0..self.count {
            let msg = ShardMsg::UserAction {
                action: action.clone(),
                reply,
            };
            self.to_shard(shard, msg);
        }
    }

    /// Waits until every shard's connections of the user have applied the action (100 if a
    /// shard did not answer in time).
    pub async fn user_action_answer(&self, ask: UserAsk) -> Result<(), ErrorCode> {
        for _ in 0..self.count {
            if self.user_acts.next(&ask).await.is_none() {
                return Err(ErrorCode::Internal);
            }
        }
        self.user_acts.close(&ask);
        Ok(())
    }

    /// Hands `action` to this shard's connections of its user; answers `reply` once they
    /// applied it.
    pub(super) fn run_user_action(&self, action: Arc<UserAction>, reply: Option<ReplyTo>) {
        let conns: Vec<_> = self
            .registry
            .borrow()
            .user_connections(&action.user)
            .map(Rc::clone)
            .collect();
        // One more than the connections: the last `directive_done` below answers when none
        // is left (or there was none).
        let ack = reply.map(|reply| {
            let mut acks = self.acks.borrow_mut();
            let id = acks.next;
            acks.next += 1;
            let remaining = conns.len() + 1;
            acks.pending.insert(id, PendingAck { reply, remaining });
            id
        });
        for conn in conns {
            let mut directives = self.directives.borrow_mut();
            let waiting = directives.entry(conn.id).or_default();
            if waiting.len() >= DIRECTIVES_PER_CONNECTION_MAX {
                // Not being served: cut like a slow consumer (it applies nothing more).
                drop(directives);
                conn.disconnect(Disconnect::Slow);
                self.directive_done(ack);
                continue;
            }
            waiting.push(Directive {
                action: action.clone(),
                ack,
            });
            drop(directives);
            conn.direct();
        }
        self.directive_done(ack);
    }

    /// The actions waiting for connection `conn`, oldest first.
    pub fn take_directives(&self, conn: u64) -> Vec<Directive> {
        self.directives
            .borrow_mut()
            .remove(&conn)
            .unwrap_or_default()
    }

    /// One connection applied (or dropped) an action: its API call is answered once every
    /// connection has.
    pub fn directive_done(&self, ack: Option<u64>) {
        let Some(id) = ack else {
            return;
        };
        let done = {
            let mut acks = self.acks.borrow_mut();
            let Some(pending) = acks.pending.get_mut(&id) else {
                debug_assert!(false, "an ack is completed once per connection");
                return;
            };
            pending.remaining -= 1;
            if pending.remaining > 0 {
                return;
            }
            acks.pending.remove(&id).map(|p| p.reply)
        };
        if let Some(reply) = done {
            self.to_shard(
                reply.shard,
                ShardMsg::UserActed {
                    request: reply.request,
                },
            );
        }
    }

    /// Connection `conn` left: the actions it never applied are done.
    pub(super) fn drop_directives(&self, conn: u64) {
        let left = self.directives.borrow_mut().remove(&conn);
        for directive in left.into_iter().flatten() {
            self.directive_done(directive.ack);
        }
    }
}
