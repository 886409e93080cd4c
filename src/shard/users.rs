//! The server API's actions on a user's connections (`disconnect`, `subscribe`,
//! `unsubscribe`, `refresh`): sent to every shard, where the registry finds the user's
//! connections; each gets the action in this shard's mailbox (`directives`) and is woken to
//! apply it (its session checks the client and session filters). The API call is answered
//! once every shard has handed the action to its connections, which apply it before they
//! read another command.

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

impl Shard {
    /// Sends `action` to every shard now.
    pub fn send_user_action(&self, action: UserAction) -> UserAsk {
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

    /// Waits until every shard has handed the action to its connections (100 if one did not
    /// answer in time).
    pub async fn user_action_answer(&self, ask: UserAsk) -> Result<(), ErrorCode> {
        for _ in 0..self.count {
            if self.user_acts.next(&ask).await.is_none() {
                return Err(ErrorCode::Internal);
            }
        }
        self.user_acts.close(&ask);
        Ok(())
    }

    /// Hands `action` to this shard's connections of its user.
    pub(super) fn run_user_action(&self, action: Arc<UserAction>, reply: Option<ReplyTo>) {
        let conns: Vec<_> = self
            .registry
            .borrow()
            .user_connections(&action.user)
            .map(Rc::clone)
            .collect();
        for conn in conns {
            let mut directives = self.directives.borrow_mut();
            let waiting = directives.entry(conn.id).or_default();
            if waiting.len() >= DIRECTIVES_PER_CONNECTION_MAX {
                drop(directives);
                conn.disconnect(Disconnect::Slow);
                continue;
            }
            waiting.push(action.clone());
            drop(directives);
            conn.direct();
        }
        if let Some(reply) = reply {
            self.to_shard(
                reply.shard,
                ShardMsg::UserActed {
                    request: reply.request,
                },
            );
        }
    }

    /// The actions waiting for connection `conn`, oldest first.
    pub fn take_directives(&self, conn: u64) -> Vec<Arc<UserAction>> {
        self.directives
            .borrow_mut()
            .remove(&conn)
            .unwrap_or_default()
    }
}
