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

use crate::config::{Config, Fsync};
use crate::hub::{Hub, PendingSubscription, SubscribeStep};
use crate::owner::{ChannelOwner, Outcome, ShardSet};
use crate::protocol::{self, Disconnect};
use crate::router::{
    owner_of, HistoryJob, HistoryPage, HistoryReplyTo, Outbox, PublishJob, PublishReply, Published,
    RecoverFrom, ReplyTo, ShardMsg, ShardStats, SubscribeAnswer, SubscribeJob, BACKLOG_HIGH,
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
    History(Result<Option<HistoryPage>, u32>),
}

/// Publications whose records wait to be durable (`history_fsync = always`): delivered and
/// answered, in order, once the sync that covers them completes.
struct Held {
    outcomes: Vec<Outcome>,
    answers: Vec<Published>,
    reply: PublishReply,
}

pub struct Shard {
    pub id: usize,
    pub count: usize,
    pub config: Config,
    pub token_key: DecodingKey,
    pub hub: RefCell<Hub>,
    owner: RefCell<ChannelOwner>,
    outbox: RefCell<Outbox>,
    held: RefCell<std::collections::VecDeque<Held>>,
    /// Rung when `held` gains an entry; the syncer coalesces rings.
    sync_bell: local_channel::LocalSender<()>,
    sync_bell_rx: RefCell<Option<local_channel::LocalReceiver<()>>>,
    /// Connections that stopped reading because the node is congested.
    room_waiters: RefCell<Vec<Rc<crate::hub::Outbound>>>,
    /// Test hook (`RINGCAST_TEST_FAIL_SYNC=1`): every history sync fails.
    fail_syncs: bool,
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
    pub fn new(
        id: usize,
        count: usize,
        config: Config,
        owner: ChannelOwner,
        outbox: Outbox,
    ) -> Self {
        let token_key = DecodingKey::from_secret(config.token_hmac_secret_key.as_bytes());
        let (sync_bell, sync_bell_rx) = local_channel::new_bounded(1);
        Shard {
            id,
            count,
            token_key,
            hub: RefCell::new(Hub::default()),
            owner: RefCell::new(owner),
            outbox: RefCell::new(outbox),
            held: RefCell::new(Default::default()),
            sync_bell,
            sync_bell_rx: RefCell::new(Some(sync_bell_rx)),
            room_waiters: RefCell::new(Vec::new()),
            fail_syncs: std::env::var_os("RINGCAST_TEST_FAIL_SYNC").is_some_and(|v| v == "1"),
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

    /// True while some shard of the node has a long outgoing backlog (`router::Congestion`):
    /// sources of new traffic hold back.
    pub fn congested(&self) -> bool {
        self.outbox.borrow().congested_anywhere()
    }

    /// Waits while the node is congested (API calls, before they hand work to owners).
    pub async fn wait_for_room(&self) {
        // Bounded by the shards draining their backlogs, which never wait on sources.
        while self.congested() {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }

    /// For a connection about to read commands: if the node is congested, puts it on the
    /// list the ring loop wakes when the congestion clears and returns true (do not read
    /// now; keep writing). One timer for the shard, not one per connection.
    pub fn hold_intake(&self, out: &Rc<crate::hub::Outbound>) -> bool {
        if !self.congested() {
            return false;
        }
        if !out.waiting_room.replace(true) {
            self.room_waiters.borrow_mut().push(out.clone());
        }
        true
    }

    /// Wakes the connections held back by congestion once it is over.
    fn release_intake(&self) {
        if self.room_waiters.borrow().is_empty() || self.congested() {
            return;
        }
        for out in self.room_waiters.take() {
            out.waiting_room.set(false);
            out.wake();
        }
    }

    /// Subscribes a connection. The reply is queued on the connection when the subscriber
    /// joins: at once if this shard already receives the channel and no recovery is asked,
    /// else when the owner's answer arrives (before any delivery it did not include).
    pub fn subscribe(&self, channel: &str, sub: PendingSubscription, recover: Option<RecoverFrom>) {
        let step = self.hub.borrow_mut().subscribe(channel, sub);
        let SubscribeStep::AskOwner {
            name,
            register,
            ticket,
        } = step
        else {
            return;
        };
        let owner = owner_of(channel, self.count);
        if owner == self.id {
            let (result, recovery) =
                self.owner
                    .borrow_mut()
                    .subscribe(&name, self.id, register, recover.as_ref());
            self.apply_subscribed(SubscribeAnswer {
                channel: name,
                registration: register,
                ticket,
                result,
                recovery,
            });
        } else {
            let job = SubscribeJob {
                channel: name,
                from: self.id,
                register,
                ticket,
                recover,
            };
            self.send(owner, ShardMsg::Subscribe(Box::new(job)));
        }
    }

    fn apply_subscribed(&self, answer: SubscribeAnswer) {
        let left = self.hub.borrow_mut().subscribed(answer);
        if let Some(channel) = left {
            self.leave_owner(channel);
        }
    }

    /// Tells the owner this shard has no subscriber of `channel` any more.
    fn leave_owner(&self, channel: Arc<str>) {
        let owner = owner_of(&channel, self.count);
        if owner == self.id {
            self.owner.borrow_mut().remove_shard(&channel, self.id);
        } else {
            self.send(
                owner,
                ShardMsg::Unsubscribe {
                    channel,
                    from: self.id,
                },
            );
        }
    }

    pub fn unsubscribe(&self, channel: &str, conn_id: u64) {
        let last = self.hub.borrow_mut().unsubscribe(channel, conn_id);
        if last {
            self.leave_owner(channel.into());
        }
    }

    /// A client's `history` command: the owner answers with the reply line for `conn`.
    pub fn history_for_connection(
        &self,
        channel: &str,
        request: &protocol::HistoryRequest,
        conn: u64,
        command: u32,
    ) {
        let reply = HistoryReplyTo::Conn {
            shard: self.id,
            conn,
            command,
        };
        self.ask_history(channel, request, reply);
    }

    /// Sends a history query to the channel's owner (or runs it here).
    fn ask_history(
        &self,
        channel: &str,
        request: &protocol::HistoryRequest,
        reply: HistoryReplyTo,
    ) {
        let job = HistoryJob {
            channel: channel.into(),
            limit: request.limit,
            since: request
                .since
                .as_ref()
                .map(|s| (s.offset, s.epoch.as_str().into())),
            reverse: request.reverse,
            reply,
        };
        let owner = owner_of(channel, self.count);
        if owner == self.id {
            self.run_history(job);
        } else {
            self.send(owner, ShardMsg::History(Box::new(job)));
        }
    }

    /// The API's `history`: the page, an error code, or `None` if the owner did not answer.
    pub async fn history(
        &self,
        channel: &str,
        request: &protocol::HistoryRequest,
    ) -> Option<Result<HistoryPage, u32>> {
        let (request_id, receiver) = self.expect_answers(1);
        let reply = HistoryReplyTo::Api(ReplyTo {
            shard: self.id,
            request: request_id,
        });
        self.ask_history(channel, request, reply);
        let answer = self.answer(request_id, &receiver).await?;
        self.waiting.borrow_mut().remove(&request_id);
        match answer {
            Answer::History(result) => {
                Some(result.and_then(|page| page.ok_or(protocol::code::INTERNAL)))
            }
            _ => unreachable!("history request answered with something else"),
        }
    }

    /// The API's `history_remove`: `Some(Ok)` once the owner removed it.
    pub async fn history_remove(&self, channel: &str) -> Option<Result<(), u32>> {
        let owner = owner_of(channel, self.count);
        if owner == self.id {
            return Some(self.owner.borrow_mut().remove_history(channel));
        }
        let (request, receiver) = self.expect_answers(1);
        self.send(
            owner,
            ShardMsg::HistoryRemove {
                channel: channel.into(),
                reply: ReplyTo {
                    shard: self.id,
                    request,
                },
            },
        );
        let answer = self.answer(request, &receiver).await?;
        self.waiting.borrow_mut().remove(&request);
        match answer {
            Answer::History(result) => Some(result.map(|_| ())),
            _ => unreachable!("history_remove answered with something else"),
        }
    }

    /// Owner work for a history query.
    fn run_history(&self, job: HistoryJob) {
        let result = self.owner.borrow_mut().history(
            &job.channel,
            job.limit,
            job.since.as_ref().map(|(o, e)| (*o, &**e)),
            job.reverse,
        );
        match job.reply {
            HistoryReplyTo::Conn {
                shard,
                conn,
                command,
            } => {
                let mut line = Vec::new();
                match result {
                    Ok(page) => {
                        line.extend_from_slice(b"{\"id\":");
                        line.extend_from_slice(command.to_string().as_bytes());
                        line.extend_from_slice(b",\"history\":");
                        protocol::put_history_result(
                            &mut line,
                            &page.publications,
                            &page.epoch,
                            page.offset,
                        );
                        line.push(b'}');
                    }
                    Err(code) => protocol::error_reply(
                        &mut line,
                        command,
                        code,
                        code == protocol::code::INTERNAL,
                    ),
                }
                let frame = ws::text_frame(&line);
                if shard == self.id {
                    self.hub.borrow().reply_to(conn, frame);
                } else {
                    self.send(shard, ShardMsg::ConnReply { conn, frame });
                }
            }
            HistoryReplyTo::Api(reply) => self.answer_to(
                reply,
                ShardMsg::HistoryAnswer {
                    request: reply.request,
                    result: result.map(Some),
                },
            ),
        }
    }

    /// Sends an answer to whoever waits for it, on this shard or another.
    fn answer_to(&self, reply: ReplyTo, msg: ShardMsg) {
        if reply.shard == self.id {
            self.handle(msg);
        } else {
            self.send(reply.shard, msg);
        }
    }

    /// A client's publish: the owner sends the reply to the connection when the publication
    /// is accepted (order per connection holds because the ring to the owner is FIFO).
    pub fn publish_from_connection(
        &self,
        channel: &str,
        data: Bytes,
        info: Option<Bytes>,
        conn: u64,
        command: u32,
    ) {
        let owner = owner_of(channel, self.count);
        let job = PublishJob {
            channels: vec![(0, channel.into())],
            data,
            info,
            tags: None,
            skip_history: false,
            reply: PublishReply::Conn {
                shard: self.id,
                conn,
                command,
            },
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
    /// time (then the answers that did arrive are lost to the caller: see `publish_partial`).
    pub async fn publish(
        &self,
        channels: Vec<(u32, Arc<str>)>,
        data: Bytes,
        tags: Option<Bytes>,
        skip_history: bool,
    ) -> Option<Vec<Published>> {
        let (results, complete) = self
            .publish_partial(channels, data, tags, skip_history)
            .await;
        complete.then_some(results)
    }

    /// `publish` that returns what arrived and whether every owner answered.
    pub async fn publish_partial(
        &self,
        channels: Vec<(u32, Arc<str>)>,
        data: Bytes,
        tags: Option<Bytes>,
        skip_history: bool,
    ) -> (Vec<Published>, bool) {
        let mut by_owner: Vec<Vec<(u32, Arc<str>)>> = vec![Vec::new(); self.count];
        for (index, channel) in channels {
            by_owner[owner_of(&channel, self.count)].push((index, channel));
        }
        let owners = by_owner.iter().filter(|c| !c.is_empty()).count();
        let (request, receiver) = self.expect_answers(owners);
        for (owner, channels) in by_owner.into_iter().enumerate() {
            if channels.is_empty() {
                continue;
            }
            self.wait_for_room().await;
            let job = PublishJob {
                channels,
                data: data.clone(),
                info: None,
                tags: tags.clone(),
                skip_history,
                reply: PublishReply::Api(ReplyTo {
                    shard: self.id,
                    request,
                }),
            };
            if owner == self.id {
                self.run_publish(job);
            } else {
                self.send(owner, ShardMsg::Publish(Box::new(job)));
            }
        }
        let mut results = Vec::new();
        for _ in 0..owners {
            match self.answer(request, &receiver).await {
                Some(Answer::Published(more)) => results.extend(more),
                Some(_) => unreachable!("publish request answered with something else"),
                None => return (results, false),
            }
        }
        self.waiting.borrow_mut().remove(&request);
        (results, true)
    }

    /// This shard's counters.
    pub fn local_stats(&self) -> ShardStats {
        let hub = self.hub.borrow();
        ShardStats {
            connections: hub.connection_count() as u64,
            users: hub.user_count() as u64,
            subscriptions: hub.subscription_count() as u64,
            channels: self.owner.borrow().active_channels() as u64,
            history_bytes: self.owner.borrow().history_usage().0,
            history_records: self.owner.borrow().history_usage().1,
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
                _ => unreachable!("stats request answered with something else"),
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

    /// Owner work for a publish job: offsets, history appends, one encoded frame per
    /// channel, fan-out to the interested shards, the answer to whoever waits. Publications
    /// held for durability (`history_fsync = always`) are fanned out and answered by the
    /// syncer once their records are on disk.
    fn run_publish(&self, job: PublishJob) {
        let mut answers = Vec::with_capacity(job.channels.len());
        let mut held = Vec::new();
        for (index, channel) in &job.channels {
            let result = self.owner.borrow_mut().publish(
                channel,
                &job.data,
                job.info.as_deref(),
                job.tags.as_deref(),
                job.skip_history,
            );
            let result = match result {
                Ok(outcome) => {
                    self.publications.set(self.publications.get() + 1);
                    let position = (outcome.offset, outcome.epoch.clone());
                    if outcome.held {
                        held.push(outcome);
                    } else {
                        self.fan_out(&outcome, outcome.shards);
                    }
                    Ok(position)
                }
                Err(code) => Err(code),
            };
            answers.push(Published {
                index: *index,
                result,
            });
        }
        if !held.is_empty() {
            let mut queue = self.held.borrow_mut();
            queue.push_back(Held {
                outcomes: held,
                answers,
                reply: job.reply,
            });
            if queue.len() > BACKLOG_HIGH {
                // A slow disk: hold the node's intake until the syncer catches up.
                self.outbox.borrow_mut().set_held_pressure(true);
            }
            drop(queue);
            // Full means a ring is already pending: the syncer takes everything held.
            let _ = self.sync_bell.try_send(());
            return;
        }
        self.send_published(job.reply, answers);
    }

    fn send_published(&self, reply: PublishReply, results: Vec<Published>) {
        match reply {
            PublishReply::Api(reply) => self.answer_to(
                reply,
                ShardMsg::Published {
                    request: reply.request,
                    results,
                },
            ),
            PublishReply::Conn {
                shard,
                conn,
                command,
            } => {
                let mut line = Vec::new();
                match results.first().map(|p| &p.result) {
                    Some(Err(code)) => protocol::error_reply(
                        &mut line,
                        command,
                        *code,
                        *code == protocol::code::INTERNAL,
                    ),
                    _ => protocol::empty_result(&mut line, command, "publish"),
                }
                let frame = ws::text_frame(&line);
                if shard == self.id {
                    self.hub.borrow().reply_to(conn, frame);
                } else {
                    self.send(shard, ShardMsg::ConnReply { conn, frame });
                }
            }
        }
    }

    /// Sends one publication's frame to `shards` (this one by a call, others by ring).
    fn fan_out(&self, outcome: &Outcome, shards: ShardSet) {
        for shard in shards.iter() {
            if shard == self.id {
                self.hub
                    .borrow_mut()
                    .deliver(&outcome.channel, outcome.offset, &outcome.frame);
            } else {
                self.send(
                    shard,
                    ShardMsg::Deliver {
                        channel: outcome.channel.clone(),
                        offset: outcome.offset,
                        frame: outcome.frame.clone(),
                    },
                );
            }
        }
    }

    /// Runs a blocking history sync off the shard's core. A failed sync ends the process:
    /// the kernel may have dropped the dirty pages, so the data can neither be trusted as
    /// durable nor synced again, and acknowledging anything after it would be a lie. A
    /// restart verifies the log and keeps what is really there (crash-only, as PostgreSQL
    /// does on fsync failure).
    async fn run_flush(&self, job: crate::history::FlushJob) {
        let result = if self.fail_syncs {
            Err(std::io::Error::other("RINGCAST_TEST_FAIL_SYNC is set"))
        } else {
            glommio::executor().spawn_blocking(move || job.run()).await
        };
        if let Err(e) = result {
            eprintln!(
                "ringcast: shard {}: history sync failed: {e}; stopping so that nothing \
                 unsynced is acknowledged (a restart recovers the log)",
                self.id
            );
            std::process::exit(70);
        }
    }

    /// The syncer: makes history durable by the configured policy. With `always` it waits
    /// for held publications, syncs everything appended so far (one sync for all of them:
    /// group commit), then delivers and answers them in order.
    pub async fn run_syncer(self: Rc<Self>) {
        match self.config.history_fsync {
            Fsync::Never => loop {
                // Nothing is synced, but the log's record of dirty ranges (which keeps
                // mappings of retained-away segments alive) must not grow.
                glommio::timer::sleep(Duration::from_secs(1)).await;
                drop(self.owner.borrow_mut().take_flushes());
            },
            Fsync::Interval => {
                let interval = Duration::from_millis(self.config.history_fsync_interval_ms);
                loop {
                    glommio::timer::sleep(interval).await;
                    let jobs = self.owner.borrow_mut().take_flushes();
                    for job in jobs {
                        self.run_flush(job).await;
                    }
                }
            }
            Fsync::Always => {
                let Some(bell) = self.sync_bell_rx.borrow_mut().take() else {
                    return;
                };
                while bell.recv().await.is_some() {
                    let batch: Vec<Held> = self.held.borrow_mut().drain(..).collect();
                    let jobs = self.owner.borrow_mut().take_flushes();
                    for job in jobs {
                        self.run_flush(job).await;
                    }
                    if self.held.borrow().len() <= BACKLOG_HIGH / 2 {
                        self.outbox.borrow_mut().set_held_pressure(false);
                    }
                    for held in batch {
                        for outcome in &held.outcomes {
                            let shards = self
                                .owner
                                .borrow_mut()
                                .release(&outcome.channel, outcome.offset);
                            self.fan_out(outcome, shards);
                        }
                        self.send_published(held.reply, held.answers);
                    }
                }
            }
        }
    }

    /// Retention: once a second, drops what history no longer serves and deletes segments
    /// nothing references.
    pub async fn run_retention(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(Duration::from_secs(1)).await;
            self.owner.borrow_mut().retain();
        }
    }

    /// Applies one message from another shard.
    fn handle(&self, msg: ShardMsg) {
        match msg {
            ShardMsg::Subscribe(job) => {
                let (result, recovery) = self.owner.borrow_mut().subscribe(
                    &job.channel,
                    job.from,
                    job.register,
                    job.recover.as_ref(),
                );
                let answer = SubscribeAnswer {
                    channel: job.channel,
                    registration: job.register,
                    ticket: job.ticket,
                    result,
                    recovery,
                };
                self.send(job.from, ShardMsg::Subscribed(Box::new(answer)));
            }
            ShardMsg::Subscribed(answer) => self.apply_subscribed(*answer),
            ShardMsg::History(job) => self.run_history(*job),
            ShardMsg::HistoryAnswer { request, result } => {
                self.deliver_answer(request, Answer::History(result))
            }
            ShardMsg::HistoryRemove { channel, reply } => {
                let result = self.owner.borrow_mut().remove_history(&channel);
                self.send(
                    reply.shard,
                    ShardMsg::HistoryAnswer {
                        request: reply.request,
                        result: result.map(|()| None),
                    },
                );
            }
            ShardMsg::ConnReply { conn, frame } => self.hub.borrow().reply_to(conn, frame),
            ShardMsg::Unsubscribe { channel, from } => {
                self.owner.borrow_mut().remove_shard(&channel, from)
            }
            ShardMsg::Publish(job) => {
                self.run_publish(*job);
            }
            ShardMsg::Deliver {
                channel,
                offset,
                frame,
            } => {
                self.hub
                    .borrow_mut()
                    .deliver_remote(&channel, offset, &frame);
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
            self.release_intake();
            if received > 0 {
                glommio::yield_if_needed().await;
                continue;
            }
            if !flushed {
                // A peer's ring is full; it does not ring us when it drains, so poll.
                glommio::timer::sleep(Duration::from_micros(50)).await;
                continue;
            }
            if !self.room_waiters.borrow().is_empty() {
                // Another shard's congestion clears without ringing us: poll for it.
                glommio::timer::sleep(Duration::from_millis(1)).await;
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
