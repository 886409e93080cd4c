//! `Session`: the Centrifugo protocol state of one WebSocket connection: connect and auth,
//! the set of subscriptions, pong bookkeeping, and the answer to every command. It turns
//! commands into replies (queued on the connection's `Outbound`) and into shard calls
//! (subscribe, publish), and ends with a `Disconnect` when the protocol says so.
//!
//! Owns only its own state; it reaches the rest of the shard through `Shard`.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::hub::{Millis, Outbound, PendingSubscription};
use crate::protocol::{self, code, Command, Disconnect, ParseError, Request};
use crate::router::RecoverFrom;
use crate::shard::Shard;
use crate::token::{self, TokenError};
use crate::ws;

/// Most channels one connection may subscribe to (Centrifugo's `client.channel_limit`).
pub const CHANNEL_LIMIT: usize = 128;
/// Longest channel name (Centrifugo's `channel.max_length`).
pub const CHANNEL_MAX_LENGTH: usize = 255;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Waiting for the connect command.
    New,
    Connected,
    /// The connect failed with an error reply: ignore everything until the client leaves.
    Refused,
}

pub struct Session {
    shard: Rc<Shard>,
    out: Rc<Outbound>,
    state: State,
    client: protocol::ClientId,
    user: String,
    conn_info: Option<String>,
    /// Subscribed channels (at most `CHANNEL_LIMIT`; a Vec holds no allocation while empty
    /// and is small to scan).
    channels: Vec<Box<str>>,
    /// Replies of the frame being processed, newline-joined into one frame when flushed.
    replies: Vec<u8>,
}

impl Session {
    pub fn new(shard: Rc<Shard>, out: Rc<Outbound>) -> Self {
        Session {
            shard,
            out,
            state: State::New,
            client: protocol::ClientId::default(),
            user: String::new(),
            conn_info: None,
            channels: Vec::new(),
            replies: Vec::new(),
        }
    }

    /// Handles one WebSocket message: newline-separated commands, processed in order.
    /// Replies go out as one frame (flushed earlier only before a publish, so a reply never
    /// trails a publication the same frame caused).
    pub fn handle_message(&mut self, message: &[u8]) -> Result<(), Disconnect> {
        self.shard.count_message_in();
        let result = message
            .split(|&b| b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .try_for_each(|line| self.handle_line(line));
        self.flush_replies();
        result
    }

    fn flush_replies(&mut self) {
        if !self.replies.is_empty() {
            self.out.push(ws::text_frame(&self.replies));
            // Dropped, not cleared: an idle session keeps no reply buffer.
            self.replies = Vec::new();
        }
    }

    fn reply(&mut self) -> &mut Vec<u8> {
        next_reply(&mut self.replies)
    }

    fn handle_line(&mut self, line: &[u8]) -> Result<(), Disconnect> {
        if self.state == State::Refused {
            return Ok(());
        }
        let command = match protocol::parse_command(line) {
            Ok(command) => command,
            Err(ParseError::Json | ParseError::UnknownMethod) => {
                return Err(Disconnect::BAD_REQUEST)
            }
        };
        let Command { id, request } = command;
        if id == 0 && !matches!(request, Request::Pong | Request::Send) {
            return Err(Disconnect::BAD_REQUEST);
        }
        match (&self.state, request) {
            (State::New, Request::Connect(connect)) => self.connect(id, &connect.token),
            (State::New, _) | (State::Connected, Request::Connect(_)) => {
                Err(Disconnect::BAD_REQUEST)
            }
            (State::Connected, request) => self.handle_connected(id, request),
            (State::Refused, _) => Ok(()),
        }
    }

    fn handle_connected(&mut self, id: u32, request: Request<'_>) -> Result<(), Disconnect> {
        match request {
            Request::Connect(_) => Err(Disconnect::BAD_REQUEST),
            Request::Subscribe(req) => self.subscribe(id, &req),
            Request::Unsubscribe(req) => {
                check_channel(&req.channel)?;
                if let Some(at) = self.channels.iter().position(|c| **c == *req.channel) {
                    self.channels.swap_remove(at);
                    self.shard.unsubscribe(&req.channel, self.out.id);
                }
                protocol::empty_result(self.reply(), id, "unsubscribe");
                Ok(())
            }
            Request::Publish(req) => {
                check_channel(&req.channel)?;
                let Some(data) = req.data else {
                    protocol::error_reply(self.reply(), id, code::BAD_REQUEST, false);
                    return Ok(());
                };
                let Some(options) = self.shard.config.channel_options(&req.channel) else {
                    protocol::error_reply(self.reply(), id, code::UNKNOWN_CHANNEL, false);
                    return Ok(());
                };
                if !options.allow_publish_for_client {
                    protocol::error_reply(self.reply(), id, code::PERMISSION_DENIED, false);
                    return Ok(());
                }
                if req.channel.len() > CHANNEL_MAX_LENGTH {
                    protocol::error_reply(self.reply(), id, code::BAD_REQUEST, false);
                    return Ok(());
                }
                let mut raw = Vec::with_capacity(data.get().len());
                protocol::put_raw(&mut raw, data.get().as_bytes());
                let info = protocol::client_info(
                    &self.user,
                    &self.client.to_string(),
                    self.conn_info.as_deref(),
                );
                // Replies queued so far go out before the publication can reach us; the
                // publish reply comes from the owner once the publication is accepted.
                self.flush_replies();
                self.shard.publish_from_connection(
                    &req.channel,
                    Bytes::from(raw),
                    Some(Bytes::from(info)),
                    self.out.id,
                    id,
                );
                Ok(())
            }
            Request::Presence(req) | Request::PresenceStats(req) => {
                check_channel(&req.channel)?;
                // Presence is not built yet: disabled, which Centrifugo answers with 108.
                protocol::error_reply(self.reply(), id, code::NOT_AVAILABLE, false);
                Ok(())
            }
            Request::History(req) => {
                check_channel(&req.channel)?;
                let Some(options) = self.shard.config.channel_options(&req.channel) else {
                    protocol::error_reply(self.reply(), id, code::UNKNOWN_CHANNEL, false);
                    return Ok(());
                };
                if !options.history() {
                    protocol::error_reply(self.reply(), id, code::NOT_AVAILABLE, false);
                    return Ok(());
                }
                let allowed = options.allow_history_for_client
                    || (options.allow_history_for_subscriber
                        && self.shard.hub.borrow().is_member(&req.channel, self.out.id));
                if !allowed {
                    protocol::error_reply(self.reply(), id, code::PERMISSION_DENIED, false);
                    return Ok(());
                }
                // The owner answers straight to this connection; earlier replies go first.
                self.flush_replies();
                self.shard
                    .history_for_connection(&req.channel, &req, self.out.id, id);
                Ok(())
            }
            Request::Rpc => {
                protocol::error_reply(self.reply(), id, code::METHOD_NOT_FOUND, false);
                Ok(())
            }
            Request::Send => Err(Disconnect::NOT_AVAILABLE),
            Request::Refresh(req) => self.refresh(id, &req.token),
            Request::SubRefresh(req) => {
                check_channel(&req.channel)?;
                // No subscription tokens yet, so no subscription can need a refresh.
                protocol::error_reply(self.reply(), id, code::PERMISSION_DENIED, false);
                Ok(())
            }
            Request::Pong => {
                if self.out.pong_due.take().is_none() {
                    return Err(Disconnect::BAD_REQUEST);
                }
                Ok(())
            }
        }
    }

    fn connect(&mut self, id: u32, token: &str) -> Result<(), Disconnect> {
        let claims = if token.is_empty() {
            if !self.shard.config.allow_anonymous_connect_without_token {
                return Err(Disconnect::BAD_REQUEST);
            }
            None
        } else {
            match token::verify_connect(token, &self.shard.token_key) {
                Ok(claims) => Some(claims),
                Err(TokenError::Expired) => {
                    protocol::error_reply(self.reply(), id, code::TOKEN_EXPIRED, false);
                    self.state = State::Refused;
                    return Ok(());
                }
                Err(TokenError::Invalid) => return Err(Disconnect::INVALID_TOKEN),
            }
        };
        let (user, expires_at, info, channels) = match claims {
            Some(c) => (c.user, c.expires_at, c.info, c.channels),
            None => (String::new(), None, None, Vec::new()),
        };
        for channel in &channels {
            if channel.is_empty() || channel.len() > CHANNEL_MAX_LENGTH {
                protocol::error_reply(self.reply(), id, code::BAD_REQUEST, false);
                self.state = State::Refused;
                return Ok(());
            }
        }
        self.client = protocol::ClientId::random();
        self.user = user;
        self.conn_info = info;
        self.state = State::Connected;
        let ttl = self.set_expiry(expires_at);
        self.out.connected.set(true);
        self.shard.hub.borrow_mut().add_user(&self.user);
        let ping_seconds = self.shard.config.ping_interval_ms.div_ceil(1000) as u32;
        let result = protocol::ConnectResult {
            client: &self.client.to_string(),
            version: VERSION,
            ttl,
            subs: &channels,
            ping_seconds,
        };
        protocol::connect_reply(next_reply(&mut self.replies), id, &result);
        // Server-side subscriptions start after the reply is sent, like client ones; they
        // get no reply of their own (command 0).
        self.flush_replies();
        for channel in channels {
            if self.channels.len() < CHANNEL_LIMIT && !self.is_subscribed(&channel) {
                let options = self.shard.config.channel_options(&channel);
                let sub = PendingSubscription::plain(self.out.clone(), 0);
                if options.is_some() {
                    self.channels.push(channel.as_str().into());
                    self.shard.subscribe(&channel, sub, None);
                }
            }
        }
        Ok(())
    }

    /// Records the token expiry; returns the ttl in seconds to report, if the token expires.
    fn set_expiry(&mut self, expires_at: Option<u64>) -> Option<u32> {
        let at = expires_at?;
        let ttl = at.saturating_sub(token::unix_now());
        self.out
            .expires_at
            .set(Some(Millis::now().after(Duration::from_secs(ttl))));
        Some(ttl.min(u64::from(u32::MAX)) as u32)
    }

    fn refresh(&mut self, id: u32, token: &str) -> Result<(), Disconnect> {
        match token::verify_connect(token, &self.shard.token_key) {
            Ok(claims) if claims.user == self.user => {
                if claims.info.is_some() {
                    self.conn_info = claims.info;
                }
                let ttl = self.set_expiry(claims.expires_at);
                if ttl.is_none() {
                    self.out.expires_at.set(None);
                }
                protocol::refresh_reply(
                    next_reply(&mut self.replies),
                    id,
                    &self.client.to_string(),
                    VERSION,
                    ttl,
                );
                Ok(())
            }
            Ok(_) | Err(TokenError::Invalid) => Err(Disconnect::INVALID_TOKEN),
            Err(TokenError::Expired) => Err(Disconnect::EXPIRED),
        }
    }

    fn subscribe(&mut self, id: u32, req: &protocol::SubscribeRequest) -> Result<(), Disconnect> {
        let channel = req.channel.as_str();
        check_channel(channel)?;
        self.forget_refused(channel);
        if self.channels.len() >= CHANNEL_LIMIT {
            // Subscriptions the owner refused after the command was taken do not count.
            let hub = self.shard.hub.borrow();
            self.channels.retain(|c| hub.is_member(c, self.out.id));
        }
        let options = self.shard.config.channel_options(channel);
        let error = if channel.len() > CHANNEL_MAX_LENGTH || !channel.is_ascii() {
            Some(code::BAD_REQUEST)
        } else if options.is_none() {
            Some(code::UNKNOWN_CHANNEL)
        } else if channel.starts_with('$') || !options.is_some_and(|o| o.allow_subscribe_for_client)
        {
            // Private channels need a subscription token, which this server does not issue
            // yet; others need the client permission.
            Some(code::PERMISSION_DENIED)
        } else if self.is_subscribed(channel) {
            Some(code::ALREADY_SUBSCRIBED)
        } else if self.channels.len() >= CHANNEL_LIMIT {
            Some(code::LIMIT_EXCEEDED)
        } else {
            None
        };
        if let Some(error) = error {
            protocol::error_reply(self.reply(), id, error, false);
            return Ok(());
        }
        let options = options.expect("checked above");
        let history = options.history();
        let recoverable =
            history && (options.force_recovery || (req.recoverable && options.allow_recovery));
        let positioned =
            history && (options.force_positioning || (req.positioned && options.allow_positioning));
        let recover = (recoverable && req.recover).then(|| RecoverFrom {
            offset: req.offset,
            epoch: req.epoch.as_str().into(),
        });
        // The reply is queued by the hub when the subscriber joins, possibly right now:
        // replies of earlier commands go out first.
        self.flush_replies();
        self.channels.push(channel.into());
        let sub = PendingSubscription {
            conn: self.out.clone(),
            command: id,
            positioned,
            recoverable,
            recovering: recover.is_some(),
            reject_unrecovered: req.flag & protocol::FLAG_REJECT_UNRECOVERED != 0,
            ticket: 0,
        };
        self.shard.subscribe(channel, sub, recover);
        Ok(())
    }

    fn is_subscribed(&self, channel: &str) -> bool {
        self.channels.iter().any(|c| **c == *channel)
    }

    /// Drops `channel` from the list if the hub refused the subscription (an error or 112
    /// answered by the owner after the command was taken).
    fn forget_refused(&mut self, channel: &str) {
        if let Some(at) = self.channels.iter().position(|c| **c == *channel) {
            if !self.shard.hub.borrow().is_member(channel, self.out.id) {
                self.channels.swap_remove(at);
            }
        }
    }

    /// Leaves every channel and the user count; call once when the connection ends.
    pub fn close(&mut self) {
        for channel in std::mem::take(&mut self.channels) {
            self.shard.unsubscribe(&channel, self.out.id);
        }
        if self.state == State::Connected {
            self.shard.hub.borrow_mut().remove_user(&self.user);
        }
    }
}

/// The buffer positioned for one more reply line.
fn next_reply(replies: &mut Vec<u8>) -> &mut Vec<u8> {
    if !replies.is_empty() {
        replies.push(b'\n');
    }
    replies
}

/// An empty channel is a malformed command (close 3501), as in Centrifugo.
fn check_channel(channel: &str) -> Result<(), Disconnect> {
    if channel.is_empty() {
        Err(Disconnect::BAD_REQUEST)
    } else {
        Ok(())
    }
}
