//! `PubSub`: one shard's subscriber connection to one Redis. The shard says which pub/sub
//! channels it wants (`subscribe`, `unsubscribe`); the connection's task sends the changes
//! batched (many channels per SUBSCRIBE or UNSUBSCRIBE, at most `REDIS_SUBSCRIBE_BATCH`),
//! hands every message to the shard's handler in the order Redis sends them, and after a
//! reconnect subscribes everything wanted again (and tells the handler, which must treat
//! what it may have missed meanwhile as lost). `subscribe` resolves once Redis confirmed the
//! subscription: what is published after that reaches the handler, which is what reading a
//! stream's history after subscribing relies on.
//!
//! Owns the socket, the wanted channels and their confirmations. Imports `limits`.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::poll_fn;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncWrite};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;

use super::connection::{connect, encode_command, Link, RedisError, RedisSettings};
use super::tls::RedisStream;
use crate::limits::{
    REDIS_READ_BYTES, REDIS_RECONNECT_MAX_MS, REDIS_RECONNECT_MIN_MS, REDIS_SUBSCRIBE_BATCH,
};

/// What the connection hands its shard.
pub enum PubSubEvent<'a> {
    /// A message published to `channel`.
    Message { channel: &'a [u8], payload: Bytes },
    /// The connection was lost and is back (every wanted channel is being subscribed again,
    /// `subscribe` resolving once it is): messages published while it was away were missed.
    Resubscribed,
    /// Redis dropped a subscription still wanted (a cluster master that gave the channel's
    /// slot away): where the channel lives now is to be found out.
    Dropped,
}

/// Which pub/sub Redis runs for a channel: the classic kind on a standalone Redis, or Redis
/// 7's sharded kind in a cluster (a message stays on the master of its channel's slot; a
/// command names channels of one slot only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PubSubMode {
    #[default]
    Classic,
    Sharded,
}

impl PubSubMode {
    /// The publishing command, as scripts call it.
    pub fn publish(self) -> &'static str {
        match self {
            PubSubMode::Classic => "publish",
            PubSubMode::Sharded => "spublish",
        }
    }

    fn subscribe(self) -> &'static [u8] {
        match self {
            PubSubMode::Classic => b"SUBSCRIBE",
            PubSubMode::Sharded => b"SSUBSCRIBE",
        }
    }

    fn unsubscribe(self) -> &'static [u8] {
        match self {
            PubSubMode::Classic => b"UNSUBSCRIBE",
            PubSubMode::Sharded => b"SUNSUBSCRIBE",
        }
    }

    /// Channels one command may name: a sharded one names a single slot, so one channel.
    fn batch(self) -> usize {
        match self {
            PubSubMode::Classic => REDIS_SUBSCRIBE_BATCH,
            PubSubMode::Sharded => 1,
        }
    }

    /// The kinds of a pushed message, of a subscription's confirmation, and of an
    /// unsubscription's.
    fn pushes(self) -> (&'static [u8], &'static [u8], &'static [u8]) {
        match self {
            PubSubMode::Classic => (b"message", b"subscribe", b"unsubscribe"),
            PubSubMode::Sharded => (b"smessage", b"ssubscribe", b"sunsubscribe"),
        }
    }
}

/// The shard's handler of pub/sub events.
pub type Handler = Box<dyn FnMut(PubSubEvent<'_>)>;

#[derive(Default)]
struct Shared {
    /// Wanted channels, each with the callers waiting for its confirmation.
    wanted: HashMap<Bytes, Vec<Waker>>,
    /// SUBSCRIBE commands queued or sent per channel whose confirmation has not come: a
    /// channel is confirmed once none is left, so an earlier generation's confirmation (a
    /// subscribe, unsubscribe and subscribe again in flight) does not count for a later one.
    outstanding: HashMap<Bytes, u32>,
    /// Changes not yet sent, in order.
    to_subscribe: Vec<Bytes>,
    to_unsubscribe: Vec<Bytes>,
    /// Changes sent and not yet answered, one per channel, in the order sent: Redis answers
    /// them in that order, so an error answer names its channel.
    sent: VecDeque<(Change, Bytes)>,
    /// Wanted channels Redis refused (MOVED: another master serves their slot now); they
    /// stay wanted, for the caller to move, and their waiters are told.
    refused: HashSet<Bytes>,
    task: Option<Waker>,
    mode: PubSubMode,
}

/// A change of subscription sent to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Subscribe,
    Unsubscribe,
}

impl Shared {
    /// An answer of `change` for `channel` came: if it answers the oldest change sent, that
    /// one is done (true); otherwise Redis said it unasked.
    fn answered(&mut self, change: Change, channel: &[u8]) -> bool {
        let answers = self
            .sent
            .front()
            .is_some_and(|(c, name)| *c == change && name[..] == *channel);
        if answers {
            self.sent.pop_front();
        }
        answers
    }
}

impl Drop for Shared {
    /// The last clone is gone: the connection's task learns it now (not at its next socket
    /// event, which an idle connection may never have) and ends.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.wake();
        }
    }
}

/// A subscriber connection; cheap to clone (the same connection).
#[derive(Clone)]
pub struct PubSub {
    shared: Rc<RefCell<Shared>>,
    link: Rc<Cell<Link>>,
}

impl PubSub {
    /// Starts the connection's task on the current glommio executor; it runs until every
    /// clone is dropped.
    pub fn start(settings: RedisSettings, mode: PubSubMode, handler: Handler) -> PubSub {
        let pubsub = PubSub {
            shared: Rc::new(RefCell::new({
                let mut shared = Shared::default();
                shared.mode = mode;
                shared
            })),
            link: Rc::new(Cell::new(Link::Down)),
        };
        let weak = Rc::downgrade(&pubsub.shared);
        let link = pubsub.link.clone();
        glommio::spawn_local(run(weak, link, settings, handler)).detach();
        pubsub
    }

    pub fn link(&self) -> Link {
        self.link.get()
    }

    /// Wants `channel` (sent with the connection's next write, or once it is up); returns
    /// its name as kept.
    pub fn want(&self, channel: &[u8]) -> Bytes {
        let key = Bytes::copy_from_slice(channel);
        let mut shared = self.shared.borrow_mut();
        if !shared.wanted.contains_key(&key) {
            shared.wanted.insert(key.clone(), Vec::new());
            *shared.outstanding.entry(key.clone()).or_default() += 1;
            shared.to_subscribe.push(key.clone());
            if let Some(task) = shared.task.take() {
                task.wake();
            }
        }
        key
    }

    /// Wants `channel`; resolves once Redis confirmed it (at once if it had), or fails with
    /// `Unavailable` while the connection is down (it is subscribed once it is back), or
    /// with a reply error if Redis refused it here (another master serves its slot).
    pub async fn subscribe(&self, channel: &[u8]) -> Result<(), RedisError> {
        let key = self.want(channel);
        // Bounded by the confirmation, a refusal, or the connection going down.
        poll_fn(|cx| {
            if self.link.get() == Link::Down {
                return Poll::Ready(Err(RedisError::Unavailable));
            }
            let mut shared = self.shared.borrow_mut();
            if shared.refused.contains(&key) {
                return Poll::Ready(Err(RedisError::Reply(
                    "refused here: another master serves its slot".into(),
                )));
            }
            let confirmed = !shared.outstanding.contains_key(&key);
            match shared.wanted.get_mut(&key) {
                None => Poll::Ready(Err(RedisError::Broken("unsubscribed meanwhile".into()))),
                Some(_) if confirmed => Poll::Ready(Ok(())),
                Some(waiters) => {
                    waiters.push(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// No longer wants `channel`.
    pub fn unsubscribe(&self, channel: &[u8]) {
        let mut shared = self.shared.borrow_mut();
        shared.refused.remove(channel);
        if let Some(waiters) = shared.wanted.remove(channel) {
            for waker in waiters {
                waker.wake();
            }
            shared.to_unsubscribe.push(Bytes::copy_from_slice(channel));
            if let Some(task) = shared.task.take() {
                task.wake();
            }
        }
    }

    /// Channels wanted now.
    pub fn wanted(&self) -> usize {
        self.shared.borrow().wanted.len()
    }

    /// The channels wanted now, by name.
    pub fn wanted_channels(&self) -> Vec<Bytes> {
        self.shared.borrow().wanted.keys().cloned().collect()
    }
}

/// Connects, subscribes everything wanted, serves; again after a failure with a growing
/// backoff; until the last clone is dropped.
async fn run(
    shared: Weak<RefCell<Shared>>,
    link: Rc<Cell<Link>>,
    settings: RedisSettings,
    mut handler: Handler,
) {
    let mut backoff = REDIS_RECONNECT_MIN_MS;
    let mut connected_before = false;
    // Bounded by the connection's life.
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        drop(strong);
        if let Ok(stream) = connect(&settings).await {
            backoff = REDIS_RECONNECT_MIN_MS;
            let mut had_wanted = false;
            if let Some(strong) = shared.upgrade() {
                // Everything wanted is subscribed (again) on the new connection.
                let mut s = strong.borrow_mut();
                let all: Vec<Bytes> = s.wanted.keys().cloned().collect();
                had_wanted = !all.is_empty();
                s.outstanding = all.iter().map(|c| (c.clone(), 1)).collect();
                s.to_subscribe = all;
                s.to_unsubscribe.clear();
                s.sent.clear();
                s.refused.clear();
            }
            link.set(Link::Up);
            // Channels wanted before this connection (a reconnect, or channels moved here
            // from another master before it first came up) may have missed publications.
            if connected_before || had_wanted {
                handler(PubSubEvent::Resubscribed);
            }
            connected_before = true;
            serve(&shared, stream, &mut handler).await;
            link.set(Link::Down);
            if let Some(strong) = shared.upgrade() {
                // Waiters learn the connection went down.
                for waiters in strong.borrow_mut().wanted.values_mut() {
                    for waker in waiters.drain(..) {
                        waker.wake();
                    }
                }
            }
        }
        glommio::timer::sleep(Duration::from_millis(backoff)).await;
        backoff = (backoff * 2).min(REDIS_RECONNECT_MAX_MS);
    }
}

/// Encodes the queued changes, at most the mode's batch of channels a command. A channel
/// wanted again before its unsubscribe went out is not unsubscribed; one let go before its
/// subscribe went out is not subscribed (its confirmation no longer awaited).
fn encode_changes(shared: &mut Shared, out: &mut BytesMut) -> Result<(), String> {
    let mode = shared.mode;
    let mut unsubscribe = std::mem::take(&mut shared.to_unsubscribe);
    unsubscribe.retain(|c| !shared.wanted.contains_key(c));
    let mut subscribe = std::mem::take(&mut shared.to_subscribe);
    subscribe.retain(|c| {
        let wanted = shared.wanted.contains_key(c);
        if !wanted {
            settle(&mut shared.outstanding, c);
        }
        wanted
    });
    for (change, list) in [
        (Change::Unsubscribe, unsubscribe),
        (Change::Subscribe, subscribe),
    ] {
        let command = match change {
            Change::Subscribe => mode.subscribe(),
            Change::Unsubscribe => mode.unsubscribe(),
        };
        for batch in list.chunks(mode.batch()) {
            let mut args: Vec<&[u8]> = vec![command];
            args.extend(batch.iter().map(|c| &c[..]));
            encode_command(out, &args)?;
            shared
                .sent
                .extend(batch.iter().map(|c| (change, c.clone())));
        }
    }
    Ok(())
}

/// One subscribe of `channel` answered (or never sent); true once none is left.
fn settle(outstanding: &mut HashMap<Bytes, u32>, channel: &[u8]) -> bool {
    let Some(n) = outstanding.get_mut(channel) else {
        return false;
    };
    *n -= 1;
    if *n == 0 {
        outstanding.remove(channel);
        return true;
    }
    false
}

/// Serves one connection until it breaks.
async fn serve(shared: &Weak<RefCell<Shared>>, mut stream: RedisStream, handler: &mut Handler) {
    let mut out = BytesMut::new();
    let mut input = BytesMut::new();
    let mut chunk = vec![0u8; REDIS_READ_BYTES];
    poll_fn(|cx| {
        let Some(strong) = shared.upgrade() else {
            return Poll::Ready(());
        };
        if encode_changes(&mut strong.borrow_mut(), &mut out).is_err() {
            return Poll::Ready(());
        }
        // Bounded: each pass writes some bytes or stops.
        while !out.is_empty() {
            match Pin::new(&mut stream).poll_write(cx, &out) {
                Poll::Ready(Ok(n)) if n > 0 => out.advance(n),
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        // Bounded: each pass reads some bytes or stops.
        loop {
            match Pin::new(&mut stream).poll_read(cx, &mut chunk) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    input.extend_from_slice(&chunk[..n]);
                    // Bounded by the input: each frame decoded shortens it.
                    loop {
                        match decode_bytes_mut(&mut input) {
                            Ok(Some((frame, _, _))) => {
                                if let Err(why) = on_frame(&strong, frame, handler) {
                                    // A refused subscribe would leave its waiters waiting:
                                    // the connection starts again (with backoff) instead.
                                    eprintln!("ringcast: redis pub/sub: {why}; reconnecting");
                                    return Poll::Ready(());
                                }
                            }
                            Ok(None) => break,
                            Err(_) => return Poll::Ready(()),
                        }
                    }
                }
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        strong.borrow_mut().task = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}

/// One pushed frame: a message for the handler, or a confirmation; an error answer (a
/// subscribe refused: MOVED after a failover, a Redis without sharded pub/sub) is returned.
fn on_frame(
    shared: &Rc<RefCell<Shared>>,
    frame: BytesFrame,
    handler: &mut Handler,
) -> Result<(), String> {
    let parts = match frame {
        BytesFrame::Array(parts) => parts,
        BytesFrame::Error(e) => return on_refusal(shared, &e, handler),
        _ => return Ok(()),
    };
    let (message, confirmation, unsubscribed) = shared.borrow().mode.pushes();
    match parts.as_slice() {
        [BytesFrame::BulkString(kind), BytesFrame::BulkString(channel), BytesFrame::BulkString(payload)]
            if &kind[..] == message =>
        {
            handler(PubSubEvent::Message {
                channel,
                payload: payload.clone(),
            });
        }
        [BytesFrame::BulkString(kind), BytesFrame::BulkString(channel), _]
            if &kind[..] == unsubscribed =>
        {
            // The answer to an unsubscribe sent, or Redis dropping a channel by itself (a
            // sharded channel whose slot moved away): then, if still wanted, it is asked for
            // again here (refused if it moved) and the caller told.
            let dropped = {
                let mut shared = shared.borrow_mut();
                let answered = shared.answered(Change::Unsubscribe, channel);
                let dropped = !answered && shared.wanted.contains_key(&channel[..]);
                if dropped {
                    *shared.outstanding.entry(channel.clone()).or_default() += 1;
                    shared.to_subscribe.push(channel.clone());
                    if let Some(task) = shared.task.take() {
                        task.wake();
                    }
                }
                dropped
            };
            if dropped {
                handler(PubSubEvent::Dropped);
            }
        }
        [BytesFrame::BulkString(kind), BytesFrame::BulkString(channel), _]
            if &kind[..] == confirmation =>
        {
            let mut shared = shared.borrow_mut();
            shared.answered(Change::Subscribe, channel);
            if settle(&mut shared.outstanding, channel) {
                if let Some(waiters) = shared.wanted.get_mut(&channel[..]) {
                    for waker in waiters.drain(..) {
                        waker.wake();
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// An error answer: to the oldest change sent. A refused unsubscribe changes nothing (the
/// channel is not subscribed here); a refused subscribe leaves the channel wanted but
/// refused (its waiters are told) and the caller is told to find where it lives now. An
/// error answering nothing sent breaks the connection.
fn on_refusal(
    shared: &Rc<RefCell<Shared>>,
    error: &str,
    handler: &mut Handler,
) -> Result<(), String> {
    let refused = {
        let mut shared = shared.borrow_mut();
        match shared.sent.pop_front() {
            None => return Err(error.to_owned()),
            Some((Change::Unsubscribe, _)) => return Ok(()),
            Some((Change::Subscribe, channel)) => {
                settle(&mut shared.outstanding, &channel);
                if let Some(waiters) = shared.wanted.get_mut(&channel) {
                    for waker in waiters.drain(..) {
                        waker.wake();
                    }
                    shared.refused.insert(channel);
                    true
                } else {
                    false
                }
            }
        }
    };
    if refused {
        handler(PubSubEvent::Dropped);
    }
    Ok(())
}
