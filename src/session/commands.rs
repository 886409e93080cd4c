//! One function per client command (reference §§3-6). Replies that the session can give at
//! once are written to its reply buffer; subscribe, publish and history are completed by
//! whoever holds the answer (the hub when the subscriber joins, the owner otherwise), so the
//! replies before them are flushed first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::permissions::{self, Asker, Denied, Feature, Source};
use super::{check_channel, Granted, Session, State, Subscribed};
use crate::auth::token::{SubscriptionGrant, TokenError};
use crate::clock::{unix_secs, Millis};
use crate::config::ChannelOptions;
use crate::fanout::{
    PendingConnect, PendingSubscription, Phase, RecoveryAsk, StreamMode, SubscribeReply, TokenReply,
};
use crate::limits::JSON_DEPTH_MAX;
use crate::protocol::json::{decode, encode};
use crate::protocol::{
    ClientId, Disconnect, ErrorCode, HistoryRequest, PublishRequest, Refusal, SubRefreshRequest,
    SubscribePosition, SubscribeRequest, SubscriptionOverrides, FLAG_REJECT_UNRECOVERED,
};
use crate::router::msg::{
    ClientFilter, ClientInfos, HistoryQuery, PresenceItem, PresenceJoin, PresenceKind, RecoverFrom,
    UserAction, UserActionKind,
};

/// The unsubscribe push for a subscription whose token expired without a refresh: code and
/// reason as Centrifugo sends them (the SDKs subscribe again, asking for a new token).
const UNSUBSCRIBE_EXPIRED: (u32, &str) = (2501, "subscription expired");

impl Session {
    /// Whether this connection may do what `rule` decides on `channel` (publish, history,
    /// presence), as a subscriber of it or not; a refusal is answered here.
    fn may(&mut self, id: u32, channel: &str, feature: Feature) -> Result<bool, Disconnect> {
        let who = Asker {
            user: &self.user,
            client: self.client,
        };
        let subscribed = self.shard().is_member(channel, self.out.id);
        let ctx = &self.ctx;
        match ctx
            .access
            .may(&ctx.shard.config, who, channel, subscribed, feature)
        {
            Ok(_) => Ok(true),
            Err(denied) => self.deny(id, denied).map(|()| false),
        }
    }

    /// Answers a refused command: the error reply (or the disconnect), counted.
    fn deny(&mut self, id: u32, denied: Denied) -> Result<(), Disconnect> {
        self.shard().count_refusal(denied.refusal());
        match denied {
            Denied::Error(code, _) => {
                encode::error_reply(&mut self.reply(), id, code);
                Ok(())
            }
            Denied::Disconnect(d, _) => Err(d),
        }
    }

    /// Refuses the connect with an error reply; the session then ignores the client.
    fn refuse_connect(
        &mut self,
        id: u32,
        code: ErrorCode,
        refusal: Refusal,
    ) -> Result<(), Disconnect> {
        self.shard().count_refusal(refusal);
        encode::error_reply(&mut self.reply(), id, code);
        self.state = State::Refused;
        Ok(())
    }

    /// `connect`: `positions` are where a reconnecting client was in its server-side
    /// subscriptions (connect's `subs`).
    pub(super) fn connect(
        &mut self,
        id: u32,
        token: &str,
        positions: &HashMap<String, SubscribePosition>,
    ) -> Result<(), Disconnect> {
        let claims = if token.is_empty() {
            let client = &self.shard().config.client;
            if !client.allow_anonymous_connect_without_token && !client.insecure {
                self.shard().count_refusal(Refusal::NoToken);
                return Err(Disconnect::BadRequest);
            }
            None
        } else {
            match self.ctx.tokens.connect(token) {
                Ok(claims) => Some(claims),
                Err(TokenError::Expired) => {
                    return self.refuse_connect(id, ErrorCode::TokenExpired, Refusal::TokenExpired)
                }
                Err(TokenError::UnknownChannel) => {
                    return self.refuse_connect(
                        id,
                        ErrorCode::UnknownChannel,
                        Refusal::UnknownChannel,
                    )
                }
                // Temporary: the SDK connects again, by when the key is fetched.
                Err(TokenError::Unverifiable) => {
                    return self.refuse_connect(id, ErrorCode::Internal, Refusal::TokenUnverifiable)
                }
                Err(TokenError::Invalid(_)) => {
                    self.shard().count_refusal(Refusal::TokenInvalid);
                    return Err(Disconnect::InvalidToken);
                }
            }
        };
        let (user, expires_at, info, mut subs) = match claims {
            Some(c) => {
                if c.user.is_empty()
                    && self
                        .shard()
                        .config
                        .client
                        .disallow_anonymous_connection_tokens
                {
                    self.shard().count_refusal(Refusal::NotAllowed);
                    return Err(Disconnect::PermissionDenied);
                }
                (c.user, c.expires_at, c.info, c.subs)
            }
            None => (String::new(), None, None, Vec::new()),
        };
        let config = &self.ctx.shard.config;
        if config.client.subscribe_to_user_personal_channel.enabled && !user.is_empty() {
            let personal = config.personal_channel(&user);
            if config.channel.options(&personal).is_none() {
                return self.refuse_connect(id, ErrorCode::UnknownChannel, Refusal::UnknownChannel);
            }
            if !subs.iter().any(|(c, _)| *c == personal) {
                subs.insert(0, (personal, SubscriptionGrant::default()));
            }
        }
        if expires_at.is_some_and(|at| at <= unix_secs()) {
            // `expire_at` already past (an `exp` past is 109 above).
            return self.refuse_connect(id, ErrorCode::Expired, Refusal::Expired);
        }
        if subs.iter().any(|(c, _)| {
            !permissions::server_side_subscribe(&self.ctx.access, &self.shard().config, c)
        }) {
            return self.refuse_connect(id, ErrorCode::BadRequest, Refusal::BadChannel);
        }
        self.client = match ClientId::for_connection(self.shard().id, self.out.id) {
            Ok(client) => client,
            Err(e) => {
                eprintln!("ringcast: connect: {e}");
                encode::error_reply(&mut self.reply(), id, ErrorCode::Internal);
                self.state = State::Refused;
                return Ok(());
            }
        };
        let personal = &self
            .shard()
            .config
            .client
            .subscribe_to_user_personal_channel;
        let single = personal.enabled && personal.single_connection;
        let limit = self.shard().config.client.user_connection_limit;
        if limit > 0
            && !single
            && !user.is_empty()
            && self.shard().user_connections_here(&user) >= limit
        {
            // As Centrifugo: closed with 3504. The user's connections on other shards are
            // counted by the user's owner shard, which closes one past the limit.
            self.shard().count_refusal(Refusal::UserConnectionLimit);
            return Err(Disconnect::ConnectionLimit);
        }
        if single && !user.is_empty() {
            // One connection per user: the user's others close with 3504, wherever they are
            // (Centrifugo finds them through the personal channel's presence; the registry
            // of every shard knows them without it).
            self.shard().tell_user_action(UserAction {
                user: user.as_str().into(),
                client: ClientFilter::Any,
                session: None,
                kind: UserActionKind::Disconnect {
                    code: Disconnect::ConnectionLimit.code(),
                    reason: Disconnect::ConnectionLimit.reason().into(),
                    whitelist: vec![self.client],
                },
            });
        }
        self.user = Arc::from(user);
        self.conn_info = info.map(String::into_boxed_str);
        self.state = State::Connected;
        let ttl = self.set_expiry(expires_at);
        self.out.liveness.phase.set(Phase::Connected);
        // Its deadlines are pings and the token's expiry now, no longer the stale close.
        self.shard().watch_deadlines(&self.out);
        self.shard().add_user(&self.user, self.out.id, self.client);
        // The server-side subscriptions the connection gets: each once, within the channel
        // limit. The reply lists exactly these.
        let limit = self.shard().config.client.channel_limit;
        let subs: Vec<(String, SubscriptionGrant)> = subs.into_iter().take(limit).collect();
        let names: Vec<Box<str>> = subs.iter().map(|(c, _)| c.as_str().into()).collect();
        let client = &self.shard().config.client;
        let ping = client.ping_interval.positive();
        let result = encode::ConnectResult {
            client: &self.client.to_string(),
            version: crate::VERSION,
            ttl,
            subs: &[],
            ping_seconds: ping.map(|p| p.as_millis().div_ceil(1000) as u32),
            pong: ping.is_some() && client.pong_timeout.positive().is_some(),
        };
        if subs.is_empty() {
            encode::connect_reply(&mut self.reply(), id, &result);
            return Ok(());
        }
        // The reply waits for every server-side subscription's result (their positions, and
        // what a reconnecting client's recovery found), holding its place in the output so
        // nothing they deliver goes out first.
        self.flush_replies();
        let slots = PendingConnect::start(self.out.clone(), id, &result, &names);
        for ((channel, grant), slot) in subs.into_iter().zip(slots) {
            let mut options = self
                .shard()
                .config
                .channel_options(&channel)
                .unwrap_or_default();
            permissions::apply_overrides(&mut options, &grant.overrides);
            let mode = StreamMode::forced(&options);
            // A reconnecting client names where it was in each server-side subscription.
            let recover = positions
                .get(channel.as_str())
                .filter(|p| p.recover && mode == StreamMode::Recoverable)
                .map(|p| RecoverFrom {
                    offset: p.offset,
                    epoch: p.epoch.as_str().into(),
                });
            let chan_info = grant.info.as_deref();
            let presence = self.presence_join(&channel, &options, chan_info);
            let sub = PendingSubscription {
                conn: self.out.clone(),
                reply: SubscribeReply::ServerSide(Some(slot)),
                presence,
                push_join_leave: options.force_push_join_leave,
                mode,
                recovery: match recover {
                    Some(_) => RecoveryAsk::Asked {
                        reject_unrecovered: false,
                    },
                    None => RecoveryAsk::NotAsked,
                },
                // The token's `data` for this subscription goes in its result.
                token_reply: grant.data.clone().map(|data| {
                    Box::new(TokenReply {
                        ttl: None,
                        data: Some(data),
                    })
                }),
            };
            self.shard().subscribe(&channel, sub, recover);
            let presence = presence_override(&grant, &options);
            self.channels.push(Subscribed {
                channel: channel.into(),
                grant: (grant.info.is_some() || presence.is_some()).then(|| {
                    Box::new(Granted {
                        expires_at: None,
                        info: grant.info,
                        presence,
                    })
                }),
            });
        }
        Ok(())
    }

    /// Records the token expiry (the caller then has the shard watch the new deadline);
    /// returns the ttl in seconds to report, if the token expires.
    pub(super) fn set_expiry(&mut self, expires_at: Option<u64>) -> Option<u32> {
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
                if claims.expires_at.is_some_and(|at| at <= unix_secs()) {
                    self.shard().count_refusal(Refusal::Expired);
                    encode::error_reply(&mut self.reply(), id, ErrorCode::Expired);
                    return Ok(());
                }
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
            Ok(_) => {
                self.shard().count_refusal(Refusal::TokenMismatch);
                Err(Disconnect::InvalidToken)
            }
            Err(TokenError::Invalid(_) | TokenError::UnknownChannel) => {
                self.shard().count_refusal(Refusal::TokenInvalid);
                Err(Disconnect::InvalidToken)
            }
            Err(TokenError::Expired) => {
                self.shard().count_refusal(Refusal::TokenExpired);
                Err(Disconnect::Expired)
            }
            // Temporary: the SDK refreshes again later.
            Err(TokenError::Unverifiable) => self.deny(
                id,
                Denied::Error(ErrorCode::Internal, Refusal::TokenUnverifiable),
            ),
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
            self.channels.retain(|s| shard.is_member(&s.channel, conn));
        }
        // A subscription type this server does not have (map, shared poll, ...): refused as
        // Centrifugo refuses a type the namespace does not configure.
        if req.kind != 0 {
            return self.deny(
                id,
                Denied::Error(ErrorCode::PermissionDenied, Refusal::NotAllowed),
            );
        }
        // The library's checks first (length, already subscribed, limit), then the access
        // rules, as in Centrifugo.
        if channel.len() > self.shard().config.channel.max_length {
            return self.deny(
                id,
                Denied::Error(ErrorCode::BadRequest, Refusal::BadChannel),
            );
        }
        if self.is_subscribed(channel) {
            encode::error_reply(&mut self.reply(), id, ErrorCode::AlreadySubscribed);
            return Ok(());
        }
        if self.channels.len() >= limit {
            encode::error_reply(&mut self.reply(), id, ErrorCode::LimitExceeded);
            return Ok(());
        }
        // The session's own fields stay borrowable: a refusal below writes its reply.
        let user = self.user.clone();
        let who = Asker {
            user: &user,
            client: self.client,
        };
        let ctx = self.ctx.clone();
        let config = &ctx.shard.config;
        let allowed = match ctx
            .access
            .subscribe(config, &ctx.tokens, who, channel, &req.token)
        {
            Ok(allowed) => allowed,
            Err(denied) => return self.deny(id, denied),
        };
        let (expires_at, grant) = match allowed.source {
            Source::Token { grant, expires_at } => (expires_at, Some(grant)),
            _ => (None, None),
        };
        let now = unix_secs();
        if expires_at.is_some_and(|at| at <= now) {
            return self.deny(id, Denied::Error(ErrorCode::Expired, Refusal::Expired));
        }
        let options = allowed.options;
        let history = options.history();
        // Positioning and recovery when forced, when allowed, or for whoever may read the
        // history as a subscriber (as Centrifugo decides).
        let reads_history = permissions::history_access(config, &options, who, true);
        let recoverable = history
            && (options.force_recovery
                || (req.recoverable && (options.allow_recovery || reads_history)));
        let positioned = history
            && (options.force_positioning
                || (req.positioned && (options.allow_positioning || reads_history)));
        let recover = (recoverable && req.recover).then(|| RecoverFrom {
            offset: req.offset,
            epoch: req.epoch.as_str().into(),
        });
        let mode = StreamMode::of(recoverable, positioned);
        let recovery = match recover {
            Some(_) => RecoveryAsk::Asked {
                reject_unrecovered: req.flag & FLAG_REJECT_UNRECOVERED != 0,
            },
            None => RecoveryAsk::NotAsked,
        };
        let ttl = expires_at.map(|at| (at - now).min(u64::from(u32::MAX)) as u32);
        let data = grant.as_ref().and_then(|g| g.data.clone());
        let token_reply =
            (ttl.is_some() || data.is_some()).then(|| Box::new(TokenReply { ttl, data }));
        // The reply is queued by the hub when the subscriber joins, possibly right now:
        // replies of earlier commands go out first.
        self.flush_replies();
        let presence = grant.as_ref().and_then(|g| presence_override(g, &options));
        let info = grant.and_then(|g| g.info);
        let push_join_leave = options.force_push_join_leave
            || (req.join_leave
                && options.join_leave
                && permissions::presence_access(config, &options, who, true));
        let presence_join = self.presence_join(channel, &options, info.as_deref());
        self.channels.push(Subscribed {
            channel: channel.into(),
            grant: (expires_at.is_some() || info.is_some() || presence.is_some()).then(|| {
                Box::new(Granted {
                    expires_at,
                    info,
                    presence,
                })
            }),
        });
        if expires_at.is_some() {
            self.watch_subscription_expiry();
        }
        let sub = PendingSubscription {
            conn: self.out.clone(),
            reply: SubscribeReply::Command(id),
            mode,
            recovery,
            token_reply,
            presence: presence_join,
            push_join_leave,
        };
        self.shard().subscribe(channel, sub, recover);
        Ok(())
    }

    /// Sets the connection's subscription deadline to the earliest token expiry among its
    /// subscriptions, and has the shard watch it.
    pub(super) fn watch_subscription_expiry(&mut self) {
        let next = self
            .channels
            .iter()
            .filter_map(|s| s.grant.as_ref()?.expires_at)
            .min();
        let now = unix_secs();
        let at = next.map(|at| Millis::now().after(Duration::from_secs(at.saturating_sub(now))));
        self.out.liveness.sub_expires_at.set(at);
        if at.is_some() {
            self.shard().watch_deadlines(&self.out);
        }
    }

    /// Ends the subscriptions whose tokens expired longer ago than
    /// `client.expired_sub_close_delay` (the ticker found one due): each gets the
    /// unsubscribe push with code 2501, on which the SDK subscribes again with a new token.
    pub fn expire_subscriptions(&mut self) {
        let grace = self
            .shard()
            .config
            .client
            .expired_sub_close_delay
            .positive()
            .map_or(0, |d| d.as_secs());
        let now = unix_secs();
        let mut expired = Vec::new();
        let mut at = 0;
        // Bounded by the channel limit: each pass removes an entry or moves past one.
        while at < self.channels.len() {
            let gone = self.channels[at]
                .grant
                .as_ref()
                .and_then(|g| g.expires_at)
                .is_some_and(|at| at.saturating_add(grace) < now);
            if gone {
                expired.push(self.channels.swap_remove(at));
            } else {
                at += 1;
            }
        }
        for sub in expired {
            self.leave(&sub);
            let mut push = Vec::new();
            encode::unsubscribe_push(
                &mut push,
                &sub.channel,
                UNSUBSCRIBE_EXPIRED.0,
                UNSUBSCRIBE_EXPIRED.1,
            );
            self.out.push_message(&push);
        }
        self.watch_subscription_expiry();
    }

    /// Drops `channel` from the list if the hub refused the subscription (an error or 112
    /// answered by the owner after the command was taken).
    pub(super) fn forget_refused(&mut self, channel: &str) {
        if let Some(at) = self.channels.iter().position(|s| *s.channel == *channel) {
            if !self.shard().is_member(channel, self.out.id) {
                self.channels.swap_remove(at);
            }
        }
    }

    pub(super) fn unsubscribe(&mut self, id: u32, channel: &str) -> Result<(), Disconnect> {
        check_channel(channel)?;
        if let Some(at) = self.channels.iter().position(|s| *s.channel == *channel) {
            let sub = self.channels.swap_remove(at);
            self.leave(&sub);
        }
        encode::empty_result(&mut self.reply(), id, "unsubscribe");
        Ok(())
    }

    pub(super) fn publish(&mut self, id: u32, req: &PublishRequest<'_>) -> Result<(), Disconnect> {
        check_channel(&req.channel)?;
        let Some(data) = req.data else {
            encode::error_reply(&mut self.reply(), id, ErrorCode::BadRequest);
            return Ok(());
        };
        if !self.may(id, &req.channel, Feature::Publish)? {
            return Ok(());
        }
        if !decode::depth_within(data.get().as_bytes(), JSON_DEPTH_MAX) {
            encode::error_reply(&mut self.reply(), id, ErrorCode::BadRequest);
            return Ok(());
        }
        let raw = encode::raw_without_newlines(data.get().as_bytes());
        let chan_info = self
            .subscription(&req.channel)
            .and_then(|s| s.grant.as_ref()?.info.as_deref());
        let client = self.client.to_string();
        let info = encode::client_info(&self.user, &client, self.conn_info.as_deref(), chan_info);
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

    /// `presence` or `presence_stats`: the channel's owner answers straight to this
    /// connection.
    pub(super) fn presence(
        &mut self,
        id: u32,
        channel: &str,
        kind: PresenceKind,
    ) -> Result<(), Disconnect> {
        check_channel(channel)?;
        if !self.may(id, channel, Feature::Presence)? {
            return Ok(());
        }
        self.flush_replies();
        self.shard()
            .presence_for_connection(channel, kind, self.out.id, id);
        Ok(())
    }

    /// The presence entry a new subscription sends its owner once it joined, when its
    /// options have presence or join/leave on.
    pub(super) fn presence_join(
        &self,
        channel: &str,
        options: &ChannelOptions,
        chan_info: Option<&str>,
    ) -> Option<Box<PresenceJoin>> {
        if !(options.presence || options.join_leave) {
            return None;
        }
        let infos = (self.conn_info.is_some() || chan_info.is_some()).then(|| {
            Arc::new(ClientInfos {
                conn_info: self.conn_info.clone(),
                chan_info: chan_info.map(Into::into),
            })
        });
        Some(Box::new(PresenceJoin {
            channel: channel.into(),
            item: PresenceItem {
                client: self.client,
                user: self.user.clone(),
                infos,
            },
            join_leave: options.join_leave,
        }))
    }

    pub(super) fn history(&mut self, id: u32, req: HistoryRequest) -> Result<(), Disconnect> {
        check_channel(&req.channel)?;
        if !self.may(id, &req.channel, Feature::History)? {
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

    /// No RPC handler is configured: not available, as Centrifugo answers then.
    pub(super) fn rpc(&mut self, id: u32) -> Result<(), Disconnect> {
        encode::error_reply(&mut self.reply(), id, ErrorCode::NotAvailable);
        Ok(())
    }

    /// A new subscription token for a subscribed channel: extends (or ends) its expiry and
    /// replaces its channel info, as Centrifugo's client-side sub refresh does.
    pub(super) fn sub_refresh(
        &mut self,
        id: u32,
        req: &SubRefreshRequest,
    ) -> Result<(), Disconnect> {
        check_channel(&req.channel)?;
        if !self.is_subscribed(&req.channel) {
            return self.deny(
                id,
                Denied::Error(ErrorCode::PermissionDenied, Refusal::NotAllowed),
            );
        }
        if req.token.is_empty() {
            encode::error_reply(&mut self.reply(), id, ErrorCode::BadRequest);
            return Ok(());
        }
        let claims = match self.ctx.tokens.subscribe(&req.token) {
            Ok(claims) => claims,
            Err(TokenError::Expired) => {
                return self.deny(
                    id,
                    Denied::Error(ErrorCode::TokenExpired, Refusal::TokenExpired),
                )
            }
            Err(TokenError::Invalid(_) | TokenError::UnknownChannel) => {
                self.shard().count_refusal(Refusal::TokenInvalid);
                return Err(Disconnect::InvalidToken);
            }
            Err(TokenError::Unverifiable) => {
                return self.deny(
                    id,
                    Denied::Error(ErrorCode::Internal, Refusal::TokenUnverifiable),
                )
            }
        };
        let client = self.client.to_string();
        if claims.channel != req.channel
            || claims.user != *self.user
            || claims.client.as_deref().is_some_and(|c| c != client)
        {
            self.shard().count_refusal(Refusal::TokenMismatch);
            return Err(Disconnect::InvalidToken);
        }
        let now = unix_secs();
        if claims.expires_at.is_some_and(|at| at < now) {
            return self.deny(id, Denied::Error(ErrorCode::Expired, Refusal::Expired));
        }
        if let Some(sub) = self
            .channels
            .iter_mut()
            .find(|s| *s.channel == *req.channel)
        {
            let grant = sub.grant.get_or_insert_with(Default::default);
            grant.expires_at = claims.expires_at;
            grant.info = claims.grant.info;
        }
        self.watch_subscription_expiry();
        let ttl = claims
            .expires_at
            .map(|at| (at - now).min(u64::from(u32::MAX)) as u32);
        encode::sub_refresh_reply(&mut self.reply(), id, ttl);
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

/// Whether a subscription has a presence entry, when a token's overrides decided it.
fn presence_override(grant: &SubscriptionGrant, options: &ChannelOptions) -> Option<bool> {
    presence_overridden(&grant.overrides, options)
}

/// Whether a subscription has a presence entry, when `o` decided it.
pub(super) fn presence_overridden(
    o: &SubscriptionOverrides,
    options: &ChannelOptions,
) -> Option<bool> {
    (o.presence.is_some() || o.join_leave.is_some())
        .then_some(options.presence || options.join_leave)
}
