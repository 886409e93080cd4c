//! `Session`: the Centrifugo protocol state of one connection: connect and auth, the set of
//! subscriptions, and the answer to every command (`commands`, one function per command;
//! `permissions`, the one place deciding access). It turns commands into replies (queued on
//! the connection's `Outbound`, which frames them) and into shard calls (subscribe, publish,
//! history), and ends with a `Disconnect` when the protocol says so.
//!
//! Owns only its own state; reaches the rest of the shard through `Context`. Imports
//! `shard`, `fanout::{Outbound, PendingSubscription, ...}`, `auth`, `protocol`, `config`,
//! `router::msg` (the queries it hands the shard), `clock`, `limits`. Commands are parsed and
//! replies encoded in JSON, the one codec the session speaks so far.

mod commands;
mod directives;
pub mod permissions;

use std::cell::{RefCell, RefMut};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use glommio::TaskQueueHandle;
use smallvec::SmallVec;

use crate::auth::Verifier;
use crate::fanout::Outbound;
use crate::limits::REPLY_BUFFER_KEPT_BYTES_MAX;
use crate::metrics::latency::Timed;
use crate::protocol::json::decode::{self, ParseError};
use crate::protocol::json::encode;
use crate::protocol::{ClientId, Command, Disconnect, Request};
use crate::protocol::{ErrorCode, Refusal};
use crate::router::msg::PresenceKind;
use crate::shard::Shard;

/// What a session needs from its shard: the shard, the token keys and the access rules,
/// built once per shard.
pub struct Context {
    pub shard: Rc<Shard>,
    pub tokens: Verifier,
    pub access: permissions::Access,
    pub queues: TaskQueues,
    /// The replies of the message a session is handling, newline-joined into one frame when
    /// flushed. One buffer for the shard's sessions: a message is handled without a pause,
    /// so the buffer is empty between messages (an idle session keeps none).
    replies: RefCell<Vec<u8>>,
}

impl Context {
    /// The context of `shard`; a token key or channel pattern the configuration holds
    /// that cannot be used is an error naming its key.
    pub fn new(shard: Rc<Shard>, queues: TaskQueues) -> Result<Self, String> {
        let tokens = Verifier::new(&shard.config)?;
        let access = permissions::Access::new(&shard.config)?;
        Ok(Context {
            shard,
            tokens,
            access,
            queues,
            replies: RefCell::new(Vec::new()),
        })
    }
}

/// The shard's task queues. glommio runs a queue's tasks until it is empty or preempted, so
/// with one queue a request and its answer waited behind every connection woken by a
/// fan-out; in a queue of their own, whose latency matters (`INTAKE_LATENCY_MS`), they wait
/// at most that long.
#[derive(Debug, Clone, Copy)]
pub struct TaskQueues {
    /// Accepts, the HTTP phase of every connection (API requests and their answers) and the
    /// ring loop.
    pub intake: TaskQueueHandle,
    /// Upgraded (WebSocket) connections, which write the deliveries.
    pub connections: TaskQueueHandle,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Waiting for the connect command.
    New,
    /// Connected: every command but connect is served.
    Connected,
    /// The connect failed with an error reply: ignore everything until the client leaves.
    Refused,
}

pub struct Session {
    ctx: Rc<Context>,
    out: Rc<Outbound>,
    state: State,
    client: ClientId,
    /// Shared with the shard's registry of users.
    user: Arc<str>,
    conn_info: Option<Box<str>>,
    /// Subscribed channels (at most `client.channel_limit`; one inline, the commonest case;
    /// small to scan).
    channels: SmallVec<[Subscribed; 1]>,
}

/// One subscription of the session.
#[derive(Debug)]
struct Subscribed {
    channel: Box<str>,
    /// What its token or connection token granted beyond the channel, if anything (boxed:
    /// most subscriptions have none, and an idle connection pays for every byte here).
    grant: Option<Box<Granted>>,
}

/// What a token granted a subscription.
#[derive(Debug, Default)]
struct Granted {
    /// Unix seconds at which the subscription expires unless refreshed (`sub_refresh`).
    expires_at: Option<u64>,
    /// Channel info for the ClientInfo of this connection's publications in the channel.
    info: Option<Box<str>>,
    /// Whether the subscription has a presence entry, when a token's overrides decided it
    /// (`None`: as its namespace says).
    presence: Option<bool>,
}

impl Session {
    pub fn new(ctx: Rc<Context>, out: Rc<Outbound>) -> Self {
        Session {
            ctx,
            out,
            state: State::New,
            client: ClientId::NONE,
            user: Arc::from(""),
            conn_info: None,
            channels: SmallVec::new(),
        }
    }

    /// The connection's output queue.
    pub fn out(&self) -> &Rc<Outbound> {
        &self.out
    }

    fn shard(&self) -> &Shard {
        &self.ctx.shard
    }

    /// Handles one message: newline-separated commands, processed in order. Replies go out
    /// as one frame (flushed earlier only before a command whose reply someone else queues,
    /// so replies keep the commands' order).
    pub fn handle_message(&mut self, message: &[u8]) -> Result<(), Disconnect> {
        self.shard().count_message_in();
        debug_assert!(
            self.ctx.replies.borrow().is_empty(),
            "flushed after every message"
        );
        let result = message
            .split(|&b| b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .try_for_each(|line| self.handle_line(line));
        self.flush_replies();
        result
    }

    fn flush_replies(&mut self) {
        let mut replies = self.ctx.replies.borrow_mut();
        if !replies.is_empty() {
            self.out.push_message(&replies);
            replies.clear();
            if replies.capacity() > REPLY_BUFFER_KEPT_BYTES_MAX {
                // A rare large reply does not pin its buffer.
                *replies = Vec::new();
            }
        }
    }

    /// The buffer positioned for one more reply line.
    fn reply(&self) -> RefMut<'_, Vec<u8>> {
        let mut replies = self.ctx.replies.borrow_mut();
        if !replies.is_empty() {
            replies.push(b'\n');
        }
        replies
    }

    fn handle_line(&mut self, line: &[u8]) -> Result<(), Disconnect> {
        if self.state == State::Refused {
            return Ok(());
        }
        let command = match decode::parse_command(line) {
            Ok(command) => command,
            Err(ParseError::Json | ParseError::UnknownMethod) => {
                return Err(Disconnect::BadRequest)
            }
        };
        let Command { id, request } = command;
        if id == 0 && !matches!(request, Request::Pong | Request::Send) {
            return Err(Disconnect::BadRequest);
        }
        // Timed on this shard: what the channel's owner does elsewhere is not included.
        let timed = (!matches!(request, Request::Pong)).then(|| (request.method(), Instant::now()));
        let result = match (&self.state, request) {
            (State::New, Request::Connect(connect)) => {
                self.connect(id, &connect.token, &connect.subs)
            }
            (State::New, _) | (State::Connected, Request::Connect(_)) => {
                Err(Disconnect::BadRequest)
            }
            (State::Connected, request) => self.dispatch(id, request),
            (State::Refused, _) => Ok(()),
        };
        if let Some((method, started)) = timed {
            self.shard()
                .record_latency(Timed::ClientCommand, method, started.elapsed());
        }
        result
    }

    /// One command of a connected client.
    fn dispatch(&mut self, id: u32, request: Request<'_>) -> Result<(), Disconnect> {
        if !matches!(request, Request::Pong) && !self.shard().take_command(self.out.id) {
            self.shard().count_refusal(Refusal::CommandRate);
            encode::error_reply(&mut self.reply(), id, ErrorCode::TooManyRequests);
            return Ok(());
        }
        match request {
            Request::Connect(_) => Err(Disconnect::BadRequest),
            Request::Subscribe(req) => self.subscribe(id, &req),
            Request::Unsubscribe(req) => self.unsubscribe(id, &req.channel),
            Request::Publish(req) => self.publish(id, &req),
            Request::Presence(req) => self.presence(id, &req.channel, PresenceKind::List),
            Request::PresenceStats(req) => self.presence(id, &req.channel, PresenceKind::Stats),
            Request::History(req) => self.history(id, req),
            Request::Rpc => self.rpc(id),
            Request::Send => Err(Disconnect::NotAvailable),
            Request::Refresh(req) => self.refresh(id, &req.token),
            Request::SubRefresh(req) => self.sub_refresh(id, &req),
            Request::Pong => self.pong(),
        }
    }

    fn is_subscribed(&self, channel: &str) -> bool {
        self.subscription(channel).is_some()
    }

    fn subscription(&self, channel: &str) -> Option<&Subscribed> {
        self.channels.iter().find(|s| *s.channel == *channel)
    }

    /// The client, when subscription `sub` has a presence entry (its options have presence
    /// or join/leave on, with a token's overrides): what `Shard::unsubscribe` needs to take
    /// the entry out of the owner's presence.
    fn presence_of(&self, sub: &Subscribed) -> Option<ClientId> {
        let tracked = match sub.grant.as_ref().and_then(|g| g.presence) {
            Some(tracked) => tracked,
            None => self
                .shard()
                .config
                .channel_options(&sub.channel)
                .is_some_and(|o| o.presence || o.join_leave),
        };
        tracked.then_some(self.client)
    }

    /// Ends subscription `sub` on the shard.
    fn leave(&self, sub: &Subscribed) {
        let presence = self.presence_of(sub);
        self.shard()
            .unsubscribe(&sub.channel, self.out.id, presence);
    }

    /// Leaves every channel and the user count; call once when the connection ends.
    pub fn close(&mut self) {
        for sub in std::mem::take(&mut self.channels) {
            self.leave(&sub);
        }
        if self.state == State::Connected {
            self.shard()
                .remove_user(&self.user, self.out.id, self.client);
        }
    }
}

/// An empty channel is a malformed command (close 3501), as in Centrifugo.
fn check_channel(channel: &str) -> Result<(), Disconnect> {
    if channel.is_empty() {
        Err(Disconnect::BadRequest)
    } else {
        Ok(())
    }
}
