//! `Shard`: everything one core owns (DESIGN invariant 1) and the loops that drive it. The
//! ring loop takes messages from the other shards and applies them (owner work, deliveries,
//! answers); the ticker runs pings, pong and expiry checks for every connection of the shard.
//! Sessions and the HTTP API call `publish`, `subscribe`, `unsubscribe` and `collect_stats`;
//! those route to the channel's owner, locally by a call or remotely over the ring.
//!
//! Shared within the shard through `Rc<Shard>`; every `RefCell` borrow ends before an await.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hub::Millis;

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalSender};
use jsonwebtoken::DecodingKey;

use crate::config::Config;
use crate::hub::Hub;
use crate::owner::{ChannelOwner, Outcome};
use crate::protocol::Disconnect;
use crate::router::{
    owner_of, Outbox, PublishJob, Published, ReplyTo, ShardMsg, ShardStats, BACKLOG_HIGH,
};
use crate::ws;

/// How long an API call waits for other shards' answers before failing with an internal error.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Grace after a token's expiry before the connection is closed (Centrifugo's
/// `client.expired_close_delay`).
const EXPIRED_CLOSE_DELAY: Duration = Duration::from_secs(25);

/// A client that has not sent connect by then is closed as stale (3502).
const STALE_CLOSE_DELAY: Duration = Duration::from_secs(10);

/// Answers another shard will send to a waiting task of this shard.
enum Answer {
    Published(Vec<Published>),
    Stats(usize, ShardStats),
}

pub struct Shard {
    pub id: usize,
    pub count: usize,
    pub config: Config,
    pub token_key: DecodingKey,
    pub hub: RefCell<Hub>,
    owner: RefCell<ChannelOwner>,
    outbox: RefCell<Outbox>,
    /// Tasks waiting for answers from other shards, by request id.
    waiting: RefCell<HashMap<u64, LocalSender<Answer>>>,
    next_request: Cell<u64>,
    next_connection: Cell<u64>,
    pub started: Instant,
    messages_in: Cell<u64>,
    publications: Cell<u64>,
    /// The one read buffer of the shard: connections borrow it only inside a poll, so an
    /// idle connection holds no buffer (DESIGN invariant 6).
    pub read_buffer: RefCell<Box<[u8]>>,
}

impl Shard {
    pub fn new(id: usize, count: usize, config: Config, outbox: Outbox) -> Self {
        let token_key = DecodingKey::from_secret(config.token_hmac_secret_key.as_bytes());
        Shard {
            id,
            count,
            token_key,
            hub: RefCell::new(Hub::default()),
            owner: RefCell::new(ChannelOwner::new(id, count)),
            outbox: RefCell::new(outbox),
            waiting: RefCell::new(HashMap::new()),
            next_request: Cell::new(0),
            next_connection: Cell::new(0),
            started: Instant::now(),
            messages_in: Cell::new(0),
            publications: Cell::new(0),
            read_buffer: RefCell::new(vec![0; 64 << 10].into_boxed_slice()),
            config,
        }
    }

    pub fn next_connection_id(&self) -> u64 {
        let id = self.next_connection.get();
        self.next_connection.set(id + 1);
        id
    }

    pub fn count_message_in(&self) {
        self.messages_in.set(self.messages_in.get() + 1);
    }

    fn send(&self, to: usize, msg: ShardMsg) {
        debug_assert_ne!(to, self.id);
        self.outbox.borrow_mut().send(to, msg);
    }

    /// Waits while the backlog to `to` is long: sources of new traffic call this so a slow
    /// shard slows its publishers down instead of growing a queue without bound.
    pub async fn wait_for_room(&self, to: usize) {
        // Bounded by the peer draining its ring; the peer never waits on us to do so.
        while to != self.id && self.outbox.borrow().backlog_len(to) > BACKLOG_HIGH {
            glommio::timer::sleep(Duration::from_micros(100)).await;
        }
    }

    /// Waits while the backlog to any shard is long (before a connection takes more
    /// commands).
    pub async fn wait_for_room_all(&self) {
        while self.outbox.borrow().longest_backlog() > BACKLOG_HIGH {
            glommio::timer::sleep(Duration::from_micros(100)).await;
        }
    }

    /// Adds a local subscriber and tells the owner if this shard just became interested.
    pub fn subscribe(&self, channel: &str, conn: &Rc<crate::hub::Outbound>) {
        let (name, first) = self.hub.borrow_mut().subscribe(channel, conn);
        if first {
            let owner = owner_of(channel, self.count);
            if owner == self.id {
                self.owner.borrow_mut().add_shard(channel, self.id);
            } else {
                self.send(
                    owner,
                    ShardMsg::Subscribe {
                        channel: name,
                        from: self.id,
                    },
                );
            }
        }
    }

    pub fn unsubscribe(&self, channel: &str, conn_id: u64) {
        let last = self.hub.borrow_mut().unsubscribe(channel, conn_id);
        if last {
            let owner = owner_of(channel, self.count);
            if owner == self.id {
                self.owner.borrow_mut().remove_shard(channel, self.id);
            } else {
                self.send(
                    owner,
                    ShardMsg::Unsubscribe {
                        channel: channel.into(),
                        from: self.id,
                    },
                );
            }
        }
    }

    /// Publishes without waiting for the owner's answer (client publishes: order per
    /// connection holds because the ring to the owner is FIFO).
    pub fn publish_detached(&self, channel: &str, data: Bytes, info: Option<Bytes>) {
        let owner = owner_of(channel, self.count);
        let job = PublishJob {
            channels: vec![(0, channel.into())],
            data,
            info,
            tags: None,
            reply: None,
        };
        if owner == self.id {
            self.run_publish(job);
        } else {
            self.send(owner, ShardMsg::Publish(Box::new(job)));
        }
    }

    /// Publishes one payload to `channels` (each with its index in the caller's request) and
    /// waits for every owner's answer: one ring message per owner shard, not per channel.
    /// Returns the answers in no particular order, or `None` if an owner did not answer in
    /// time.
    pub async fn publish(
        &self,
        channels: Vec<(u32, Arc<str>)>,
        data: Bytes,
        tags: Option<Bytes>,
    ) -> Option<Vec<Published>> {
        let mut by_owner: Vec<Vec<(u32, Arc<str>)>> = vec![Vec::new(); self.count];
        for (index, channel) in channels {
            by_owner[owner_of(&channel, self.count)].push((index, channel));
        }
        let remote = by_owner
            .iter()
            .enumerate()
            .filter(|(s, c)| *s != self.id && !c.is_empty())
            .count();
        let (request, receiver) = self.expect_answers(remote);
        let mut results = Vec::new();
        for (owner, channels) in by_owner.into_iter().enumerate() {
            if channels.is_empty() {
                continue;
            }
            self.wait_for_room(owner).await;
            let job = PublishJob {
                channels,
                data: data.clone(),
                info: None,
                tags: tags.clone(),
                reply: Some(ReplyTo {
                    shard: self.id,
                    request,
                }),
            };
            if owner == self.id {
                results.extend(self.run_publish(job));
            } else {
                self.send(owner, ShardMsg::Publish(Box::new(job)));
            }
        }
        for _ in 0..remote {
            match self.answer(request, &receiver).await? {
                Answer::Published(more) => results.extend(more),
                Answer::Stats(..) => unreachable!("publish request answered with stats"),
            }
        }
        self.waiting.borrow_mut().remove(&request);
        Some(results)
    }

    /// This shard's counters.
    pub fn local_stats(&self) -> ShardStats {
        let hub = self.hub.borrow();
        ShardStats {
            connections: hub.connection_count() as u64,
            users: hub.user_count() as u64,
            subscriptions: hub.subscription_count() as u64,
            channels: self.owner.borrow().active_channels() as u64,
            messages_in: self.messages_in.get(),
            messages_out: hub.deliveries(),
            publications: self.publications.get(),
            slow_disconnects: hub.slow_disconnects(),
        }
    }

    /// Every shard's counters, indexed by shard, or `None` if a shard did not answer in time.
    pub async fn collect_stats(&self) -> Option<Vec<ShardStats>> {
        let (request, receiver) = self.expect_answers(self.count - 1);
        for to in (0..self.count).filter(|&s| s != self.id) {
            self.send(
                to,
                ShardMsg::StatsRequest {
                    request,
                    from: self.id,
                },
            );
        }
        let mut all = vec![ShardStats::default(); self.count];
        all[self.id] = self.local_stats();
        for _ in 1..self.count {
            match self.answer(request, &receiver).await? {
                Answer::Stats(shard, stats) => all[shard] = stats,
                Answer::Published(_) => unreachable!("stats request answered with publish"),
            }
        }
        self.waiting.borrow_mut().remove(&request);
        Some(all)
    }

    fn expect_answers(&self, count: usize) -> (u64, local_channel::LocalReceiver<Answer>) {
        let request = self.next_request.get();
        self.next_request.set(request + 1);
        let (sender, receiver) = local_channel::new_bounded(count.max(1));
        if count > 0 {
            self.waiting.borrow_mut().insert(request, sender);
        }
        (request, receiver)
    }

    async fn answer(
        &self,
        request: u64,
        receiver: &local_channel::LocalReceiver<Answer>,
    ) -> Option<Answer> {
        let answer = glommio::timer::timeout(ANSWER_TIMEOUT, async { Ok(receiver.recv().await) })
            .await
            .ok()
            .flatten();
        if answer.is_none() {
            self.waiting.borrow_mut().remove(&request);
        }
        answer
    }

    fn deliver_answer(&self, request: u64, answer: Answer) {
        // A missing entry means the waiter gave up (timeout); dropping the answer is right.
        if let Some(sender) = self.waiting.borrow().get(&request) {
            let _ = sender.try_send(answer);
        }
    }

    /// Owner work for a publish job: offsets, one encoded frame per channel, fan-out to the
    /// interested shards. Returns the per-channel answers.
    fn run_publish(&self, job: PublishJob) -> Vec<Published> {
        let outcomes: Vec<Outcome> = {
            let mut owner = self.owner.borrow_mut();
            job.channels
                .iter()
                .map(|(_, channel)| {
                    owner.publish(channel, &job.data, job.info.as_deref(), job.tags.as_deref())
                })
                .collect()
        };
        self.publications
            .set(self.publications.get() + outcomes.len() as u64);
        let mut answers = Vec::with_capacity(outcomes.len());
        for ((index, _), outcome) in job.channels.iter().zip(outcomes) {
            for shard in outcome.shards.iter() {
                if shard == self.id {
                    self.hub
                        .borrow_mut()
                        .deliver(&outcome.channel, &outcome.frame);
                } else {
                    self.send(
                        shard,
                        ShardMsg::Deliver {
                            channel: outcome.channel.clone(),
                            frame: outcome.frame.clone(),
                        },
                    );
                }
            }
            answers.push(Published {
                index: *index,
                offset: outcome.offset,
                epoch: outcome.epoch,
            });
        }
        if let Some(reply) = job.reply {
            if reply.shard != self.id {
                self.send(
                    reply.shard,
                    ShardMsg::Published {
                        request: reply.request,
                        results: std::mem::take(&mut answers),
                    },
                );
            }
        }
        answers
    }

    /// Applies one message from another shard.
    fn handle(&self, msg: ShardMsg) {
        match msg {
            ShardMsg::Subscribe { channel, from } => {
                self.owner.borrow_mut().add_shard(&channel, from)
            }
            ShardMsg::Unsubscribe { channel, from } => {
                self.owner.borrow_mut().remove_shard(&channel, from)
            }
            ShardMsg::Publish(job) => {
                self.run_publish(*job);
            }
            ShardMsg::Deliver { channel, frame } => {
                self.hub.borrow_mut().deliver_remote(&channel, &frame);
            }
            ShardMsg::Published { request, results } => {
                self.deliver_answer(request, Answer::Published(results))
            }
            ShardMsg::StatsRequest { request, from } => {
                let stats = self.local_stats();
                let shard = self.id;
                self.send(
                    from,
                    ShardMsg::Stats {
                        request,
                        shard,
                        stats,
                    },
                );
            }
            ShardMsg::Stats {
                request,
                shard,
                stats,
            } => self.deliver_answer(request, Answer::Stats(shard, stats)),
        }
    }

    /// The ring loop: applies incoming messages, flushes the outbox backlog, parks on the
    /// doorbell when there is nothing to do. Runs for the life of the shard.
    pub async fn run_ring_loop(self: Rc<Self>) -> std::io::Result<()> {
        let waiter = self.outbox.borrow_mut().links().glommio_waiter()?;
        let mut inbox = Vec::with_capacity(256);
        loop {
            let flushed = self.outbox.borrow_mut().flush();
            inbox.clear();
            let received = self.outbox.borrow_mut().links().recv_into(&mut inbox, 64);
            for msg in inbox.drain(..) {
                self.handle(msg);
            }
            if received > 0 {
                glommio::yield_if_needed().await;
                continue;
            }
            if !flushed {
                // A peer's ring is full; it does not ring us when it drains, so poll.
                glommio::timer::sleep(Duration::from_micros(50)).await;
                continue;
            }
            let may_sleep = self.outbox.borrow_mut().links().prepare_park();
            if may_sleep {
                let woke = waiter.wait().await;
                self.outbox.borrow_mut().links().retract_park();
                woke?;
            }
        }
    }

    /// The ticker: every `tick`, sends due pings and closes connections that are stale, did
    /// not answer a ping, or outlived their token. One timer for the whole shard.
    pub async fn run_ticker(self: Rc<Self>) {
        let ping_interval = Duration::from_millis(self.config.ping_interval_ms);
        let pong_timeout = Duration::from_millis(self.config.pong_timeout_ms);
        let tick = (pong_timeout / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
        let ping = ws::text_frame(b"{}");
        loop {
            glommio::timer::sleep(tick).await;
            let now = Millis::now();
            for conn in self.hub.borrow().connections() {
                if !conn.connected.get() {
                    if now.since(conn.opened) > STALE_CLOSE_DELAY {
                        conn.disconnect(Disconnect::STALE);
                    }
                    continue;
                }
                if conn.pong_due.get().is_some_and(|due| now > due) {
                    conn.disconnect(Disconnect::NO_PONG);
                    continue;
                }
                if conn
                    .expires_at
                    .get()
                    .is_some_and(|at| now > at.after(EXPIRED_CLOSE_DELAY))
                {
                    conn.disconnect(Disconnect::EXPIRED);
                    continue;
                }
                if now >= conn.next_ping.get() {
                    conn.push(ping.clone());
                    if conn.pong_due.get().is_none() {
                        conn.pong_due.set(Some(now.after(pong_timeout)));
                    }
                    conn.next_ping.set(now.after(ping_interval));
                }
            }
        }
    }
}
