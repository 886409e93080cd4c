//! The Redis side of owning channels (`engine.type = "redis"`): what a shard does in Redis for
//! the channels it owns on this node. Offsets, epochs and history live in Redis
//! (`broker::redis::stream`), so every node sees the same stream; a publication reaches the
//! subscribers of every node through Redis pub/sub, this node's included: the owner shard of
//! a channel is the one subscribed to it, and fans out what arrives as the memory engine fans
//! out what it assigned.
//!
//! Which Redis instance keeps a channel is `redis_instances`' (a stable hash of the name, or
//! a cluster's slot map, followed while it changes).
//!
//! A subscription step that needs Redis (the pub/sub confirmation, then the stream's position
//! and what the client missed) takes time during which publications keep arriving: they are
//! delivered to the shards already subscribed and also kept (`Syncing`), and the new
//! subscriber gets those past the position it read, in order, before anything later.
//!
//! Owns the channels being synced, the subscribers and positions per channel; uses the
//! instances. Imports `broker`, `config`, `protocol`, `router`, `limits`, `rand`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};

use super::redis_instances::{Instance, RedisInstances};
pub use super::redis_instances::{Placement, RedisTopology};
use super::shard_set::ShardSet;
use crate::broker::redis::pubsub::Handler;
use crate::broker::redis::stream::{channel_of_pubsub, pubsub_channel};
use crate::broker::redis::Present;
use crate::broker::redis::{Entry, History, RedisError, StreamPolicy};
use crate::config::{ChannelOptions, Config};
use crate::limits::{IDEMPOTENCY_WINDOW_MS, REDIS_SYNC_BUFFER_MAX};
use crate::protocol::ClientId;
use crate::protocol::{ErrorCode, Publication};
use crate::router::msg::{ClientInfos, Excluded, PresenceItem, PresenceStats};

/// Publications that arrived for a channel while subscription steps waited for Redis.
#[derive(Default)]
struct Syncing {
    /// Steps waiting.
    steps: u32,
    /// What arrived meanwhile, in order; `None` once past `REDIS_SYNC_BUFFER_MAX` (the
    /// waiting subscribers are then told they were not recovered).
    arrived: Option<Vec<(u64, Publication)>>,
}

/// A shard's Redis side.
pub struct RedisChannels {
    prefix: String,
    /// `<prefix>.control`: user actions, node counts and surveys between nodes.
    control: String,
    instances: RedisInstances,
    syncing: RefCell<HashMap<Arc<str>, Syncing>>,
    /// This node's shards with subscribers, per channel this shard owns.
    subscribers: RefCell<HashMap<Arc<str>, ShardSet>>,
    /// Calls that got no answer or an error answer, since the start.
    errors: std::cell::Cell<u64>,
    /// The stream position this node delivered last, per channel with subscribers and
    /// positions: what tells a publication that follows from one after a gap or an epoch
    /// change.
    delivered: RefCell<HashMap<Arc<str>, Delivered>>,
}

/// The epoch and offset of what this node delivered last on a channel.
type Delivered = (Arc<str>, u64);

/// What to do with a publication pub/sub brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// It follows what was delivered: deliver it.
    Deliver,
    /// Delivered already (it came in a subscriber's recovery too): drop it.
    Duplicate,
    /// Something before it was missed, or the stream began again: the subscribers must
    /// recover from the stream.
    Lost,
}

/// A publication's fields as nodes pass them through Redis: data, info and tags, each a
/// 32-bit big-endian length (0xFFFFFFFF: absent) and the bytes; then the connection
/// `exclude_client` names, if any (shard as 16 bits, connection as 64).
pub fn encode_payload(
    data: &[u8],
    info: Option<&Bytes>,
    tags: Option<&Bytes>,
    exclude: Option<Excluded>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(22 + data.len());
    out.put_u32(data.len() as u32);
    out.put_slice(data);
    for part in [info, tags] {
        match part {
            Some(bytes) => {
                out.put_u32(bytes.len() as u32);
                out.put_slice(bytes);
            }
            None => out.put_u32(u32::MAX),
        }
    }
    if let Some(e) = exclude {
        out.put_u16(e.shard as u16);
        out.put_u64(e.conn);
    }
    out
}

/// The connection a publication's `exclude_client` names, if its payload carries one.
pub fn excluded(entry: &Entry) -> Option<Excluded> {
    let mut rest = entry.payload.clone();
    // Bounded: three length-prefixed parts.
    for optional in [false, true, true] {
        if rest.remaining() < 4 {
            return None;
        }
        let len = rest.get_u32();
        if !(optional && len == u32::MAX) {
            rest.advance((len as usize).min(rest.remaining()));
        }
    }
    (rest.remaining() == 10).then(|| Excluded {
        shard: usize::from(rest.get_u16()),
        conn: rest.get_u64(),
    })
}

/// The publication an entry carries; `None` if its payload is malformed.
pub fn publication(entry: &Entry) -> Option<Publication> {
    let mut rest = entry.payload.clone();
    let mut part = |optional: bool| -> Option<Option<Bytes>> {
        if rest.remaining() < 4 {
            return None;
        }
        let len = rest.get_u32();
        if optional && len == u32::MAX {
            return Some(None);
        }
        let len = len as usize;
        if rest.remaining() < len {
            return None;
        }
        Some(Some(rest.split_to(len)))
    };
    let data = part(false)??;
    let info = part(true)?;
    let tags = part(true)?;
    Some(Publication {
        offset: NonZeroU64::new(entry.offset),
        data,
        info,
        tags,
    })
}

impl RedisChannels {
    /// Connects to every instance of `topology` (the connections come up by themselves);
    /// each pub/sub connection hands its events to a `handler()`.
    pub fn start(
        config: &Config,
        topology: &RedisTopology,
        handler: Box<dyn Fn() -> Handler>,
    ) -> RedisChannels {
        RedisChannels {
            prefix: config.engine.redis.prefix.clone(),
            control: format!("{}.control", config.engine.redis.prefix),
            instances: RedisInstances::start(config, topology, handler),
            syncing: RefCell::default(),
            subscribers: RefCell::default(),
            errors: std::cell::Cell::new(0),
            delivered: RefCell::default(),
        }
    }

    /// Counts a failed call; its answer to the client: 100, which SDKs treat as temporary
    /// (Redis down, or the call's fate unknown: the client may try again).
    fn failed(&self, e: RedisError) -> ErrorCode {
        self.errors.set(self.errors.get() + 1);
        self.instances.note_failure(&e);
        if let RedisError::Reply(why) = e {
            eprintln!("ringcast: redis: {why}");
        }
        ErrorCode::Internal
    }

    /// Failed Redis calls since the start.
    pub fn errors(&self) -> u64 {
        self.errors.get()
    }

    /// Redis connections down now (command and pub/sub connections of every instance).
    pub fn links_down(&self) -> u64 {
        self.instances.links_down()
    }

    /// Redis dropped a pub/sub subscription by itself (its slot moved): the cluster's slot
    /// map is read again at the next check.
    pub fn subscription_dropped(&self) {
        self.instances.note_dropped();
    }

    /// Whether a cluster's slot map should be read again (`follow_cluster`).
    pub fn should_follow_cluster(&self) -> bool {
        self.instances.should_follow()
    }

    /// Reads a cluster's slot map again and follows it; true if a slot changed master (the
    /// caller checks the streams it tracks: a moved subscription may have missed some).
    pub async fn follow_cluster(&self) -> bool {
        self.instances.follow_cluster().await
    }

    fn instance(&self, channel: &str) -> Rc<Instance> {
        self.instances.of_channel(channel)
    }

    /// Writes (or renews) this node's presence `items` in `channel`.
    pub async fn presence_add(
        &self,
        channel: &str,
        items: &[PresenceItem],
        ttl_secs: u64,
    ) -> Result<(), ErrorCode> {
        let entries: Vec<Present> = items.iter().map(present).collect();
        self.instance(channel)
            .presences
            .add(channel, &entries, ttl_secs, crate::clock::unix_secs())
            .await
            .map_err(|e| self.failed(e))
    }

    pub async fn presence_remove(&self, channel: &str, client: ClientId) -> Result<(), ErrorCode> {
        self.instance(channel)
            .presences
            .remove(channel, &client.to_string())
            .await
            .map_err(|e| self.failed(e))
    }

    /// Every node's live entries in `channel`.
    pub async fn presence(&self, channel: &str) -> Result<Vec<PresenceItem>, ErrorCode> {
        let entries = self
            .instance(channel)
            .presences
            .list(channel, crate::clock::unix_secs())
            .await
            .map_err(|e| self.failed(e))?;
        Ok(entries.into_iter().filter_map(item).collect())
    }

    /// Every node's counts in `channel`.
    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, ErrorCode> {
        let (num_clients, num_users) = self
            .instance(channel)
            .presences
            .stats(channel, crate::clock::unix_secs())
            .await
            .map_err(|e| self.failed(e))?;
        Ok(PresenceStats {
            num_clients,
            num_users,
        })
    }

    /// Publishes a join or leave (`kind`, the client's ClientInfo JSON) on `channel`'s
    /// pub/sub: every node with subscribers pushes it to them, this one included.
    pub async fn publish_join_leave(
        &self,
        channel: &str,
        kind: JoinLeaveKind,
        client_info: &[u8],
    ) -> Result<(), ErrorCode> {
        let name = pubsub_channel(&self.prefix, channel);
        let mut message = Vec::with_capacity(3 + client_info.len());
        message.extend_from_slice(match kind {
            JoinLeaveKind::Join => b"!j:",
            JoinLeaveKind::Leave => b"!l:",
        });
        message.extend_from_slice(client_info);
        self.publish_message(&self.instance(channel), name.as_bytes(), &message)
            .await
    }

    /// PUBLISH (SPUBLISH in a cluster) `message` on the pub/sub channel `name` of
    /// `instance`, outside any stream.
    async fn publish_message(
        &self,
        instance: &Instance,
        name: &[u8],
        message: &[u8],
    ) -> Result<(), ErrorCode> {
        let command = self.instances.mode().publish().as_bytes();
        instance
            .streams
            .connection()
            .call(&[command, name, message])
            .await
            .map(drop)
            .map_err(|e| self.failed(e))
    }

    /// The node-wide control channel.
    pub fn control_channel(&self) -> &str {
        &self.control
    }

    /// The instance of the control channel (every node publishes and listens there).
    fn control_instance(&self) -> Rc<Instance> {
        self.instances.of(self.control.as_bytes(), &self.control)
    }

    /// Publishes `message` on the control channel.
    pub async fn publish_control(&self, message: &[u8]) -> Result<(), ErrorCode> {
        self.publish_message(&self.control_instance(), self.control.as_bytes(), message)
            .await
    }

    /// Listens on the control channel (one shard of the node does).
    pub async fn listen_control(&self) -> Result<(), ErrorCode> {
        self.control_instance()
            .pubsub
            .subscribe(self.control.as_bytes())
            .await
            .map_err(|e| self.failed(e))
    }

    /// The channel a pub/sub message came on.
    pub fn channel_of<'a>(&self, pubsub: &'a [u8]) -> Option<&'a str> {
        channel_of_pubsub(&self.prefix, pubsub)
    }

    /// How `channel`'s publications are kept (`None`: not a channel of any namespace).
    pub fn policy(&self, options: &ChannelOptions, skip_history: bool) -> StreamPolicy {
        StreamPolicy {
            size: if options.history() && !skip_history {
                options.history_size as u64
            } else {
                0
            },
            ttl_secs: options.history_ttl.as_millis().div_ceil(1000),
            meta_ttl_secs: options.history_meta_ttl.as_millis().div_ceil(1000),
        }
    }

    /// Which instance keeps `channel` (an index for `publish_batch`).
    pub fn instance_of(&self, channel: &str) -> usize {
        self.instances.route_channel(channel)
    }

    /// Publishes one payload to `channels` (all on instance `instance`, all with history and
    /// `policy`) in one script call; their positions in order.
    pub async fn publish_batch(
        &self,
        instance: usize,
        channels: &[&str],
        payload: &[u8],
        policy: StreamPolicy,
    ) -> Result<Vec<(NonZeroU64, Arc<str>)>, ErrorCode> {
        let candidate = crate::rand::fast_epoch().map_err(|_| ErrorCode::Internal)?;
        // Let go meanwhile (a cluster's map changed): the client tries again.
        let instance = self.instances.get(instance).ok_or(ErrorCode::Internal)?;
        let positions = instance
            .streams
            .publish_many(channels, payload, policy, &candidate)
            .await
            .map_err(|e| self.failed(e))?;
        positions
            .into_iter()
            .map(|p| {
                let offset = NonZeroU64::new(p.offset).ok_or(ErrorCode::Internal)?;
                Ok((offset, Arc::from(p.epoch)))
            })
            .collect()
    }

    /// Publishes in one step in the channel's Redis: offset, history, pub/sub.
    pub async fn publish(
        &self,
        channel: &str,
        payload: &[u8],
        options: &ChannelOptions,
        skip_history: bool,
        idempotency_key: Option<&str>,
    ) -> Result<Option<(NonZeroU64, Arc<str>)>, ErrorCode> {
        let policy = self.policy(options, skip_history);
        let candidate = crate::rand::fast_epoch().map_err(|_| ErrorCode::Internal)?;
        let position = self
            .instance(channel)
            .streams
            .publish(
                channel,
                payload,
                policy,
                &candidate,
                idempotency_key.map(|k| (k, IDEMPOTENCY_WINDOW_MS / 1000)),
            )
            .await
            .map_err(|e| self.failed(e))?;
        Ok(NonZeroU64::new(position.offset).map(|o| (o, Arc::from(position.epoch))))
    }

    /// Subscribes this node to `channel`'s pub/sub; resolves once Redis confirmed it.
    pub async fn subscribe(&self, channel: &str) -> Result<(), ErrorCode> {
        let name = pubsub_channel(&self.prefix, channel);
        self.instance(channel)
            .pubsub
            .subscribe(name.as_bytes())
            .await
            .map_err(|e| self.failed(e))
    }

    /// This node no longer wants `channel`'s publications.
    pub fn unsubscribe(&self, channel: &str) {
        let name = pubsub_channel(&self.prefix, channel);
        self.instance(channel).pubsub.unsubscribe(name.as_bytes());
    }

    /// The stream's position and what follows `from` (at most `limit`, 0: all kept).
    pub async fn read(
        &self,
        channel: &str,
        from: u64,
        limit: usize,
        options: &ChannelOptions,
    ) -> Result<History, ErrorCode> {
        let candidate = crate::rand::fast_epoch().map_err(|_| ErrorCode::Internal)?;
        let meta_ttl = options.history_meta_ttl.as_millis().div_ceil(1000);
        self.instance(channel)
            .streams
            .history(channel, from, limit, &candidate, meta_ttl)
            .await
            .map_err(|e| self.failed(e))
    }

    /// Registers `shard` as having subscribers of `channel`.
    pub fn add_subscriber(&self, channel: &Arc<str>, shard: usize) {
        self.subscribers
            .borrow_mut()
            .entry(channel.clone())
            .or_default()
            .insert(shard);
    }

    /// `shard` has no subscriber of `channel` any more; with none left on the node (and no
    /// step waiting) the node leaves the channel's pub/sub.
    pub fn remove_subscriber(&self, channel: &str, shard: usize) {
        let mut subscribers = self.subscribers.borrow_mut();
        if let Some(set) = subscribers.get_mut(channel) {
            set.remove(shard);
            if set.is_empty() {
                subscribers.remove(channel);
            }
        }
        let wanted =
            subscribers.contains_key(channel) || self.syncing.borrow().contains_key(channel);
        drop(subscribers);
        if !wanted {
            self.delivered.borrow_mut().remove(channel);
            self.unsubscribe(channel);
        }
    }

    /// The shards with subscribers of `channel` on this node.
    pub fn subscribers(&self, channel: &str) -> ShardSet {
        self.subscribers
            .borrow()
            .get(channel)
            .copied()
            .unwrap_or_default()
    }

    /// The channel's name as this node keeps it (shared, not copied per publication) and
    /// its shards with subscribers; `None` if it has none here.
    pub fn subscribed(&self, channel: &str) -> Option<(Arc<str>, ShardSet)> {
        self.subscribers
            .borrow()
            .get_key_value(channel)
            .map(|(name, shards)| (name.clone(), *shards))
    }

    /// Where a publication at (`epoch`, `offset`) stands against what this node delivered on
    /// `channel`; a delivered or lost one becomes the new position.
    pub fn arrival(&self, channel: &str, epoch: &str, offset: u64) -> Arrival {
        if offset == 0 {
            return Arrival::Deliver;
        }
        let mut delivered = self.delivered.borrow_mut();
        let Some((known, last)) = delivered.get_mut(channel) else {
            delivered.insert(Arc::from(channel), (Arc::from(epoch), offset));
            return Arrival::Deliver;
        };
        if **known == *epoch && offset <= *last {
            return Arrival::Duplicate;
        }
        let follows = **known == *epoch && offset == *last + 1;
        *known = Arc::from(epoch);
        *last = offset;
        if follows {
            Arrival::Deliver
        } else {
            Arrival::Lost
        }
    }

    /// A subscription step read the stream at (`epoch`, `offset`): the position this node
    /// delivers from, unless it tracks one of the same epoch already. True if it tracked
    /// another epoch: the subscribers from before must recover.
    pub fn note_position(&self, channel: &Arc<str>, epoch: &Arc<str>, offset: u64) -> bool {
        let mut delivered = self.delivered.borrow_mut();
        match delivered.get_mut(channel) {
            None => {
                delivered.insert(channel.clone(), (epoch.clone(), offset));
                false
            }
            Some((known, _)) if *known == *epoch => false,
            Some(position) => {
                *position = (epoch.clone(), offset);
                true
            }
        }
    }

    /// Where this node's delivery of `channel` stands, if it tracks it.
    pub fn position(&self, channel: &str) -> Option<(Arc<str>, u64)> {
        self.delivered.borrow().get(channel).cloned()
    }

    /// This node delivers `channel` from (`epoch`, `offset`) on, whatever it delivered
    /// before (a check found the stream elsewhere).
    pub fn reset_position(&self, channel: &Arc<str>, epoch: &str, offset: u64) {
        self.delivered
            .borrow_mut()
            .insert(channel.clone(), (Arc::from(epoch), offset));
    }

    /// The channels whose positions this node tracks.
    pub fn tracked(&self) -> Vec<(Arc<str>, Arc<str>, u64)> {
        self.delivered
            .borrow()
            .iter()
            .map(|(c, (e, o))| (c.clone(), e.clone(), *o))
            .collect()
    }

    /// Channels with subscribers on this node, among those this shard owns.
    pub fn channels(&self) -> usize {
        self.subscribers.borrow().len()
    }

    /// A subscription step on `channel` begins waiting for Redis: publications arriving from
    /// now on are kept for it.
    pub fn begin_sync(&self, channel: &Arc<str>) {
        let mut syncing = self.syncing.borrow_mut();
        let state = syncing.entry(channel.clone()).or_default();
        state.steps += 1;
        if state.steps == 1 {
            state.arrived = Some(Vec::new());
        }
    }

    /// A publication arrived from pub/sub: kept if steps on its channel wait.
    pub fn arrived(&self, channel: &str, offset: u64, publication: &Publication) {
        let mut syncing = self.syncing.borrow_mut();
        let Some(state) = syncing.get_mut(channel) else {
            return;
        };
        if let Some(arrived) = state.arrived.as_mut() {
            if arrived.len() >= REDIS_SYNC_BUFFER_MAX {
                state.arrived = None;
            } else {
                arrived.push((offset, publication.clone()));
            }
        }
    }

    /// A step on `channel` ends: what arrived after `after`, in order; `None` if too much
    /// arrived to keep.
    pub fn end_sync(&self, channel: &str, after: u64) -> Option<Vec<Publication>> {
        let mut syncing = self.syncing.borrow_mut();
        let state = syncing.get_mut(channel)?;
        let arrived = state.arrived.as_ref().map(|list| {
            list.iter()
                .filter(|(offset, _)| *offset > after)
                .map(|(_, p)| p.clone())
                .collect()
        });
        state.steps -= 1;
        if state.steps == 0 {
            syncing.remove(channel);
        }
        arrived
    }

    /// A step on `channel` failed (it registered nothing): the node leaves the channel's
    /// pub/sub if nothing else wants it.
    pub fn abandon_sync(&self, channel: &str) {
        let _ = self.end_sync(channel, u64::MAX);
        let wanted = self.subscribers.borrow().contains_key(channel)
            || self.syncing.borrow().contains_key(channel);
        if !wanted {
            self.unsubscribe(channel);
        }
    }
}

/// A join or a leave, as pub/sub carries it: `"!j:"` or `"!l:"` and the ClientInfo JSON (a
/// publication's message starts with a digit, so the two never mix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinLeaveKind {
    Join,
    Leave,
}

impl JoinLeaveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JoinLeaveKind::Join => "join",
            JoinLeaveKind::Leave => "leave",
        }
    }

    /// A pub/sub message that is a join or a leave: which, and the ClientInfo JSON.
    pub fn from_message(message: &[u8]) -> Option<(JoinLeaveKind, &[u8])> {
        if let Some(info) = message.strip_prefix(b"!j:") {
            return Some((JoinLeaveKind::Join, info));
        }
        message
            .strip_prefix(b"!l:")
            .map(|info| (JoinLeaveKind::Leave, info))
    }
}

/// A presence entry as Redis keeps it.
fn present(item: &PresenceItem) -> Present {
    let infos = item.infos.as_deref();
    Present {
        client: item.client.to_string(),
        user: item.user.to_string(),
        conn_info: infos
            .and_then(|i| i.conn_info.as_deref())
            .map(str::to_owned),
        chan_info: infos
            .and_then(|i| i.chan_info.as_deref())
            .map(str::to_owned),
    }
}

/// A presence entry Redis kept; `None` if its client id is not one.
fn item(present: Present) -> Option<PresenceItem> {
    let infos = (present.conn_info.is_some() || present.chan_info.is_some()).then(|| {
        Arc::new(ClientInfos {
            conn_info: present.conn_info.map(Into::into),
            chan_info: present.chan_info.map(Into::into),
        })
    });
    Some(PresenceItem {
        client: ClientId::parse(&present.client)?,
        user: Arc::from(present.user),
        infos,
    })
}

/// This process's id among the nodes (a UUID, as Centrifugo's node uids): control messages
/// it published come back to it and are skipped; `info` reports it.
pub fn node_id() -> &'static str {
    static NODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NODE.get_or_init(|| ClientId::random().unwrap_or_default().to_string())
}

/// What a node tells the others about itself on the control channel, every
/// `NODE_INFO_INTERVAL_MS` (Centrifugo's `info` fields).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerNode {
    pub uid: String,
    pub name: String,
    pub version: String,
    pub num_clients: u64,
    pub num_users: u64,
    pub num_channels: u64,
    pub num_subs: u64,
    pub uptime: u64,
}

/// The other nodes heard from lately: process-wide (shard 0 hears them, any shard answers
/// `info` and `/metrics`), read only by those rare calls, never on the message path.
fn peers_table() -> &'static std::sync::Mutex<HashMap<String, (PeerNode, std::time::Instant)>> {
    static PEERS: std::sync::OnceLock<
        std::sync::Mutex<HashMap<String, (PeerNode, std::time::Instant)>>,
    > = std::sync::OnceLock::new();
    PEERS.get_or_init(Default::default)
}

/// Another node said how it is.
pub fn note_peer(peer: PeerNode) {
    let mut peers = peers_table().lock().unwrap_or_else(|e| e.into_inner());
    peers.insert(peer.uid.clone(), (peer, std::time::Instant::now()));
}

/// The other nodes heard from within `NODE_INFO_TTL_MS`, by uid.
pub fn peers() -> Vec<PeerNode> {
    let ttl = Duration::from_millis(crate::limits::NODE_INFO_TTL_MS);
    let mut peers = peers_table().lock().unwrap_or_else(|e| e.into_inner());
    peers.retain(|_, (_, seen)| seen.elapsed() < ttl);
    let mut list: Vec<PeerNode> = peers.values().map(|(p, _)| p.clone()).collect();
    list.sort_by(|a, b| a.uid.cmp(&b.uid));
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_with_and_without_info_and_tags() {
        for (info, tags) in [
            (None, None),
            (Some(Bytes::from_static(b"{\"user\":\"u\"}")), None),
            (None, Some(Bytes::from_static(b"{\"k\":\"v\"}"))),
            (Some(Bytes::new()), Some(Bytes::new())),
        ] {
            for exclude in [
                None,
                Some(Excluded {
                    shard: 3,
                    conn: 1 << 40,
                }),
            ] {
                let payload = encode_payload(b"{\"n\":1}", info.as_ref(), tags.as_ref(), exclude);
                let entry = Entry {
                    offset: 7,
                    epoch: "e".into(),
                    payload: Bytes::from(payload),
                };
                let p = publication(&entry).unwrap();
                assert_eq!(&p.data[..], b"{\"n\":1}");
                assert_eq!(
                    (&p.info, &p.tags, p.offset),
                    (&info, &tags, NonZeroU64::new(7))
                );
                assert_eq!(excluded(&entry), exclude);
            }
        }
        let cut = Entry {
            offset: 1,
            epoch: String::new(),
            payload: Bytes::from_static(&[0, 0, 0, 9, b'x']),
        };
        assert!(publication(&cut).is_none());
    }
}
