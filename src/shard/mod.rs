//! `Shard`: everything one core owns (DESIGN invariant 1) and the loops that drive it. Sessions
//! and the server API call it to subscribe, publish and query; it routes each call to the
//! channel's owner (`route`: a local call or a ring message, one path), waits for typed answers
//! from other shards (`ask`), and applies what other shards send (`handle`). The pieces:
//! `subscribe`, `publish`, `history` (the three kinds of channel work), `durability` (syncs
//! and retention), `intake` (node-wide backpressure), `pending_logs` (work waiting for a
//! partition's log, created off the shard), `stats`, `ring_loop`, `ticker` with its wheel
//! `deadlines`.
//!
//! Imports `engine`, `fanout`, `router`, `metrics`, `protocol`, `config` and the leaves.
//! Shared within the shard through `Rc<Shard>`; every `RefCell` borrow ends before an await
//! and before a call that may come back into the shard (`to_shard` to itself).

mod admission;
mod ask;
mod channels;
mod deadlines;
mod drain;
mod durability;
mod history;
mod idempotency;
mod intake;
mod online;
mod pending_logs;
mod presence;
mod publish;
mod redis;
mod ring_loop;
mod route;
mod stats;
mod subscribe;
mod ticker;
mod users;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use crate::clock::{Millis, ThrottledLog};
use crate::config::Config;
use crate::engine::Engine;
use crate::fanout::{Hub, Outbound, Registry};
use crate::limits::{HTTP_BODY_READ_BYTES, LOG_REPEAT_INTERVAL_MS, PARTITIONS};
use crate::metrics::counters::{ShardStats, BROADCAST_BUCKETS};
use crate::metrics::latency::Latencies;
use crate::protocol::json::encode;
use crate::protocol::{ClientId, Codec, ErrorCode, Refusal};
use crate::router::msg::{ConnAnswer, HistoryPage, PresenceAnswer, Published};
use crate::router::{Lifecycle, Outbox, ShardMsg};

use ask::Asks;
use deadlines::Deadlines;
use pending_logs::PendingLogs;
use publish::Held;
use ticker::Timeouts;

pub use admission::TokenBucket;
pub use channels::{ChannelsAsk, ChannelsPage};
pub use drain::ApiInFlight;
pub use history::{HistoryAsk, RemoveAsk};
pub use presence::{client_info, PresenceAsk};
pub use publish::PublishSent;
pub use stats::StatsAsk;
pub use users::{Directive, UserAsk};

/// Where a message handed to `Shard::handle` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// This shard, by a call.
    Local,
    /// Another shard, over the ring.
    Ring,
}

pub struct Shard {
    /// This shard itself, for the tasks it starts (set in Redis mode).
    me: std::cell::OnceCell<std::rc::Weak<Shard>>,
    /// The Redis side, with `engine.type = "redis"`.
    redis: std::cell::OnceCell<crate::engine::redis::RedisChannels>,
    pub id: usize,
    pub count: usize,
    pub config: Config,
    pub started: Instant,
    hub: RefCell<Hub>,
    registry: RefCell<Registry>,
    /// The connections by the tick of their next deadline (`ticker`).
    deadlines: RefCell<Deadlines>,
    timeouts: Timeouts,
    engine: RefCell<Box<dyn Engine>>,
    outbox: RefCell<Outbox>,
    /// Tasks of this shard waiting for other shards' answers, one table per answer type.
    published: Asks<Vec<Published>>,
    histories: Asks<Result<HistoryPage, ErrorCode>>,
    removals: Asks<Result<(), ErrorCode>>,
    stats: Asks<(usize, ShardStats, Option<Box<Latencies>>)>,
    /// How long client commands and API methods took here.
    latencies: RefCell<Latencies>,
    presences: Asks<Result<PresenceAnswer, ErrorCode>>,
    user_acts: Asks<()>,
    /// The users this shard owns that are online somewhere on the node.
    online: RefCell<online::OnlineUsers>,
    channel_lists: Asks<Vec<(Arc<str>, u32)>>,
    /// Server API actions waiting for their connections (`users`), by connection id.
    directives: RefCell<HashMap<u64, Vec<Directive>>>,
    /// API user actions waiting for this shard's connections to apply them.
    acks: RefCell<users::Acks>,
    /// Presence joins not recorded: their channel was full (`PRESENCE_CHANNEL_ENTRIES_MAX`).
    presence_full: Cell<u64>,
    /// History sync jobs run.
    history_syncs: Cell<u64>,
    /// Publications waiting for a sync (`history_fsync = always`), oldest first.
    held: RefCell<VecDeque<Held>>,
    /// Results of API publications with an `idempotency_key`, for the channels this shard owns.
    idempotent: RefCell<idempotency::IdempotentResults>,
    /// Rung when `held` gains an entry; the syncer coalesces rings.
    sync_bell: LocalSender<()>,
    sync_bell_rx: RefCell<Option<LocalReceiver<()>>>,
    /// Connections that stopped reading because the node is congested.
    room_waiters: RefCell<Vec<Rc<Outbound>>>,
    /// Engine work waiting for partition logs being created off the shard.
    pending_logs: RefCell<PendingLogs>,
    /// Partitions whose logs to create, for `run_log_creator`.
    log_requests: LocalSender<u32>,
    log_requests_rx: RefCell<Option<LocalReceiver<u32>>>,
    /// The upgrade's checks: origins, this shard's share of the connection limits.
    admission: admission::Admission,
    /// Serving or draining: the process's state, shared with every shard.
    lifecycle: Lifecycle,
    /// The ticker rang `drain_bell` (once).
    drain_rung: Cell<bool>,
    drain_bell: LocalSender<()>,
    drain_bell_rx: RefCell<Option<LocalReceiver<()>>>,
    /// API requests being answered (the drain waits for them).
    api_requests: Cell<usize>,
    /// WebSocket connections registered since the start.
    connections_accepted: Cell<u64>,
    /// Each connection's command rate, with `client.command_rate_limit` (kept here, not in the
    /// connection: nothing for any connection when there is no limit).
    command_rates: RefCell<HashMap<u64, TokenBucket>>,
    /// Connections refused before a session (origin, limits, PROXY header): logged with the
    /// client's address, at most every `LOG_REPEAT_INTERVAL_MS` per reason (by
    /// `Refusal::index`).
    refusal_logs: RefCell<Vec<ThrottledLog>>,
    hooks: TestHooks,
    next_connection: Cell<u64>,
    messages_in: Cell<u64>,
    /// Bytes WebSocket connections read and wrote.
    bytes_in: Cell<u64>,
    bytes_out: Cell<u64>,
    /// `/api/broadcast` calls by size (`BROADCAST_BUCKETS`), and their channels.
    broadcasts: Cell<[u64; BROADCAST_BUCKETS.len() + 1]>,
    broadcast_channels: Cell<u64>,
    /// Connects and commands refused, by `Refusal::index`.
    refusals: Cell<[u64; Refusal::ALL.len()]>,
    publications: Cell<u64>,
    /// The read buffer of the shard's HTTP connections, borrowed only inside a poll, so a
    /// connection's own buffer holds what arrived and no more.
    pub read_buffer: RefCell<Box<[u8]>>,
}

/// Where a shard's connection ids start: a random point in the lower half of the 48 bits a
/// client id holds (`ClientId::for_connection`), so an id kept from before a restart almost
/// never names a connection of this run (API `exclude_client` trusts the id's connection part),
/// and 2^47 connections fit after it.
fn first_connection_id() -> u64 {
    let bytes = crate::rand::fast_bytes::<8>().unwrap_or_default();
    u64::from_le_bytes(bytes) & ((1 << 47) - 1)
}

/// Faults the tests inject through the environment.
#[derive(Debug, Default)]
struct TestHooks {
    /// `RINGCAST_TEST_FAIL_SYNC=1`: every history sync fails.
    fail_syncs: bool,
    /// `RINGCAST_TEST_PANIC_CHANNEL=<name>`: publishing to that channel panics on its owner
    /// (the crash-only test).
    panic_channel: Option<String>,
    /// `RINGCAST_TEST_LOG_GATE=<path>`: creating a partition's log waits until that file
    /// exists (at most `TEST_LOG_GATE_WAIT_MS`), so a test can hold a creation open.
    log_gate: Option<std::path::PathBuf>,
}

impl TestHooks {
    fn from_env() -> Self {
        TestHooks {
            fail_syncs: std::env::var_os("RINGCAST_TEST_FAIL_SYNC").is_some_and(|v| v == "1"),
            panic_channel: std::env::var("RINGCAST_TEST_PANIC_CHANNEL").ok(),
            log_gate: std::env::var_os("RINGCAST_TEST_LOG_GATE").map(Into::into),
        }
    }
}

impl Shard {
    pub fn new(
        id: usize,
        count: usize,
        config: Config,
        engine: Box<dyn Engine>,
        outbox: Outbox,
        lifecycle: Lifecycle,
    ) -> Self {
        let (sync_bell, sync_bell_rx) = local_channel::new_bounded(1);
        let (drain_bell, drain_bell_rx) = local_channel::new_bounded(1);
        // Each partition is asked for at most once at a time.
        let (log_requests, log_requests_rx) = local_channel::new_bounded(PARTITIONS as usize);
        let timeouts = Timeouts::of(&config);
        Shard {
            me: std::cell::OnceCell::new(),
            redis: std::cell::OnceCell::new(),
            id,
            count,
            started: Instant::now(),
            hub: RefCell::new(Hub::default()),
            registry: RefCell::new(Registry::default()),
            deadlines: RefCell::new(Deadlines::new(timeouts.tick, Millis::now())),
            timeouts,
            engine: RefCell::new(engine),
            outbox: RefCell::new(outbox),
            published: Asks::default(),
            histories: Asks::default(),
            removals: Asks::default(),
            stats: Asks::default(),
            latencies: RefCell::new(Latencies::default()),
            presences: Asks::default(),
            user_acts: Asks::default(),
            online: RefCell::default(),
            channel_lists: Asks::default(),
            directives: RefCell::default(),
            acks: RefCell::default(),
            presence_full: Cell::new(0),
            history_syncs: Cell::new(0),
            held: RefCell::new(VecDeque::new()),
            idempotent: RefCell::default(),
            sync_bell,
            sync_bell_rx: RefCell::new(Some(sync_bell_rx)),
            room_waiters: RefCell::new(Vec::new()),
            pending_logs: RefCell::new(PendingLogs::default()),
            log_requests,
            log_requests_rx: RefCell::new(Some(log_requests_rx)),
            admission: admission::Admission::new(&config, count),
            lifecycle,
            drain_rung: Cell::new(false),
            drain_bell,
            drain_bell_rx: RefCell::new(Some(drain_bell_rx)),
            api_requests: Cell::new(0),
            connections_accepted: Cell::new(0),
            command_rates: RefCell::default(),
            refusal_logs: RefCell::new(
                Refusal::ALL
                    .iter()
                    .map(|_| {
                        ThrottledLog::new(std::time::Duration::from_millis(LOG_REPEAT_INTERVAL_MS))
                    })
                    .collect(),
            ),
            hooks: TestHooks::from_env(),
            next_connection: Cell::new(first_connection_id()),
            messages_in: Cell::new(0),
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
            broadcasts: Cell::new([0; BROADCAST_BUCKETS.len() + 1]),
            broadcast_channels: Cell::new(0),
            refusals: Cell::new([0; Refusal::ALL.len()]),
            publications: Cell::new(0),
            read_buffer: RefCell::new(vec![0; HTTP_BODY_READ_BYTES].into_boxed_slice()),
            config,
        }
    }

    /// A new connection's id: sequential from a random start (see `first_connection_id`).
    pub fn next_connection_id(&self) -> u64 {
        let id = self.next_connection.get();
        debug_assert!(id < 1 << 48, "a client id holds 48 bits of it");
        self.next_connection.set(id + 1);
        id
    }

    pub fn count_message_in(&self) {
        self.messages_in.set(self.messages_in.get() + 1);
    }

    /// Counts bytes a WebSocket connection's socket read (`read`) or wrote.
    pub fn count_bytes(&self, read: usize, written: usize) {
        self.bytes_in.set(self.bytes_in.get() + read as u64);
        self.bytes_out.set(self.bytes_out.get() + written as u64);
    }

    /// Counts an `/api/broadcast` to `channels` channels.
    pub fn count_broadcast(&self, channels: usize) {
        let channels = channels as u64;
        let bucket = BROADCAST_BUCKETS
            .iter()
            .position(|&le| channels <= le)
            .unwrap_or(BROADCAST_BUCKETS.len());
        let mut counts = self.broadcasts.get();
        counts[bucket] += 1;
        self.broadcasts.set(counts);
        self.broadcast_channels
            .set(self.broadcast_channels.get() + channels);
    }

    /// Counts a refused connect or command.
    pub fn count_refusal(&self, refusal: Refusal) {
        let mut counts = self.refusals.get();
        counts[refusal.index()] += 1;
        self.refusals.set(counts);
    }

    /// Counts a connection refused before it had a session and logs it with the client's
    /// address (throttled).
    pub fn refuse_connection(&self, refusal: Refusal, peer: Option<std::net::SocketAddr>) {
        self.count_refusal(refusal);
        let id = self.id;
        self.refusal_logs.borrow_mut()[refusal.index()].write(|| match peer {
            Some(peer) => format!(
                "ringcast: shard {id}: refused a connection from {peer}: {}",
                refusal.as_str()
            ),
            None => format!(
                "ringcast: shard {id}: refused a connection: {}",
                refusal.as_str()
            ),
        });
    }

    /// Whether connection `conn` may run a command now (`client.command_rate_limit`: a bucket
    /// of that many, refilled as many a second).
    pub fn take_command(&self, conn: u64) -> bool {
        let limit = self.config.client.command_rate_limit;
        if limit == 0 {
            return true;
        }
        self.command_rates
            .borrow_mut()
            .entry(conn)
            .or_insert_with(|| TokenBucket::new(limit))
            .take(Millis::now())
    }

    /// Refusals counted so far, by `Refusal::index`.
    pub fn refusals(&self) -> [u64; Refusal::ALL.len()] {
        self.refusals.get()
    }

    /// A new connection of this shard.
    pub fn register_connection(&self, conn: Rc<Outbound>) {
        self.connections_accepted
            .set(self.connections_accepted.get() + 1);
        self.watch_deadlines(&conn);
        self.registry.borrow_mut().register(conn);
    }

    pub fn unregister_connection(&self, id: u64) {
        self.registry.borrow_mut().unregister(id);
        // Actions that came while it closed.
        self.drop_directives(id);
        self.command_rates.borrow_mut().remove(&id);
    }

    /// Connection `conn` (client `client`) connected as `user` (the session's name, shared
    /// with the registry and the user's owner).
    pub fn add_user(&self, user: &Arc<str>, conn: u64, client: ClientId) {
        let first = self.registry.borrow_mut().add_user(user, conn);
        if first {
            self.announce_user(user, true);
        }
        self.count_user_connection(user, client, true);
    }

    pub fn remove_user(&self, user: &Arc<str>, conn: u64, client: ClientId) {
        let last = self.registry.borrow_mut().remove_user(user, conn);
        if last {
            self.announce_user(user, false);
        }
        self.count_user_connection(user, client, false);
    }

    /// How many connections `user` has on this shard.
    pub fn user_connections_here(&self, user: &str) -> usize {
        self.registry.borrow().user_connection_count(user)
    }

    /// True if connection `conn` is subscribed to `channel` (or waiting to be).
    pub fn is_member(&self, channel: &str, conn: u64) -> bool {
        self.hub.borrow().is_member(channel, conn)
    }

    /// Applies one message, from this shard or another (engine work that needs a partition's
    /// log waits for it in `pending_logs`).
    fn handle(&self, msg: ShardMsg, origin: Origin) {
        let Some(msg) = self.hold_for_logs(msg, origin) else {
            return;
        };
        match msg {
            ShardMsg::Subscribe(job) => self.run_subscribe(*job),
            ShardMsg::Subscribed(answer) => self.apply_subscribed(*answer),
            ShardMsg::Unsubscribe { channel, from } => match self.redis() {
                Some(redis) => redis.remove_subscriber(&channel, from),
                None => self.engine.borrow_mut().remove_shard(&channel, from),
            },
            ShardMsg::Publish(job) => self.run_publish(*job),
            ShardMsg::Resync { channel } => {
                let hub = self.hub.borrow();
                hub.disconnect_subscribers(
                    &channel,
                    crate::protocol::Disconnect::InsufficientState,
                );
            }
            ShardMsg::Deliver(delivery) => {
                let skip = delivery
                    .exclude
                    .filter(|e| e.shard == self.id)
                    .map(|e| e.conn);
                let mut hub = self.hub.borrow_mut();
                match origin {
                    Origin::Local => hub.deliver(&delivery, skip),
                    Origin::Ring => hub.deliver_remote(&delivery, skip),
                };
            }
            ShardMsg::History(job) => self.run_history(*job),
            ShardMsg::HistoryAnswer { request, result } => self.histories.answer(request, *result),
            ShardMsg::HistoryRemove { channel, reply } => {
                let result = self.engine.borrow_mut().remove_history(&channel);
                self.to_shard(
                    reply.shard,
                    ShardMsg::HistoryRemoved {
                        request: reply.request,
                        result,
                    },
                );
            }
            ShardMsg::HistoryRemoved { request, result } => self.removals.answer(request, result),
            ShardMsg::ConnAnswer {
                conn,
                command,
                answer,
            } => self.answer_connection(conn, command, *answer),
            ShardMsg::Published { request, results } => self.published.answer(request, results),
            ShardMsg::StatsRequest {
                request,
                from,
                latencies,
            } => {
                let stats = Box::new(self.local_stats());
                let latencies = latencies.then(|| Box::new(self.latency_snapshot()));
                let shard = self.id;
                self.to_shard(
                    from,
                    ShardMsg::Stats {
                        request,
                        shard,
                        stats,
                        latencies,
                    },
                );
            }
            ShardMsg::Stats {
                request,
                shard,
                stats,
                latencies,
            } => self.stats.answer(request, (shard, *stats, latencies)),
            ShardMsg::PresenceJoin(join) => self.run_presence_join(*join),
            ShardMsg::PresenceLeave { channel, client } => {
                self.run_presence_leave(channel, *client)
            }
            ShardMsg::JoinLeave(event) => {
                self.hub
                    .borrow_mut()
                    .deliver_join_leave(&event, origin == Origin::Local);
            }
            ShardMsg::Presence(job) => self.run_presence(*job),
            ShardMsg::PresenceAnswer { request, result } => self.presences.answer(request, *result),
            ShardMsg::UserAction { action, reply } => self.run_user_action(action, reply),
            ShardMsg::UserActed { request } => self.user_acts.answer(request, ()),
            ShardMsg::UserSeen { user, online } => self.run_user_seen(user, online),
            ShardMsg::UserConnection {
                user,
                client,
                opened,
            } => self.run_user_connection(user, *client, opened),
            ShardMsg::Channels { query, reply } => self.run_channels(&query, reply),
            ShardMsg::ChannelsAnswer { request, channels } => {
                self.channel_lists.answer(request, channels)
            }
        }
    }

    /// Queues the reply to command `command` of connection `conn` of this shard (if it is
    /// still here), encoded in the connection's codec: the answer crossed the ring typed, so
    /// each codec encodes it here, on the connection's shard.
    fn answer_connection(&self, conn: u64, command: u32, answer: ConnAnswer) {
        let registry = self.registry.borrow();
        let Some(out) = registry.get(conn) else {
            return;
        };
        let Codec::Json = out.codec();
        let mut line = Vec::new();
        match answer {
            ConnAnswer::History(Ok(page)) => encode::history_reply(
                &mut line,
                command,
                &page.publications,
                &page.epoch,
                page.offset,
            ),
            ConnAnswer::Publish(Ok(())) => encode::empty_result(&mut line, command, "publish"),
            ConnAnswer::Presence(Ok(PresenceAnswer::List(items))) => {
                let entries: Vec<(String, Vec<u8>)> = items
                    .iter()
                    .map(|item| (item.client.to_string(), client_info(item)))
                    .collect();
                encode::presence_reply(
                    &mut line,
                    command,
                    entries.iter().map(|(c, i)| (c.as_str(), i.as_slice())),
                )
            }
            ConnAnswer::Presence(Ok(PresenceAnswer::Stats(stats))) => {
                encode::presence_stats_reply(&mut line, command, stats.num_clients, stats.num_users)
            }
            ConnAnswer::History(Err(code))
            | ConnAnswer::Publish(Err(code))
            | ConnAnswer::Presence(Err(code)) => encode::error_reply(&mut line, command, code),
        }
        out.push_message(&line);
    }
}
