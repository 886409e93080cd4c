//! The owner's work with the Redis engine (`engine.type = "redis"`): publishing (one script
//! call per channel, pipelined on the shard's connection, answered with Redis's offset),
//! delivering what Redis pub/sub brings (the owner fans each publication out to this node's
//! shards with subscribers, encoded once, exactly as a memory-engine publication), the
//! subscription step (the pub/sub confirmation, then the stream's position and what a
//! recovering client missed, merged with what arrived meanwhile: DESIGN invariant 3 across
//! nodes), leaving a channel, and history queries. Each waits on Redis in a task of its own;
//! the shard's loop never waits.
//!
//! Presence entries are mirrored in Redis (renewed periodically) and read from there; the
//! API's user actions, each node's counts (for `info`) and `channels` surveys go to the other
//! nodes over a control channel; joins and leaves go through the channel's pub/sub.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use super::Shard;
use crate::broker::redis::{Entry, PubSubEvent, StreamPolicy};
use crate::engine::redis::{
    encode_payload, excluded, node_id, note_peer, publication, Arrival, JoinLeaveKind, PeerNode,
    Placement, RedisChannels, RedisTopology,
};
use crate::engine::{Outcome, Release};
use crate::limits::{PRESENCE_REPLY_ENTRIES_MAX, REDIS_PUBLISH_BATCH};
use crate::protocol::{ClientId, ErrorCode, Publication};
use crate::router::msg::{
    ChannelsQuery, HistoryJob, HistoryPage, Position, PresenceAnswer, PresenceItem, PresenceJob,
    PresenceKind, PublishJob, Published, Recovery, StreamTop, SubscribeJob, UserAction,
};

/// What nodes tell each other on the control channel (as JSON).
#[derive(serde::Deserialize)]
struct ControlMessage {
    /// The sender (`node_id`), which skips its own.
    node: String,
    #[serde(default)]
    action: Option<UserAction>,
    #[serde(default)]
    info: Option<PeerNode>,
    #[serde(default)]
    survey: Option<ChannelsSurvey>,
    #[serde(default)]
    answer: Option<ChannelsAnswered>,
}

/// Another node asks for this node's channels (the API's `channels`).
#[derive(serde::Deserialize)]
struct ChannelsSurvey {
    request: u64,
    shard: usize,
    query: ChannelsQuery,
}

/// A node's channels, for the node and shard that asked.
#[derive(serde::Deserialize)]
struct ChannelsAnswered {
    to: String,
    request: u64,
    shard: usize,
    channels: Vec<(String, u32)>,
}
use crate::router::ShardMsg;

impl Shard {
    /// In Redis mode: starts this shard's Redis side. Call once, right after the shard is
    /// made. On shard 0 the returned task ends once the node hears the other nodes' user
    /// actions (the control channel subscribed); it goes on trying while Redis is away.
    pub fn attach_redis(
        self: &Rc<Self>,
        topology: &RedisTopology,
    ) -> Result<Option<glommio::task::JoinHandle<()>>, String> {
        let weak = Rc::downgrade(self);
        let _ = self.me.set(weak.clone());
        let handler_of = weak.clone();
        let channels = RedisChannels::start(
            &self.config,
            topology,
            Box::new(move || {
                let weak = handler_of.clone();
                Box::new(move |event| {
                    if let Some(shard) = weak.upgrade() {
                        shard.on_pubsub(event);
                    }
                })
            }),
        );
        self.redis
            .set(channels)
            .map_err(|_| "the Redis side is attached already".to_owned())?;
        glommio::spawn_local(self.clone().renew_presence()).detach();
        if matches!(topology.placement, Placement::BySlot(_)) {
            glommio::spawn_local(self.clone().follow_cluster()).detach();
        }
        if self.id == 0 {
            // One shard per node hears the other nodes' user actions.
            let me = self.clone();
            glommio::spawn_local(self.clone().tell_nodes()).detach();
            let listening = glommio::spawn_local(async move {
                // Bounded: until it is listening; pub/sub subscribes it again after a
                // reconnect by itself.
                loop {
                    let Some(redis) = me.redis() else { return };
                    if redis.listen_control().await.is_ok() {
                        return;
                    }
                    glommio::timer::sleep(std::time::Duration::from_millis(
                        crate::limits::REDIS_RECONNECT_MIN_MS,
                    ))
                    .await;
                }
            })
            .detach();
            return Ok(Some(listening));
        }
        Ok(None)
    }

    /// Follows a Redis Cluster's slot map for as long as the shard runs: every
    /// `REDIS_CLUSTER_CHECK_MS`, if a master answered MOVED or a connection is down, the map
    /// is read again; when a slot changed master, the tracked streams are checked (a moved
    /// subscription may have missed publications: their subscribers recover).
    async fn follow_cluster(self: Rc<Self>) {
        let every = std::time::Duration::from_millis(crate::limits::REDIS_CLUSTER_CHECK_MS);
        // Bounded by the shard's life: one check per period.
        loop {
            glommio::timer::sleep(every).await;
            let Some(redis) = self.redis() else {
                return;
            };
            if redis.should_follow_cluster() && redis.follow_cluster().await {
                self.check_streams().await;
            }
        }
    }

    /// Tells the other nodes how this node is, every `NODE_INFO_INTERVAL_MS`, for as long as
    /// the shard runs (their `info` lists it, and `centrifugo_node_num_nodes` counts it).
    async fn tell_nodes(self: Rc<Self>) {
        let every = std::time::Duration::from_millis(crate::limits::NODE_INFO_INTERVAL_MS);
        // Bounded by the shard's life: one message per period.
        loop {
            glommio::timer::sleep(every).await;
            let Some(stats) = self.collect_stats().await else {
                continue;
            };
            let total = crate::metrics::counters::ShardStats::sum(&stats);
            let name = match self.config.node.name.as_str() {
                "" => "ringcast",
                name => name,
            };
            let info = PeerNode {
                uid: node_id().to_owned(),
                name: name.to_owned(),
                version: crate::VERSION.to_owned(),
                num_clients: total.connections,
                num_users: total.online_users,
                num_channels: total.channels,
                num_subs: total.subscriptions,
                uptime: self.started.elapsed().as_secs(),
            };
            if let Ok(info) = serde_json::to_value(info) {
                self.tell_other_nodes("info", info).await;
            }
        }
    }

    /// Publishes `{"node": <this node>, <kind>: body}` on the control channel (a failure is
    /// counted; control messages are not retried).
    async fn tell_other_nodes(&self, kind: &str, body: serde_json::Value) {
        let mut message = serde_json::Map::new();
        message.insert("node".into(), node_id().into());
        message.insert(kind.into(), body);
        let (Ok(bytes), Some(redis)) = (serde_json::to_vec(&message), self.redis()) else {
            return;
        };
        let _ = redis.publish_control(&bytes).await;
    }

    /// `tell_other_nodes` from a task of its own, for callers that do not wait.
    fn tell_other_nodes_soon(&self, kind: &'static str, body: serde_json::Value) {
        let Some(me) = self.me() else {
            return;
        };
        glommio::spawn_local(async move { me.tell_other_nodes(kind, body).await }).detach();
    }

    /// Asks the other nodes for their channels matching `query`; their answers reach this
    /// shard's `request` (through the node's control listener, then the ring).
    pub(super) fn survey_channels(&self, query: &ChannelsQuery, request: u64) {
        let survey = serde_json::json!({"request": request, "shard": self.id, "query": query});
        self.tell_other_nodes_soon("survey", survey);
    }

    /// Another node's survey: this node's channels, sent back to it.
    fn answer_survey(&self, to: String, survey: ChannelsSurvey) {
        let Some(me) = self.me() else {
            return;
        };
        glommio::spawn_local(async move {
            let Ok(page) = me.local_channels(survey.query).await else {
                return;
            };
            let channels: Vec<(&str, u32)> =
                page.channels.iter().map(|(n, c)| (&**n, *c)).collect();
            let answer = serde_json::json!({
                "to": to,
                "request": survey.request,
                "shard": survey.shard,
                "channels": channels,
            });
            me.tell_other_nodes("answer", answer).await;
        })
        .detach();
    }

    /// In Redis mode: the other nodes apply `action` too (fire and forget: the API answers
    /// once this node's connections applied it, as Centrifugo does).
    pub fn forward_user_action(&self, action: &UserAction) {
        if self.redis().is_none() {
            return;
        }
        if let Ok(action) = serde_json::to_value(action) {
            self.tell_other_nodes_soon("action", action);
        }
    }

    pub(super) fn redis(&self) -> Option<&RedisChannels> {
        self.redis.get()
    }

    fn me(&self) -> Option<Rc<Shard>> {
        self.me.get().and_then(Weak::upgrade)
    }

    /// What this node's pub/sub connection brings for the channels this shard owns.
    fn on_pubsub(&self, event: PubSubEvent<'_>) {
        let Some(redis) = self.redis() else {
            return;
        };
        match event {
            PubSubEvent::Message { channel, payload } => {
                if channel == redis.control_channel().as_bytes() {
                    return self.on_control(&payload);
                }
                let Some(name) = redis.channel_of(channel) else {
                    return;
                };
                if let Some((kind, info)) = JoinLeaveKind::from_message(&payload) {
                    let frame = super::presence::join_leave_frame(name, kind.as_str(), info);
                    return self.push_join_leave(Arc::from(name), frame);
                }
                let Some((entry, publication)) =
                    Entry::from_message(&payload).and_then(|e| publication(&e).map(|p| (e, p)))
                else {
                    eprintln!(
                        "ringcast: shard {}: a malformed message on {name:?}",
                        self.id
                    );
                    return;
                };
                redis.arrived(name, entry.offset, &publication);
                let Some((channel, shards)) = redis.subscribed(name) else {
                    return;
                };
                match redis.arrival(name, &entry.epoch, entry.offset) {
                    Arrival::Deliver => {}
                    Arrival::Duplicate => return,
                    Arrival::Lost => {
                        // Its subscribers recover it (and what came before) from the stream.
                        self.resync(name);
                        return;
                    }
                }
                let exclude = excluded(&entry);
                let outcome = Outcome {
                    channel: Some(channel),
                    publication,
                    epoch: Arc::from(entry.epoch),
                    shards,
                    release: Release::Now,
                };
                self.fan_out(outcome, shards, exclude);
            }
            PubSubEvent::Dropped => redis.subscription_dropped(),
            PubSubEvent::Resubscribed => {
                eprintln!(
                    "ringcast: shard {}: Redis pub/sub is back; channels whose streams moved \
                     meanwhile have their subscribers recover",
                    self.id
                );
                if let Some(me) = self.me() {
                    glommio::spawn_local(async move { me.check_streams().await }).detach();
                }
            }
        }
    }

    /// Another node's control message: its user action applied to this node's connections.
    fn on_control(&self, payload: &[u8]) {
        let Ok(message) = serde_json::from_slice::<ControlMessage>(payload) else {
            eprintln!("ringcast: shard {}: a malformed control message", self.id);
            return;
        };
        if message.node == node_id() {
            return;
        }
        if let Some(action) = message.action {
            self.tell_user_action(action);
        }
        if let Some(info) = message.info {
            note_peer(info);
        }
        if let Some(survey) = message.survey {
            self.answer_survey(message.node, survey);
        }
        if let Some(answer) = message.answer.filter(|a| a.to == node_id()) {
            let channels = answer
                .channels
                .into_iter()
                .map(|(name, count)| (Arc::from(name), count))
                .collect();
            self.to_shard(
                answer.shard,
                ShardMsg::ChannelsAnswer {
                    request: answer.request,
                    channels,
                },
            );
        }
    }

    /// Publishes a join or leave through the channel's pub/sub, for every node's subscribers.
    pub(super) fn share_join_leave(&self, channel: Arc<str>, kind: JoinLeaveKind, info: Vec<u8>) {
        let Some(me) = self.me() else {
            return;
        };
        glommio::spawn_local(async move {
            if let Some(redis) = me.redis() {
                let _ = redis.publish_join_leave(&channel, kind, &info).await;
            }
        })
        .detach();
    }

    /// Mirrors a presence change of this node's in Redis: `item` joined, or (`None`) the
    /// client left.
    pub(super) fn share_presence(
        &self,
        channel: Arc<str>,
        item: Option<PresenceItem>,
        client: ClientId,
    ) {
        let Some(me) = self.me() else {
            return;
        };
        let ttl = self.presence_ttl_secs();
        glommio::spawn_local(async move {
            let Some(redis) = me.redis() else {
                return;
            };
            // A failure is counted; the next renewal writes the entry again.
            let _ = match item {
                Some(item) => redis.presence_add(&channel, &[item], ttl).await,
                None => redis.presence_remove(&channel, client).await,
            };
        })
        .detach();
    }

    fn presence_ttl_secs(&self) -> u64 {
        self.config
            .engine
            .redis
            .presence_ttl
            .as_millis()
            .div_ceil(1000)
            .max(1)
    }

    /// Renews this node's presence entries in Redis every third of their ttl, for as long as
    /// the shard runs.
    async fn renew_presence(self: Rc<Self>) {
        let ttl = self.presence_ttl_secs();
        let every = std::time::Duration::from_millis((ttl * 1000 / 3).max(100));
        // Bounded by the shard's life: one round per period.
        loop {
            glommio::timer::sleep(every).await;
            let Some(redis) = self.redis() else { return };
            let channels = self.engine.borrow().presence_channels();
            for channel in channels {
                let items = self.engine.borrow().presence(&channel);
                let _ = redis.presence_add(&channel, &items, ttl).await;
            }
        }
    }

    /// Owner work for a presence query: every node's entries, from Redis.
    pub(super) fn run_presence_redis(&self, job: PresenceJob) {
        let Some(me) = self.me() else {
            return;
        };
        glommio::spawn_local(async move {
            let result = match me.redis() {
                None => Err(ErrorCode::Internal),
                Some(redis) => match job.kind {
                    PresenceKind::Stats => redis
                        .presence_stats(&job.channel)
                        .await
                        .map(PresenceAnswer::Stats),
                    PresenceKind::List => match redis.presence(&job.channel).await {
                        Ok(items) if items.len() > PRESENCE_REPLY_ENTRIES_MAX => {
                            Err(ErrorCode::LimitExceeded)
                        }
                        Ok(items) => Ok(PresenceAnswer::List(items)),
                        Err(code) => Err(code),
                    },
                },
            };
            me.answer_presence(job.reply, result);
        })
        .detach();
    }

    /// Has `channel`'s subscribers on this node recover from the stream (3010).
    fn resync(&self, channel: &str) {
        let Some(redis) = self.redis() else {
            return;
        };
        let channel: Arc<str> = Arc::from(channel);
        for shard in redis.subscribers(&channel).iter() {
            self.to_shard(
                shard,
                ShardMsg::Resync {
                    channel: channel.clone(),
                },
            );
        }
    }

    /// After pub/sub came back: every tracked channel whose stream moved past what this node
    /// delivered (or began again) has its subscribers recover.
    async fn check_streams(&self) {
        let Some(redis) = self.redis() else {
            return;
        };
        for (channel, _, _) in redis.tracked() {
            let Some(options) = self.config.channel_options(&channel) else {
                continue;
            };
            let Ok(history) = redis.read(&channel, u64::MAX, 1, &options).await else {
                continue;
            };
            // Compared with what was delivered by the time the answer came (publications
            // keep arriving meanwhile), if the channel is still tracked.
            let Some((epoch, offset)) = redis.position(&channel) else {
                continue;
            };
            // Moved on (missed publications), began again, or went back (a replica promoted
            // before it had the last writes: what follows would reuse offsets delivered
            // already): the node delivers from the stream's top again, and the subscribers
            // recover.
            if *history.top.epoch != *epoch || history.top.offset != offset {
                redis.reset_position(&channel, &history.top.epoch, history.top.offset);
                self.resync(&channel);
            }
        }
    }

    /// Owner work for a publish job: the channels published in Redis, answered once all
    /// were. A broadcast's channels with history go in batches of `REDIS_PUBLISH_BATCH` per
    /// Redis instance and policy, one script call each; others one call each. Every call is
    /// made before any answer is awaited (one pipeline). Delivery comes back through pub/sub.
    pub(super) fn run_publish_redis(&self, job: PublishJob) {
        let Some(me) = self.me() else {
            return;
        };
        glommio::spawn_local(async move {
            let answers = me.publish_in_redis(&job).await;
            me.send_published(job.reply, answers);
        })
        .detach();
    }

    async fn publish_in_redis(self: &Rc<Self>, job: &PublishJob) -> Vec<Published> {
        let Some(redis) = self.redis() else {
            return Vec::new();
        };
        let payload: Rc<[u8]> = encode_payload(
            &job.data,
            job.info.as_ref(),
            job.options.tags.as_ref(),
            job.options.exclude,
        )
        .into();
        let skip_history = job.options.skip_history;
        let key: Option<Rc<str>> = job.options.idempotency_key.as_deref().map(Rc::from);
        let mut answers = Vec::with_capacity(job.channels.len());
        let mut singles = Vec::new();
        let mut batches: HashMap<(usize, StreamPolicy), Vec<(u32, String)>> = HashMap::new();
        for (index, channel) in job.channels.iter() {
            let Some(options) = self.config.channel_options(channel) else {
                answers.push(Published {
                    index,
                    result: Err(ErrorCode::UnknownChannel),
                });
                continue;
            };
            let policy = redis.policy(&options, skip_history);
            if job.channels.len() > 1 && key.is_none() && policy.size > 0 {
                let at = (redis.instance_of(channel), policy);
                batches
                    .entry(at)
                    .or_default()
                    .push((index, channel.to_owned()));
            } else {
                singles.push((index, channel.to_owned(), options));
            }
        }
        type Call = glommio::task::JoinHandle<Vec<(u32, Result<Option<Position>, ErrorCode>)>>;
        let mut calls: Vec<Call> = Vec::new();
        for (index, channel, options) in singles {
            let (me, payload, key) = (self.clone(), payload.clone(), key.clone());
            calls.push(
                glommio::spawn_local(async move {
                    let Some(redis) = me.redis() else {
                        return vec![(index, Err(ErrorCode::Internal))];
                    };
                    let published = redis
                        .publish(&channel, &payload, &options, skip_history, key.as_deref())
                        .await
                        .map(|p| p.map(|(offset, epoch)| Position { offset, epoch }));
                    vec![(index, published)]
                })
                .detach(),
            );
        }
        for ((instance, policy), channels) in batches {
            for batch in channels.chunks(REDIS_PUBLISH_BATCH) {
                let (me, payload, batch) = (self.clone(), payload.clone(), batch.to_vec());
                calls.push(
                    glommio::spawn_local(async move {
                        let Some(redis) = me.redis() else {
                            return Vec::new();
                        };
                        let names: Vec<&str> = batch.iter().map(|(_, c)| c.as_str()).collect();
                        match redis
                            .publish_batch(instance, &names, &payload, policy)
                            .await
                        {
                            Ok(positions) => batch
                                .iter()
                                .zip(positions)
                                .map(|((index, _), (offset, epoch))| {
                                    (*index, Ok(Some(Position { offset, epoch })))
                                })
                                .collect(),
                            Err(code) => {
                                batch.iter().map(|(index, _)| (*index, Err(code))).collect()
                            }
                        }
                    })
                    .detach(),
                );
            }
        }
        for call in calls {
            for (index, result) in call.await.unwrap_or_default() {
                if result.is_ok() {
                    self.publications.set(self.publications.get() + 1);
                }
                answers.push(Published { index, result });
            }
        }
        // In the order of the request, as the memory engine answers.
        answers.sort_by_key(|p| p.index);
        answers
    }

    /// Owner work for a subscription step: this node subscribed to the channel's pub/sub,
    /// then its position (and what a recovering client missed) read; the shard registered
    /// when the answer leaves, so nothing is both in the answer and delivered.
    pub(super) fn run_subscribe_redis(&self, job: SubscribeJob) {
        let Some(me) = self.me() else {
            return;
        };
        glommio::spawn_local(async move {
            let (result, recovery) = me.subscribe_step(&job).await;
            if result.is_ok() && job.register {
                if let Some(redis) = me.redis() {
                    redis.add_subscriber(&job.channel, job.from);
                }
            }
            me.answer_subscribe(job, result, recovery);
        })
        .detach();
    }

    async fn subscribe_step(
        &self,
        job: &SubscribeJob,
    ) -> (Result<StreamTop, ErrorCode>, Option<Recovery>) {
        let Some(redis) = self.redis() else {
            return (Err(ErrorCode::Internal), None);
        };
        let Some(options) = self.config.channel_options(&job.channel) else {
            return (Err(ErrorCode::UnknownChannel), None);
        };
        redis.begin_sync(&job.channel);
        if let Err(code) = redis.subscribe(&job.channel).await {
            redis.abandon_sync(&job.channel);
            return (Err(code), None);
        }
        if !options.history() {
            // No positions: what arrived while subscribing came before this subscriber.
            let _ = redis.end_sync(&job.channel, u64::MAX);
            let top = StreamTop {
                epoch: Arc::from(""),
                offset: 0,
            };
            let recovery = job.recover.as_ref().map(|_| Recovery {
                recovered: false,
                offset: 0,
                publications: Vec::new(),
            });
            return (Ok(top), recovery);
        }
        let limit = self.config.client.recovery_max_publication_limit;
        // Only a recovering client needs the publications; one more than the limit tells a
        // gap too long to recover.
        let (from, read_limit) = match &job.recover {
            Some(from) => (from.offset, limit.saturating_add(1)),
            None => (u64::MAX, 1),
        };
        let history = match redis.read(&job.channel, from, read_limit, &options).await {
            Ok(history) => history,
            Err(code) => {
                redis.abandon_sync(&job.channel);
                return (Err(code), None);
            }
        };
        let top = history.top.offset;
        let epoch: Arc<str> = Arc::from(history.top.epoch.as_str());
        let arrived = redis.end_sync(&job.channel, top);
        let newest = arrived
            .as_ref()
            .and_then(|a| a.last())
            .and_then(|p| p.offset)
            .map_or(top, NonZeroU64::get);
        if redis.note_position(&job.channel, &epoch, newest) {
            // The stream began again since this node's subscribers joined.
            self.resync(&job.channel);
        }
        let position = StreamTop {
            epoch: epoch.clone(),
            offset: newest,
        };
        let recovery = job.recover.as_ref().map(|from| {
            let not_recovered = Recovery {
                recovered: false,
                offset: newest,
                publications: Vec::new(),
            };
            // Too much arrived meanwhile to keep, another epoch, or a position past the top.
            let Some(arrived) = arrived else {
                return not_recovered;
            };
            if (!from.epoch.is_empty() && *from.epoch != *epoch) || from.offset > top {
                return not_recovered;
            }
            let missed: Vec<Publication> = history
                .entries
                .iter()
                .filter(|e| e.offset > from.offset && e.offset <= top)
                .filter_map(publication)
                .collect();
            // Stream IDs are unique and ascending: the count tells the gap is whole.
            let complete = missed.len() as u64 == top - from.offset && missed.len() <= limit;
            if !complete {
                return not_recovered;
            }
            let mut publications = missed;
            publications.extend(arrived);
            Recovery {
                recovered: true,
                offset: from.offset,
                publications,
            }
        });
        (Ok(position), recovery)
    }

    /// Owner work for a history query, read from Redis.
    pub(super) fn run_history_redis(&self, job: HistoryJob) {
        let Some(me) = self.me() else {
            return;
        };
        glommio::spawn_local(async move {
            let result = me.history_from_redis(&job).await;
            me.answer_history(job.reply, result);
        })
        .detach();
    }

    async fn history_from_redis(&self, job: &HistoryJob) -> Result<HistoryPage, ErrorCode> {
        let redis = self.redis().ok_or(ErrorCode::Internal)?;
        let options = self
            .config
            .channel_options(&job.channel)
            .ok_or(ErrorCode::UnknownChannel)?;
        if !options.history() {
            return Err(ErrorCode::NotAvailable);
        }
        let query = &job.query;
        if query.reverse && query.since.as_ref().is_some_and(|(offset, _)| *offset == 0) {
            return Err(ErrorCode::BadRequest);
        }
        let limit = query.limit_up_to(self.config.client.history_max_publication_limit);
        let since = query.since.as_ref().map_or(0, |(offset, _)| *offset);
        // Forward reads start after `since`; reverse ones read what is kept and take the
        // newest below `since` (the stream holds at most `history_size`).
        let (from, read_limit) = match (query.reverse, limit) {
            (_, 0) => (u64::MAX, 1),
            (false, l) => (since, l),
            (true, _) => (0, 0),
        };
        let history = redis.read(&job.channel, from, read_limit, &options).await?;
        if let Some((_, epoch)) = &query.since {
            if !epoch.is_empty() && **epoch != *history.top.epoch {
                return Err(ErrorCode::UnrecoverablePosition);
            }
        }
        let mut publications: Vec<Publication> = Vec::new();
        if limit > 0 {
            publications = history.entries.iter().filter_map(publication).collect();
            if query.reverse {
                publications.retain(|p| since == 0 || p.offset.is_some_and(|o| o.get() < since));
                publications.reverse();
                publications.truncate(limit);
            }
        }
        Ok(HistoryPage {
            publications,
            epoch: Arc::from(history.top.epoch.as_str()),
            offset: history.top.offset,
        })
    }
}
