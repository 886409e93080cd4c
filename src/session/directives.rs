//! What the server API tells this connection to do (`Shard::take_directives`): disconnect,
//! subscribe (a server-side subscription, announced with the `subscribe` push), unsubscribe
//! (the `unsubscribe` push, code 2000) and refresh (a new expiry and info, the `refresh`
//! push; or 3005 when expired). An action applies when its filters match this connection:
//! the user, the `client` id, no `session` (ringcast's connections have none), and not in a
//! disconnect's `whitelist`.

use std::sync::Arc;

use super::commands::presence_overridden;
use super::{permissions, Granted, Session, State, Subscribed};
use crate::clock::unix_secs;
use crate::fanout::{PendingSubscription, RecoveryAsk, StreamMode, SubscribeReply, TokenReply};
use crate::protocol::json::encode;
use crate::protocol::{CustomDisconnect, Disconnect};
use crate::router::msg::{ServerSubscribe, UserAction, UserActionKind};
use crate::shard::Directive;

/// The unsubscribe push of the server API's `unsubscribe`, as Centrifugo sends it.
const UNSUBSCRIBE_SERVER: (u32, &str) = (2000, "server unsubscribe");

/// Where an applied action's acknowledgement comes from.
enum Applied {
    /// Now.
    Done,
    /// The hub, once the subscription it started is settled.
    Settling,
}

impl Session {
    /// Applies the server API's actions for this connection, in order, each acknowledged
    /// once applied (a subscription once its owner answered); a disconnect (or an expired
    /// refresh, or a subscription past the channel limit) ends the connection with its code
    /// and reason, and the actions after it count as done.
    pub fn apply_directives(&mut self) -> Result<(), CustomDisconnect> {
        let mut directives = self.shard().take_directives(self.out.id).into_iter();
        // Bounded by `DIRECTIVES_PER_CONNECTION_MAX`.
        while let Some(Directive { action, ack }) = directives.next() {
            let applied = if self.concerns(&action) {
                self.apply(&action, ack)
            } else {
                Ok(Applied::Done)
            };
            match applied {
                Ok(Applied::Done) => self.shard().directive_done(ack),
                Ok(Applied::Settling) => {}
                Err(end) => {
                    self.shard().directive_done(ack);
                    for rest in directives {
                        self.shard().directive_done(rest.ack);
                    }
                    return Err(end);
                }
            }
        }
        Ok(())
    }

    fn concerns(&self, action: &UserAction) -> bool {
        self.state == State::Connected
            && *action.user == *self.user
            && action.client.admits(self.client)
            && action.session.is_none()
    }

    /// Applies one action (`ack` goes with a subscription, which the hub settles later).
    fn apply(
        &mut self,
        action: &Arc<UserAction>,
        ack: Option<u64>,
    ) -> Result<Applied, CustomDisconnect> {
        match &action.kind {
            UserActionKind::Disconnect {
                code,
                reason,
                whitelist,
            } => {
                if whitelist.contains(&self.client) {
                    return Ok(Applied::Done);
                }
                Err(CustomDisconnect {
                    code: *code,
                    reason: reason.clone(),
                })
            }
            UserActionKind::Subscribe(sub) => self.server_subscribe(sub, ack),
            UserActionKind::Unsubscribe { channel } => {
                self.server_unsubscribe(channel);
                Ok(Applied::Done)
            }
            UserActionKind::Refresh {
                expired,
                expire_at,
                info,
            } => self
                .server_refresh(*expired, *expire_at, info.as_deref())
                .map(|()| Applied::Done),
        }
    }

    /// A server-side subscription from the API: as connect's, announced with the
    /// `subscribe` push (the recovered publications after it). A channel this connection is
    /// in already is left as it is; one past `client.channel_limit` closes the connection
    /// with 3505, as Centrifugo does. A subscription made is acknowledged by the hub once
    /// settled (`Applied::Settling`).
    fn server_subscribe(
        &mut self,
        req: &ServerSubscribe,
        ack: Option<u64>,
    ) -> Result<Applied, CustomDisconnect> {
        self.forget_refused(&req.channel);
        if self.is_subscribed(&req.channel) {
            return Ok(Applied::Done);
        }
        if self.channels.len() >= self.shard().config.client.channel_limit {
            return Err(Disconnect::ChannelLimit.into());
        }
        let config = &self.ctx.shard.config;
        // The API checked the namespace; the configuration does not change.
        let Some(mut options) = config.channel_options(&req.channel) else {
            return Ok(Applied::Done);
        };
        permissions::apply_overrides(&mut options, &req.overrides);
        let mode = StreamMode::forced(&options);
        let recover = req
            .recover_since
            .clone()
            .filter(|_| mode == StreamMode::Recoverable);
        let now = unix_secs();
        let expires_at = req.expire_at.filter(|&at| at > 0);
        let ttl = expires_at.map(|at| at.saturating_sub(now).min(u64::from(u32::MAX)) as u32);
        let token_reply = (ttl.is_some() || req.data.is_some()).then(|| {
            Box::new(TokenReply {
                ttl,
                data: req.data.clone(),
            })
        });
        let presence = self.presence_join(&req.channel, &options, req.info.as_deref());
        let sub = PendingSubscription {
            conn: self.out.clone(),
            reply: SubscribeReply::Push { ack },
            mode,
            recovery: match recover {
                Some(_) => RecoveryAsk::Asked {
                    reject_unrecovered: false,
                },
                None => RecoveryAsk::NotAsked,
            },
            token_reply,
            presence,
            push_join_leave: options.force_push_join_leave,
        };
        let presence = presence_overridden(&req.overrides, &options);
        self.channels.push(Subscribed {
            channel: req.channel.clone(),
            grant: (expires_at.is_some() || req.info.is_some() || presence.is_some()).then(|| {
                Box::new(Granted {
                    expires_at,
                    info: req.info.clone(),
                    presence,
                })
            }),
        });
        self.shard().subscribe(&req.channel, sub, recover);
        if expires_at.is_some() {
            self.watch_subscription_expiry();
        }
        Ok(Applied::Settling)
    }

    /// Ends the subscription to `channel` (if there is one; every subscription when
    /// `channel` is empty, as Centrifugo does) with the unsubscribe push 2000.
    fn server_unsubscribe(&mut self, channel: &str) {
        let ended: Vec<Subscribed> = if channel.is_empty() {
            std::mem::take(&mut self.channels).into_iter().collect()
        } else {
            let Some(at) = self.channels.iter().position(|s| *s.channel == *channel) else {
                return;
            };
            vec![self.channels.swap_remove(at)]
        };
        let (code, reason) = UNSUBSCRIBE_SERVER;
        for sub in ended {
            self.leave(&sub);
            let mut push = Vec::new();
            encode::unsubscribe_push(&mut push, &sub.channel, code, reason);
            self.out.push_message(&push);
        }
    }

    /// A refresh from the API: `expired` closes with 3005; else the new expiry (none when
    /// absent or 0; one already past closes with 3005) and info, told with the `refresh`
    /// push.
    fn server_refresh(
        &mut self,
        expired: bool,
        expire_at: Option<u64>,
        info: Option<&str>,
    ) -> Result<(), CustomDisconnect> {
        let expire_at = expire_at.filter(|&at| at > 0);
        if expired || expire_at.is_some_and(|at| at <= unix_secs()) {
            return Err(Disconnect::Expired.into());
        }
        if let Some(info) = info {
            self.conn_info = Some(info.into());
        }
        let ttl = self.set_expiry(expire_at);
        if ttl.is_none() {
            self.out.liveness.expires_at.set(None);
        }
        self.shard().watch_deadlines(&self.out);
        let mut push = Vec::new();
        encode::refresh_push(&mut push, ttl);
        self.out.push_message(&push);
        Ok(())
    }
}
