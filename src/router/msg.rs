//! The ring vocabulary: everything one shard tells another, as plain data. Per ring, FIFO.
//!
//! ```text
//! msg        = subscribe | subscribed | unsubscribe | publish | deliver | published
//!            | history | history-answer | history-remove | history-removed | conn-answer
//!            | stats-request | stats
//! subscribe  = Subscribe   { channel, from-shard, register, ticket, recover-from? } ; → owner
//! subscribed = Subscribed  { channel, registration, ticket, (epoch, top) | error,
//!                            recovery? { recovered, offset, publication* } }     ; owner → from
//! unsubscribe= Unsubscribe { channel, from-shard }        ; the last local subscriber left
//! publish    = Publish     { (index, channel)+, data, info?, tags?, skip-history,
//!                            reply: api(shard, request) | conn(shard, conn, command) }
//! deliver    = Deliver     { channel, publication, frame } ; owner → interested shard
//! published  = Published   { request, (index, position? | error)* }     ; owner → asker
//! history    = History     { channel, limit, since?, reverse, reply: conn | api }
//! history-answer  = HistoryAnswer  { request, page | error }            ; owner → api
//! history-remove  = HistoryRemove  { channel, reply: api }              ; api → owner
//! history-removed = HistoryRemoved { request, () | error }              ; owner → api
//! conn-answer= ConnAnswer  { conn, command, history(page | error) | publish(() | error) }
//!                                                  ; owner → the connection's shard
//! stats-request = StatsRequest { request, from-shard, latencies? }
//! stats      = Stats       { request, shard, counters, latencies? }
//! presence-join  = PresenceJoin  { channel, client, user, infos?, join-leave }  ; → owner,
//!                                  once the subscriber joined on its shard
//! presence-leave = PresenceLeave { channel, client }      ; → owner, a joined subscriber left
//! join-leave = JoinLeave   { channel, frame }             ; owner → shards in the channel's set
//! presence   = Presence    { channel, kind: list | stats, reply: conn | api }   ; → owner
//! presence-answer = PresenceAnswer { request, list | stats | error }  ; owner → api
//! user-action = UserAction { action, reply: api? } ; api → every shard, for a user's connections
//! user-acted  = UserActed  { request }             ; each shard, once its connections have it
//! user-seen  = UserSeen    { user, online }       ; a shard's first/last connection → user's owner
//! user-connection = UserConnection { user, client, opened }   ; → user's owner (with a limit)
//! channels   = Channels    { pattern?, after?, limit, reply: api }   ; api → every shard
//! channels-answer = ChannelsAnswer { request, (channel, local subscribers)* } ; sorted by name
//! ```
//!
//! Large payloads are boxed so a ring slot stays small (`size_of::<ShardMsg>()` is checked in
//! a test). A `deliver` carries the transport-neutral publication and the frame most
//! connections take (JSON codec, WebSocket framing), encoded once by the owner (invariant 4);
//! a shard encodes any other (codec, framing) pair it has once per publication.

use std::num::NonZeroU64;
use std::sync::Arc;

use bytes::Bytes;

use super::ChannelList;
use crate::metrics::counters::ShardStats;
use crate::metrics::latency::Latencies;
use crate::protocol::{ClientId, ErrorCode, Publication, SubscriptionOverrides};

/// Where an answer goes: a task of shard `shard` waiting on request `request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTo {
    pub shard: usize,
    pub request: u64,
}

/// A command of a connection: its shard, its id there, the command's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnRef {
    pub shard: usize,
    pub conn: u64,
    pub command: u32,
}

/// A publication's place in its channel's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub offset: NonZeroU64,
    pub epoch: Arc<str>,
}

/// A stream's top: its epoch and last visible offset (0: nothing published yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTop {
    pub epoch: Arc<str>,
    pub offset: u64,
}

/// A publication on its way to its channels' owner.
#[derive(Debug)]
pub struct PublishJob {
    /// (index in the caller's request, channel); all owned by the receiving shard.
    pub channels: ChannelList,
    /// Raw JSON, newlines already stripped.
    pub data: Bytes,
    /// ClientInfo of a client-side publisher, raw JSON.
    pub info: Option<Bytes>,
    pub options: PublishOptions,
    /// Who waits for the outcome.
    pub reply: PublishReply,
}

/// What an API publication may ask beyond its data (a client's asks none of it).
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Tags map, raw JSON.
    pub tags: Option<Bytes>,
    /// Publish without storing in history and without an offset (API `skip_history`).
    pub skip_history: bool,
    /// An API publication's `idempotency_key`: a repeat within the owner's window publishes
    /// nothing and answers the first result.
    pub idempotency_key: Option<Box<str>>,
    /// A connection its live delivery leaves out (`exclude_client`).
    pub exclude: Option<Excluded>,
}

/// Who waits for a publish job's outcome.
#[derive(Debug, Clone, Copy)]
pub enum PublishReply {
    /// An API call: a `Published` answer with every channel's result.
    Api(ReplyTo),
    /// A client's `publish` command: its reply, sent once the publication is accepted (under
    /// `history_fsync = always`: once it is durable).
    Conn(ConnRef),
    /// Nobody (the server's own publications: user status events).
    Nobody,
}

/// What the owner answers per channel of a `PublishJob`: the stream position (`None` for a
/// publication without one, e.g. `skip_history`) or an error.
#[derive(Debug, Clone)]
pub struct Published {
    pub index: u32,
    pub result: Result<Option<Position>, ErrorCode>,
}

/// "Shard `from` subscribes to `channel`": one step on the owner (DESIGN invariant 3). The
/// owner registers the shard (if `register`), reads the recovery (if asked) and answers on
/// the same FIFO ring its later deliveries take, so the subscriber gets the recovered
/// publications and then exactly the live ones after them.
#[derive(Debug)]
pub struct SubscribeJob {
    pub channel: Arc<str>,
    pub from: usize,
    /// Add `from` to the channel's shard set (its first local subscriber).
    pub register: bool,
    /// Echoed back: which waiting subscribers of `from` the answer is for.
    pub ticket: u32,
    /// Recover publications after this position.
    pub recover: Option<RecoverFrom>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RecoverFrom {
    pub offset: u64,
    pub epoch: Box<str>,
}

/// The owner's answer to a `SubscribeJob`.
#[derive(Debug)]
pub struct SubscribeAnswer {
    pub channel: Arc<str>,
    /// The job asked to register the shard.
    pub registration: bool,
    pub ticket: u32,
    /// The stream position subscribers start from, or an error.
    pub result: Result<StreamTop, ErrorCode>,
    pub recovery: Option<Recovery>,
}

#[derive(Debug)]
pub struct Recovery {
    pub recovered: bool,
    /// The offset the reply reports: the client's own when recovered (it advances through
    /// the publications), else the stream top.
    pub offset: u64,
    /// The missed publications (empty when not recovered).
    pub publications: Vec<Publication>,
}

/// A `history` query: client command or API call.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub limit: i32,
    pub since: Option<(u64, Box<str>)>,
    pub reverse: bool,
}

impl HistoryQuery {
    /// Publications to return: 0 (position only), `max` for a negative limit, else the limit
    /// up to `max` (`client.history_max_publication_limit`).
    pub fn limit_up_to(&self, max: usize) -> usize {
        match self.limit {
            0 => 0,
            l if l < 0 => max,
            l => (l as usize).min(max),
        }
    }
}

/// Where a history answer goes.
#[derive(Debug, Clone, Copy)]
pub enum HistoryReplyTo {
    /// A client's `history` command: a `ConnAnswer` to its connection.
    Conn(ConnRef),
    /// An API call waiting on a shard.
    Api(ReplyTo),
}

#[derive(Debug)]
pub struct HistoryJob {
    pub channel: Arc<str>,
    pub query: HistoryQuery,
    pub reply: HistoryReplyTo,
}

/// A history result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    pub publications: Vec<Publication>,
    pub epoch: Arc<str>,
    /// The stream's top offset.
    pub offset: u64,
}

/// One publication for the local subscribers of its channel: the transport-neutral
/// publication and its frame in the common (JSON, WebSocket) form, encoded once.
#[derive(Debug)]
pub struct Delivery {
    pub channel: Arc<str>,
    pub publication: Publication,
    pub frame: Bytes,
    /// A connection left out (the API's `exclude_client`).
    pub exclude: Option<Excluded>,
}

/// A connection a publication's live delivery leaves out (the API's `exclude_client`; its
/// history record is unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Excluded {
    pub shard: usize,
    pub conn: u64,
}

/// What a presence entry tells beyond the client's id and user: the connection token's
/// `info` and the subscription's, raw JSON (shared, never copied per query).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientInfos {
    pub conn_info: Option<Box<str>>,
    pub chan_info: Option<Box<str>>,
}

/// One client in a channel's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceItem {
    pub client: ClientId,
    pub user: Arc<str>,
    pub infos: Option<Arc<ClientInfos>>,
}

/// A subscriber joined on its shard: its presence entry for the channel's owner.
#[derive(Debug)]
pub struct PresenceJoin {
    pub channel: Arc<str>,
    pub item: PresenceItem,
    /// The channel announces its joins and leaves (`join_leave`).
    pub join_leave: bool,
}

/// A presence query (client command or API call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceKind {
    /// Every entry (`presence`).
    List,
    /// The counts (`presence_stats`).
    Stats,
}

/// Where a presence answer goes.
#[derive(Debug, Clone, Copy)]
pub enum PresenceReplyTo {
    Conn(ConnRef),
    Api(ReplyTo),
}

#[derive(Debug)]
pub struct PresenceJob {
    pub channel: Arc<str>,
    pub kind: PresenceKind,
    pub reply: PresenceReplyTo,
}

/// A channel's presence counts: entries, and distinct users among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PresenceStats {
    pub num_clients: u32,
    pub num_users: u32,
}

/// The owner's answer to a presence query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceAnswer {
    List(Vec<PresenceItem>),
    Stats(PresenceStats),
}

/// A join or leave push for the subscribers of `channel` that take them, its frame (JSON,
/// WebSocket) encoded once by the owner.
#[derive(Debug)]
pub struct JoinLeave {
    pub channel: Arc<str>,
    pub frame: Bytes,
}

/// The API's `client` filter of a user action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ClientFilter {
    /// Every connection of the user.
    Any,
    /// Only this one.
    Only(ClientId),
    /// None: the `client` given is no client id this server makes.
    Nobody,
}

impl ClientFilter {
    pub fn admits(self, client: ClientId) -> bool {
        match self {
            ClientFilter::Any => true,
            ClientFilter::Only(only) => only == client,
            ClientFilter::Nobody => false,
        }
    }
}

/// A server API action on a user's connections (`disconnect`, `subscribe`, `unsubscribe`,
/// `refresh`): every shard hands it to each connection of the user, which applies it when
/// its filters match.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct UserAction {
    pub user: Box<str>,
    /// Which of the user's connections (API `client`).
    pub client: ClientFilter,
    /// Only the connections of this session (API `session`; no ringcast connection has a
    /// session id, so a session matches none).
    pub session: Option<Box<str>>,
    pub kind: UserActionKind,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum UserActionKind {
    /// Close with `code` and `reason`, except the clients in `whitelist` (ids that are no
    /// client id of this server's are left out: they name no connection).
    Disconnect {
        code: u16,
        reason: Box<str>,
        whitelist: Vec<ClientId>,
    },
    Subscribe(ServerSubscribe),
    /// End the subscription with the unsubscribe push 2000.
    Unsubscribe {
        channel: Box<str>,
    },
    /// `expired`: close with 3005; else a new expiry (`expire_at`, unix seconds; `None`: none)
    /// and connection info.
    Refresh {
        expired: bool,
        expire_at: Option<u64>,
        info: Option<Box<str>>,
    },
}

/// A server-side subscription the API makes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ServerSubscribe {
    pub channel: Box<str>,
    /// Channel info of the subscription (raw JSON).
    pub info: Option<Box<str>>,
    /// Data for the subscribe push (raw JSON).
    pub data: Option<Box<str>>,
    pub recover_since: Option<RecoverFrom>,
    /// Unix seconds at which the subscription expires (it is not refreshed: the client then
    /// gets the 2501 unsubscribe).
    pub expire_at: Option<u64>,
    pub overrides: SubscriptionOverrides,
}

/// The API's `channels`: every shard lists its channels with local subscribers.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ChannelsQuery {
    /// A glob the names must match (none: all).
    pub pattern: Option<Box<str>>,
    /// Only names after this one (the page's cursor).
    pub after: Option<Box<str>>,
    /// At most this many names, the first in byte order.
    pub limit: usize,
}

/// The owner's answer to a command of a connection on another shard (or its own).
#[derive(Debug)]
pub enum ConnAnswer {
    History(Result<HistoryPage, ErrorCode>),
    Publish(Result<(), ErrorCode>),
    Presence(Result<PresenceAnswer, ErrorCode>),
}

/// Everything that crosses a ring.
#[derive(Debug)]
pub enum ShardMsg {
    Subscribe(Box<SubscribeJob>),
    /// The owner's answer, on the ring its deliveries take.
    Subscribed(Box<SubscribeAnswer>),
    /// Shard `from` lost its last local subscriber of `channel` (to the owner).
    Unsubscribe {
        channel: Arc<str>,
        from: usize,
    },
    /// Publications for channels the receiver owns.
    Publish(Box<PublishJob>),
    /// A publication for the receiver's local subscribers (from the owner, in offset order).
    Deliver(Arc<Delivery>),
    /// A history query for the owner.
    History(Box<HistoryJob>),
    /// The owner's answer to an API history query.
    HistoryAnswer {
        request: u64,
        result: Box<Result<HistoryPage, ErrorCode>>,
    },
    /// Removes a channel's stored publications (API `history_remove`).
    HistoryRemove {
        channel: Arc<str>,
        reply: ReplyTo,
    },
    HistoryRemoved {
        request: u64,
        result: Result<(), ErrorCode>,
    },
    /// An answer for command `command` of connection `conn` of the receiving shard.
    ConnAnswer {
        conn: u64,
        command: u32,
        answer: Box<ConnAnswer>,
    },
    /// The owner's answer to a `PublishJob` with an API reply.
    Published {
        request: u64,
        results: Vec<Published>,
    },
    /// Redis engine: the owner lost track of `channel`'s stream; the receiver disconnects its
    /// subscribers (3010) so they recover from the stream.
    Resync {
        channel: Arc<str>,
    },
    /// Asks for the receiver's counters (and its latencies, for a scrape).
    StatsRequest {
        request: u64,
        from: usize,
        latencies: bool,
    },
    Stats {
        request: u64,
        shard: usize,
        stats: Box<ShardStats>,
        latencies: Option<Box<Latencies>>,
    },
    /// A subscriber's presence entry, for the channel's owner.
    PresenceJoin(Box<PresenceJoin>),
    /// A joined subscriber left (to the owner).
    PresenceLeave {
        channel: Arc<str>,
        client: Box<ClientId>,
    },
    /// A join or leave push for the receiver's subscribers that take them.
    JoinLeave(Arc<JoinLeave>),
    /// A presence query for the owner.
    Presence(Box<PresenceJob>),
    /// The owner's answer to an API presence query.
    PresenceAnswer {
        request: u64,
        result: Box<Result<PresenceAnswer, ErrorCode>>,
    },
    /// A server API action for the receiver's connections of a user.
    UserAction {
        action: Arc<UserAction>,
        /// Who waits for every shard to have acted (none: nobody waits).
        reply: Option<ReplyTo>,
    },
    /// The receiver handed a `UserAction` to its connections of the user.
    UserActed {
        request: u64,
    },
    /// The sender's first connection of `user` opened (`online`), or its last closed: for
    /// the user's owner shard.
    UserSeen {
        user: Arc<str>,
        online: bool,
    },
    /// A connection of `user` opened (`opened`) or closed, for the user's owner counting the
    /// node's connections per user (sent only with `client.user_connection_limit`).
    UserConnection {
        user: Arc<str>,
        client: Box<ClientId>,
        opened: bool,
    },
    /// Lists the receiver's channels with local subscribers.
    Channels {
        query: Arc<ChannelsQuery>,
        reply: ReplyTo,
    },
    ChannelsAnswer {
        request: u64,
        channels: Vec<(Arc<str>, u32)>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_slot_stays_small() {
        // Every ring holds RING_CAPACITY_MESSAGES of these by value.
        assert!(
            std::mem::size_of::<ShardMsg>() <= 40,
            "{}",
            std::mem::size_of::<ShardMsg>()
        );
    }
}
