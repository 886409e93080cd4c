//! One function per client command (reference §§3-6). Replies that the session can give at
//! once are written to its reply buffer; subscribe, publish and history are completed by
//! whoever holds the answer (the hub when the subscriber joins, the owner otherwise), so the
//! replies before them are flushed first.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use super::{check_channel, permissions, Session, State};
use crate::auth::token::TokenError;
use crate::clock::{unix_secs, Millis};
use crate::fanout::{PendingSubscription, Phase, RecoveryAsk, StreamMode, SubscribeReply};
use crate::limits::JSON_DEPTH_MAX;
use crate::protocol::json::{decode, encode};
use crate::protocol::{
    ClientId, Disconnect, ErrorCode, HistoryRequest, PublishRequest, SubscribeRequest,
    FLAG_REJECT_UNRECOVERED,
};
use crate::router::msg::{HistoryQuery, RecoverFrom};

impl Session {
    pub(super) fn connect(&mut self, id: u32, token: &str) -> Result<(), Disconnect> {
        let claims = if token.is_empty() {
            if !self
                .shard()
                .config
                .client
                .allow_anonymous_connect_without_token
            {
                return Err(Disconnect::BadRequest);
            }
            None
        } else {
            match self.ctx.tokens.connect(token) {
                Ok(claims) => Some(claims),
                Err(TokenError::Expired) => {
                    encode::error_reply(&mut self.reply(), id, ErrorCode::TokenExpired);
                    self.state = State::Refused;
                    return Ok(());
                }
                Err(TokenError::Invalid) => return Err(Disconnect::InvalidToken),
            }
        };
        let (user, expires_at, info, channels) = match claims {
            Some(c) => (c.user, c.expires_at, c.info, c.channels),
            None => (String::new(), None, None, Vec::new()),
        };
        let max_length = self.shard().config.channel.max_length;
        if channels
            .iter()
            .any(|c| c.is_empty() || c.len() > max_length)
        {
            encode::error_reply(&mut self.reply(), id, ErrorCode::BadRequest);
            self.state = State::Refused;
            return Ok(());
        }
        self.client = match ClientId::random() {
            Ok(client) => client,
            Err(e) => {
                eprintln!("ringcast: connect: {e}");
                encode::error_reply(&mut self.reply(), id, ErrorCode::Internal);
                self.state = State::Refused;
                return Ok(());
            }
        };
        self.user = Rc::from(user);
        self.conn_info = info.map(String::into_boxed_str);
        self.state = State::Connected;
        let ttl = self.set_expiry(expires_at);
        self.out.liveness.phase.set(Phase::Connected);
        // Its deadlines are pings and the token's expiry now, no longer the stale close.
        self.shard().watch_deadlines(&self.out);
        self.shard().add_user(&self.user);
        // The server-side subscriptions the connection gets: configured channels, each once,
        // within the channel limit. The reply lists exactly these.
        let limit = self.shard().config.client.channel_limit;
        let mut subs: Vec<Box<str>> = Vec::new();
        for channel in channels {
            if subs.len() < limit
                && !subs.iter().any(|c| **c == *channel)
                && permissions::server_side_subscribe(&self.shard().config, &channel)
            {
                subs.push(channel.into());
            }
        }
        let client = &self.shard().config.client;
        let ping = client.ping_interval.positive();
        let result = encode::ConnectResult {
            client: &self.client.to_string(),
            version: crate::VERSION,
            ttl,
            subs: &subs,
            ping_seconds: ping.map(|p| p.as_millis().div_ceil(1000) as u32),
            pong: ping.is_some() && client.pong_timeout.positive().is_some(),
        };
        encode::connect_reply(&mut self.reply(), id, &result);
        // Server-side subscriptions start after the reply is sent, like client ones; they
        // get no reply of their own.
        self.flush_replies();
        for channel in subs {
            let sub = PendingSubscription::plain(self.out.clone(), SubscribeReply::ServerSide);
            self.shard().subscribe(&channel, sub, None);
            self.channels.push(channel);
        }
        Ok(())
    }

    /// Records the token expiry (the caller then has the shard watch the new deadline);
    /// returns the ttl in seconds to report, if the token expires.
    fn set_expiry(&mut self, expires_at: Option<u64>) -> Option<u32> {
        let at = expires_at?;
        let ttl = at.saturating_sub(unix_secs());
        self.out
            .liveness
            .expires_at
            .set(Some(Millis::now().after(Duration::from_secs(ttl))));
        Some(ttl.min(u64::from(u32::MAX)) as u32)
    }

    pub(super) fn refresh(&mut self, id: u32, token: &str) -> Result<(), Disconnect> {
        match self.ctx.tokens.connect(token) {
            Ok(claims) if *claims.user == *self.user => {
                if claims.info.is_some() {
                    self.conn_info = claims.info.map(String::into_boxed_str);
                }
                let ttl = self.set_expiry(claims.expires_at);
                if ttl.is_none() {
                    self.out.liveness.expires_at.set(None);
                }
                self.shard().watch_deadlines(&self.out);
                let client = self.client.to_string();
                encode::refresh_reply(&mut self.reply(), id, &client, crate::VERSION, ttl);
                Ok(())
            }
            Ok(_) | Err(TokenError::Invalid) => Err(Disconnect::InvalidToken),
            Err(TokenError::Expired) => Err(Disconnect::Expired),
        }
    }

    pub(super) fn subscribe(&mut self, id: u32, req: &SubscribeRequest) -> Result<(), Disconnect> {
        let channel = req.channel.as_str();
        check_channel(channel)?;
        self.forget_refused(channel);
        let limit = self.shard().config.client.channel_limit;
        if self.channels.len() >= limit {
            // Subscriptions the owner refused after the command was taken do not count.
            let shard = self.ctx.shard.clone();
            let conn = self.out.id;
            self.channels.retain(|c| shard.is_member(c, conn));
        }
        let checked = permissions::subscribe(&self.shard().config, channel).and_then(|options| {
            if self.is_subscribed(channel) {
                Err(ErrorCode::AlreadySubscribed)
            } else if self.channels.len() >= limit {
                Err(ErrorCode::LimitExceeded)
            } else {
                Ok(options)
            }
        });
        let options = match checked {
            Ok(options) => options,
            Err(error) => {
                encode::error_reply(&mut self.reply(), id, error);
                return Ok(());
            }
        };
        let history = options.history();
        let recoverable =
            history && (options.force_recovery || (req.recoverable && options.allow_recovery));
        let positioned =
            history && (options.force_positioning || (req.positioned && options.allow_positioning));
        let recover = (recoverable && req.recover).then(|| RecoverFrom {
            offset: req.offset,
            epoch: req.epoch.as_str().into(),
        });
        let mode = match (recoverable, positioned) {
            (true, _) => StreamMode::Recoverable,
            (false, true) => StreamMode::Positioned,
            (false, false) => StreamMode::Plain,
        };
        let recovery = match recover {
            Some(_) => RecoveryAsk::Asked {
                reject_unrecovered: req.flag & FLAG_REJECT_UNRECOVERED != 0,
            },
            None => RecoveryAsk::NotAsked,
        };
        // The reply is queued by the hub when the subscriber joins, possibly right now:
        // replies of earlier commands go out first.
        self.flush_replies();
        self.channels.push(channel.into());
        let sub = PendingSubscription {
            conn: self.out.clone(),
            reply: SubscribeReply::Command(id),
            mode,
            recovery,
        };
        self.shard().subscribe(channel, sub, recover);
        Ok(())
    }

    /// Drops `channel` from the list if the hub refused the subscription (an error or 112
    /// answered by the owner after the command was taken).
    fn forget_refused(&mut self, channel: &str) {
        if let Some(at) = self.channels.iter().position(|c| **c == *channel) {
            if !self.shard().is_member(channel, self.out.id) {
                self.channels.swap_remove(at);
            }
        }
    }

    pub(super) fn unsubscribe(&mut self, id: u32, channel: &str) -> Result<(), Disconnect> {
        check_channel(channel)?;
        if let Some(at) = self.channels.iter().position(|c| **c == *channel) {
            self.channels.swap_remove(at);
            self.shard().unsubscribe(channel, self.out.id);
        }
        encode::empty_result(&mut self.reply(), id, "unsubscribe");
        Ok(())
    }

    pub(super) fn publish(&mut self, id: u32, req: &PublishRequest<'_>) -> Result<(), Disconnect> {
        check_channel(&req.channel)?;
        let checked = match req.data {
            None => Err(ErrorCode::BadRequest),
            Some(data) => permissions::publish(&self.shard().config, &req.channel).and_then(|_| {
                if decode::depth_within(data.get().as_bytes(), JSON_DEPTH_MAX) {
                    Ok(data)
                } else {
                    Err(ErrorCode::BadRequest)
                }
            }),
        };
        let data = match checked {
            Ok(data) => data,
            Err(error) => {
                encode::error_reply(&mut self.reply(), id, error);
                return Ok(());
            }
        };
        let raw = encode::raw_without_newlines(data.get().as_bytes());
        let info = encode::client_info(
            &self.user,
            &self.client.to_string(),
            self.conn_info.as_deref(),
        );
        // Replies queued so far go out before the publication can reach us; the publish
        // reply comes from the owner once the publication is accepted.
        self.flush_replies();
        self.shard().publish_from_connection(
            &req.channel,
            Bytes::from(raw),
            Some(Bytes::from(info)),
            self.out.id,
            id,
        );
        Ok(())
    }

    pub(super) fn presence(&mut self, id: u32, channel: &str) -> Result<(), Disconnect> {
        check_channel(channel)?;
        // Presence is not built yet: disabled, which Centrifugo answers with 108.
        encode::error_reply(&mut self.reply(), id, ErrorCode::NotAvailable);
        Ok(())
    }

    pub(super) fn history(&mut self, id: u32, req: HistoryRequest) -> Result<(), Disconnect> {
        check_channel(&req.channel)?;
        let subscribed = self.shard().is_member(&req.channel, self.out.id);
        if let Err(error) = permissions::history(&self.shard().config, &req.channel, subscribed) {
            encode::error_reply(&mut self.reply(), id, error);
            return Ok(());
        }
        // The owner answers straight to this connection; earlier replies go first.
        self.flush_replies();
        let query = HistoryQuery {
            limit: req.limit,
            since: req.since.map(|s| (s.offset, s.epoch.into_boxed_str())),
            reverse: req.reverse,
        };
        self.shard()
            .history_for_connection(&req.channel, query, self.out.id, id);
        Ok(())
    }

    pub(super) fn rpc(&mut self, id: u32) -> Result<(), Disconnect> {
        encode::error_reply(&mut self.reply(), id, ErrorCode::MethodNotFound);
        Ok(())
    }

    pub(super) fn sub_refresh(&mut self, id: u32, channel: &str) -> Result<(), Disconnect> {
        check_channel(channel)?;
        // No subscription tokens yet, so no subscription can need a refresh.
        encode::error_reply(&mut self.reply(), id, ErrorCode::PermissionDenied);
        Ok(())
    }

    pub(super) fn pong(&mut self) -> Result<(), Disconnect> {
        let client = &self.shard().config.client;
        let checked =
            client.ping_interval.positive().is_some() && client.pong_timeout.positive().is_some();
        // An unexpected pong is malformed only where the server expects pongs.
        if self.out.liveness.pong_due.take().is_none() && checked {
            return Err(Disconnect::BadRequest);
        }
        Ok(())
    }
}
