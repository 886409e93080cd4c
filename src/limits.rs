//! Every fixed bound of the server, named with its unit last, and the relations between them
//! checked at compile time (TigerBeetle's `constants.zig` habit). Bounds a user may change are
//! configuration keys (`config`); their accepted ranges are here too, so `Config::validate`
//! and the code that relies on them read one number.
//!
//! A leaf: imports nothing of the crate but the ring crate's own limits.

use ringcast_ring::mesh::SHARDS_MAX as RING_SHARDS_MAX;

// ---- HTTP (before an upgrade) ----

/// Largest request head (request line and headers); over it → 431.
pub const HTTP_HEAD_BYTES_MAX: usize = 16 << 10;
/// Headers parsed per request; more → 400.
pub const HTTP_HEADERS_MAX: usize = 64;
/// Largest request body (the server API); over it → 413. Also bounds the channels of one
/// `broadcast` and the commands of one request.
pub const HTTP_BODY_BYTES_MAX: usize = 10 << 20;
/// Bytes asked of the socket per read while a head is incomplete.
pub const HTTP_HEAD_READ_BYTES: usize = 2 << 10;
/// Bytes asked of the socket per read while a body is incomplete.
pub const HTTP_BODY_READ_BYTES: usize = 64 << 10;
/// A keep-alive connection's buffer is shrunk back to this between requests.
pub const HTTP_BUFFER_KEPT_BYTES_MAX: usize = 4 << 10;
/// Requests of one connection dispatched and not yet answered (HTTP/1.1 pipelining); past it
/// the connection reads nothing until the oldest is answered.
pub const HTTP_PIPELINE_REQUESTS_MAX: usize = 128;
/// An HTTP connection idle this long between requests is closed.
pub const HTTP_IDLE_MS: u64 = 60_000;

// ---- WebSocket ----

/// RFC 6455 §5.5: control frames carry at most 125 payload bytes.
pub const WEBSOCKET_CONTROL_PAYLOAD_BYTES_MAX: usize = 125;
/// A close frame's reason: the control payload minus the 2-byte code.
pub const WEBSOCKET_CLOSE_REASON_BYTES_MAX: usize = WEBSOCKET_CONTROL_PAYLOAD_BYTES_MAX - 2;
/// Most bytes written to the socket in one go when queued frames are coalesced.
pub const WEBSOCKET_WRITE_BATCH_BYTES_MAX: usize = 64 << 10;
/// Time a closing connection gets to take our close frame and hang up.
pub const WEBSOCKET_CLOSE_LINGER_MS: u64 = 2_000;
/// Bytes read (and dropped) per read while lingering after our close frame.
pub const WEBSOCKET_LINGER_READ_BYTES: usize = 512;
/// `websocket.message_size_limit` accepted range: a message must hold a control payload's
/// worth, and the frame reader refuses lengths beyond this before reserving memory.
pub const WEBSOCKET_MESSAGE_BYTES_MIN: usize = WEBSOCKET_CONTROL_PAYLOAD_BYTES_MAX;
pub const WEBSOCKET_MESSAGE_BYTES_MAX: usize = 64 << 20;

// ---- Client protocol ----

/// Deepest nesting of JSON the server accepts in publication data (API and client publish);
/// deeper → error 107. serde_json's own limit for typed values is 128; CPython's `json`
/// recursion limit (centrifuge-python) fails near 1,000, and browsers' parsers sooner on
/// some paths, so data past this would reach subscribers only to break their SDKs.
pub const JSON_DEPTH_MAX: usize = 128;
/// `client.queue_max_size` minimum: a connection must be able to queue a small reply.
pub const CLIENT_QUEUE_BYTES_MIN: usize = 1 << 10;
/// `client.queue_max_size` maximum: a connection counts its queued bytes in a u32.
pub const CLIENT_QUEUE_BYTES_MAX: usize = u32::MAX as usize;
/// `client.channel_limit` maximum: the session scans its channel list linearly.
pub const CLIENT_CHANNELS_MAX: usize = 1 << 16;
/// `client.ping_interval` minimum when pings are on.
pub const PING_INTERVAL_MS_MIN: u64 = 10;
/// The shard's ticker period is a quarter of the pong timeout, clamped to this range.
pub const TICK_MS_MIN: u64 = 5;
pub const TICK_MS_MAX: u64 = 1_000;
/// Slots of the shard's deadline wheel: one turn is this many ticks (17 minutes at the
/// longest tick). The wheel schedules at most one turn ahead (a later deadline gets a visit
/// each turn), so a closed connection's entry is gone within a turn.
pub const DEADLINE_WHEEL_SLOTS: usize = 1024;

/// The shard's one read buffer: every connection of the shard reads through it.
pub const SHARD_READ_BUFFER_BYTES: usize = 64 << 10;
/// Capacity the shard's session reply buffer keeps between messages.
pub const REPLY_BUFFER_KEPT_BYTES_MAX: usize = 64 << 10;
/// Engine work a shard keeps waiting while partition logs are created off its thread
/// (`shard::pending_logs`); past it the shard raises its congestion flag and its ring loop
/// takes no more messages until the logs exist.
pub const DEFERRED_MESSAGES_HIGH: usize = 4 << 10;
/// The longest a partition's log creation waits for a test's gate (`RINGCAST_TEST_LOG_GATE`).
pub const TEST_LOG_GATE_WAIT_MS: u64 = 60_000;
/// The WebSocket reactor's own io_uring (`transport::readiness`): submissions queued before a
/// submit, and completions the kernel can post before the reactor drains them (more wait in
/// the kernel's overflow list, not lost).
pub const READINESS_SUBMISSIONS: u32 = 1024;
pub const READINESS_COMPLETIONS: u32 = 16 << 10;
/// Input the reactor reads from one connection before it serves the others (the connection
/// is served again in the next round).
pub const REACTOR_READ_ROUND_BYTES_MAX: usize = 4 * SHARD_READ_BUFFER_BYTES;
/// Steps of the TLS state machine per call (records decrypted, messages encoded): a peer
/// cannot make one call loop without end.
pub const TLS_STEPS_MAX: usize = 4096;
/// Ciphertext a TLS stream in the HTTP phase reads at once (one record is at most 16 KiB
/// plus its overhead; smaller reads just take more calls).
pub const TLS_READ_BYTES: usize = 4 << 10;
/// Sealed output a TLS stream in the HTTP phase holds before it writes it out.
pub const TLS_WRITE_BUFFER_BYTES_MAX: usize = 64 << 10;
/// Connections the reactor serves between checks whether another task queue should run.
pub const REACTOR_BATCH: usize = 64;
/// Completions the reactor takes from its ring per round.
pub const REACTOR_EVENTS_MAX: usize = 4096;

// ---- Channels ----

/// Longest channel name a history record can hold (its length field is a u16);
/// `channel.max_length` may not exceed it.
pub const CHANNEL_NAME_BYTES_MAX: usize = u16::MAX as usize;

// ---- Shards and rings ----

/// Shards one node may run: the ring mesh's limit.
pub const SHARDS_MAX: usize = RING_SHARDS_MAX;
/// Bits of one `ShardSet` word, and the words a `ShardSet` holds.
pub const SHARD_SET_WORD_BITS: usize = 64;
pub const SHARD_SET_WORDS: usize = 4;
/// Capacity of each ring of the mesh, in messages.
pub const RING_CAPACITY_MESSAGES: usize = 4096;
/// Messages taken from one peer's ring per round of the ring loop.
pub const RING_BATCH_MESSAGES: usize = 64;
/// Capacity of the ring loop's inbox buffer (a round's messages from every peer).
pub const RING_INBOX_MESSAGES: usize = 256;
/// Messages queued behind a full ring to one shard before the node counts as congested and
/// sources of new traffic (client commands, API calls) wait; cleared at half.
pub const OUTBOX_BACKLOG_HIGH_MESSAGES: usize = 4096;
/// Commands one Redis connection has in flight at most; a caller past it waits for room.
pub const REDIS_IN_FLIGHT_MAX: usize = 4096;
/// What a Redis connection reads at once.
pub const REDIS_READ_BYTES: usize = 64 << 10;
/// A lost Redis connection is tried again after this, doubling up to the maximum.
pub const REDIS_RECONNECT_MIN_MS: u64 = 50;
pub const REDIS_RECONNECT_MAX_MS: u64 = 2_000;
/// Publications kept for a channel's subscription steps while they wait for Redis; past it
/// the waiting subscribers are told they were not recovered.
pub const REDIS_SYNC_BUFFER_MAX: usize = 10_000;
/// Redis engine: each node tells the others its counts this often, and a node not heard
/// from for the ttl is no longer listed by `info`.
pub const NODE_INFO_INTERVAL_MS: u64 = 2_000;
pub const NODE_INFO_TTL_MS: u64 = 3 * NODE_INFO_INTERVAL_MS;
/// A broadcast's channels one Redis script call publishes at most.
pub const REDIS_PUBLISH_BATCH: usize = 256;
/// Channels one SUBSCRIBE or UNSUBSCRIBE names at most (churn is sent in such batches).
pub const REDIS_SUBSCRIBE_BATCH: usize = 512;
/// Subscriptions moved to another cluster master wait for its connection to come up at most
/// this many times `REDIS_RECONNECT_MIN_MS`; past it, they are made once it is up.
pub const REDIS_SUBSCRIBE_MOVE_TRIES: u32 = 40;
/// How often a shard using a Redis Cluster checks whether to read the slot map again (a
/// MOVED answer seen, or a master's connection down).
pub const REDIS_CLUSTER_CHECK_MS: u64 = 1_000;
/// Reads of an unchanged slot map after a sign of change (a MOVED answer, a dropped
/// subscription) before the sign is taken as spurious.
pub const REDIS_CLUSTER_UNCHANGED_READS_MAX: u32 = 10;
/// The longest latency a method's histogram tells apart (60 s); longer calls count as it.
pub const LATENCY_MAX_US: u64 = 60_000_000;
/// Latency histograms keep two significant digits (1% error at any value).
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 2;
/// Latency quantiles cover the last one to two windows of this length.
pub const LATENCY_WINDOW_MS: u64 = 60_000;
/// Publications held for a sync (`history_fsync = always`) before the shard counts as
/// congested; cleared at half.
pub const HELD_BATCHES_HIGH: usize = 4096;
/// While a peer's ring is full the ring loop polls it this often (a full ring's reader
/// does not ring the writer's doorbell when it drains).
pub const RING_FULL_POLL_US: u64 = 50;
/// While connections wait out another shard's congestion the ring loop polls this often.
pub const CONGESTION_POLL_MS: u64 = 1;
/// How long the intake task queue (accepts, HTTP and API requests and answers, the ring loop)
/// may wait while the connections' queue runs: glommio preempts a running queue after the
/// smallest latency any active queue asks for (its default is 100 ms).
pub const INTAKE_LATENCY_MS: u64 = 1;
/// How long a task waits for other shards' answers before failing with an internal error.
pub const ANSWER_TIMEOUT_MS: u64 = 5_000;

// ---- Partitions and history ----

/// Partitions per node; fixed forever (history directories are laid out by partition).
pub const PARTITIONS: u32 = 256;
/// Digits of a partition directory's name (`data/history/017/`).
pub const PARTITION_DIR_DIGITS: usize = 3;
/// `history_storage.segment_size` range and alignment, in bytes. The index packs a byte
/// position into 32 bits, hence the maximum.
pub const HISTORY_SEGMENT_BYTES_MIN: u64 = 64 << 10;
pub const HISTORY_SEGMENT_BYTES_MAX: u64 = 1 << 32;
pub const HISTORY_SEGMENT_ALIGN_BYTES: u64 = 4096;
/// Largest offset a channel's stream may reach: JavaScript SDKs hold offsets as numbers, exact
/// up to 2^53 - 1. A record from disk beyond it is corrupt; a publish past it fails (error 100).
pub const STREAM_OFFSET_MAX: u64 = (1 << 53) - 1;
/// Largest record sequence number a partition may reach (a segment's base_seq included), so
/// `seq + 1` never overflows; one from disk beyond it is corrupt.
pub const HISTORY_SEQ_MAX: u64 = 1 << 62;
/// Appended records a log head stages before it puts them in the file (`Segment::land`):
/// at most this many, plus one record.
pub const HISTORY_STAGE_BYTES_MAX: usize = 256 << 10;
/// Staged bytes at or above this land with `pwrite`, below it through the mapping (a
/// `pwrite` costs a call; a mapped write, a fault per new page).
pub const HISTORY_PWRITE_MIN_BYTES: usize = 4 << 10;
/// Staging capacity a log head keeps between batches.
pub const HISTORY_STAGE_KEPT_BYTES: usize = 4 << 10;
/// Blocks reserved ahead of the write position (one fallocate per this many bytes).
pub const HISTORY_ALLOCATE_AHEAD_BYTES: usize = 1 << 20;
/// The state an owner keeps for a channel with history that was published to while nobody
/// subscribes is dropped after this long (its log keeps the stream's position, so it comes
/// back as it was); it spares rebuilding the state for every publication to a busy channel.
pub const CHANNEL_IDLE_STATE_MS: u64 = 10_000;
/// At most this many such idle states wait for `CHANNEL_IDLE_STATE_MS` per shard; past it the
/// oldest are dropped at once, so a flood of new names cannot grow an owner without bound.
pub const CHANNEL_IDLE_STATES_MAX: usize = 100_000;
/// Retention runs this often.
pub const HISTORY_RETENTION_INTERVAL_MS: u64 = 1_000;
/// Expiry times within this span share a bucket of the expiry schedule (a channel is visited
/// up to a bucket plus a retention pass late, about 2 s; reads apply the ttl exactly): one
/// retention interval.
pub const HISTORY_EXPIRY_BUCKET_MS: u64 = HISTORY_RETENTION_INTERVAL_MS;
/// A channel's position (offset, its stream meta) is dropped this long after its last
/// publication once nothing of its history is left, unless configured
/// (`channel.history_meta_ttl`, `0` in the file also meaning this): Centrifugo's 30 days.
pub const HISTORY_META_TTL_DEFAULT_MS: u64 = 30 * 24 * 3_600_000;
/// A position whose meta ttl ran out while its owner still holds the channel (subscribed,
/// or published to a moment ago) is looked at again this much later.
pub const HISTORY_META_HELD_RECHECK_MS: u64 = 60_000;
/// Under `never`, the dirty ranges nobody syncs are dropped this often.
pub const HISTORY_DIRTY_DROP_INTERVAL_MS: u64 = 1_000;

/// Entries of each shard's io_uring rings (glommio's default is 128). io_uring sizes its
/// table of armed operations from the ring: with one armed read poll per connection, a small
/// table makes every cancel scan long chains (measured: a quarter of an idle shard's CPU with
/// 10,000 connections at 128).
pub const IO_RING_DEPTH: usize = 2048;

// ---- Start-up ----

/// Time every shard gets to open its history and bind its listener.
pub const SHARD_START_TIMEOUT_MS: u64 = 30_000;
/// Pending connections the kernel queues per listener (capped by net.core.somaxconn).
pub const LISTEN_BACKLOG: i32 = 4096;
/// Pause after a failed accept (out of descriptors): back off instead of spinning.
pub const ACCEPT_BACKOFF_MS: u64 = 10;
/// ... and this long when the process is out of file descriptors (EMFILE).
pub const ACCEPT_EMFILE_BACKOFF_MS: u64 = 100;
/// A log line that repeats (an accept failing at EMFILE) is written at most this often.
pub const LOG_REPEAT_INTERVAL_MS: u64 = 10_000;
/// Connections the accept loop takes from the kernel's queue in a row before it lets the
/// shard's other tasks run.
pub const ACCEPT_BATCH: usize = 64;
/// Descriptors the process keeps for itself besides connections: listeners, eventfds,
/// io_uring rings, history segments, the data-directory lock.
pub const OPEN_FILES_RESERVED: u64 = 256;

// ---- Relations ----

// A client id holds its shard in 14 bits (`ClientId::for_connection`).
const _: () = assert!(SHARDS_MAX <= 1 << 14);
// A ShardSet must name every shard a mesh can have.
const _: () = assert!(SHARD_SET_WORDS * SHARD_SET_WORD_BITS >= SHARDS_MAX);
// Partition p is owned by shard p mod N: with more shards than partitions some shards would
// own nothing, and partition directories are named with PARTITION_DIR_DIGITS digits.
const _: () = assert!(SHARDS_MAX as u32 <= PARTITIONS);
const _: () = assert!((PARTITIONS as u64) <= 10u64.pow(PARTITION_DIR_DIGITS as u32));
// The ring crate requires power-of-two capacities (index masking).
const _: () = assert!(RING_CAPACITY_MESSAGES.is_power_of_two());
const _: () = assert!(RING_INBOX_MESSAGES >= RING_BATCH_MESSAGES);
// Segment sizes: aligned bounds, and the minimum holds the largest client message.
const _: () = assert!(HISTORY_SEGMENT_BYTES_MIN.is_multiple_of(HISTORY_SEGMENT_ALIGN_BYTES));
const _: () = assert!(HISTORY_SEGMENT_BYTES_MAX.is_multiple_of(HISTORY_SEGMENT_ALIGN_BYTES));
const _: () = assert!(HISTORY_SEGMENT_BYTES_MIN < HISTORY_SEGMENT_BYTES_MAX);
const _: () = assert!(WEBSOCKET_MESSAGE_BYTES_MIN <= WEBSOCKET_MESSAGE_BYTES_MAX);
const _: () = assert!(WEBSOCKET_CLOSE_REASON_BYTES_MAX + 2 == WEBSOCKET_CONTROL_PAYLOAD_BYTES_MAX);
const _: () = assert!(TICK_MS_MIN <= TICK_MS_MAX && PING_INTERVAL_MS_MIN >= TICK_MS_MIN);
const _: () = assert!(HTTP_HEAD_READ_BYTES <= HTTP_HEAD_BYTES_MAX);
const _: () = assert!(HTTP_BUFFER_KEPT_BYTES_MAX <= HTTP_HEAD_BYTES_MAX);

/// A JWKS endpoint's keys are refetched in the background once the cache is this old (a key
/// the endpoint dropped stops verifying after at most this long).
pub const JWKS_CACHE_MS: u64 = 300_000;
/// An unknown `kid` refetches the key set at most this often.
pub const JWKS_FETCH_INTERVAL_MIN_MS: u64 = 1_000;
/// One fetch of a key set gives up after this long.
pub const JWKS_FETCH_TIMEOUT_MS: u64 = 5_000;
/// The largest key set read.
pub const JWKS_BODY_BYTES_MAX: usize = 1 << 20;

/// Commands one API `batch` may hold (more: error 107 for the batch).
pub const API_BATCH_COMMANDS_MAX: usize = 1_000;

/// An API publication's `idempotency_key` is remembered this long by its channel's owner (a
/// repeat within it publishes nothing and answers the first result): Centrifugo's 5 minutes.
pub const IDEMPOTENCY_WINDOW_MS: u64 = 300_000;
/// At most this many idempotency keys per shard; past it the oldest go first.
pub const IDEMPOTENCY_KEYS_MAX: usize = 100_000;

/// Presence entries one channel may hold; a join past it is not recorded (the subscription
/// stands; counted in `ringcast_presence_full_total`). A million clients in one channel's
/// presence is far past any room's size, and bounds what one channel costs its owner.
pub const PRESENCE_CHANNEL_ENTRIES_MAX: usize = 1 << 20;
/// The most entries one `presence` answer lists; a channel with more answers 106 (limit
/// exceeded) and `presence_stats` still counts it. The answer of a full list this long is
/// about 10 MB of JSON.
pub const PRESENCE_REPLY_ENTRIES_MAX: usize = 65_536;
/// Server API actions waiting for one connection to apply them (it does when next served,
/// before reading on). One that has more is not being served: it is closed as slow (3008),
/// as when its output queue overflows.
pub const DIRECTIVES_PER_CONNECTION_MAX: usize = 1_024;
/// After a refused request's response, what the client still sends is read and dropped for
/// at most this long (closing with unread input would reset the connection before the client
/// read the response).
pub const HTTP_REFUSAL_LINGER_MS: u64 = 1_000;
/// ... and at most this much of it.
pub const HTTP_REFUSAL_LINGER_BYTES_MAX: usize = 1 << 20;
/// Below this locked-memory limit io_uring may fail on kernels before 5.12 (its rings are
/// locked memory there): a start-up warning names the fix.
pub const IO_URING_MEMLOCK_BYTES_MIN: u64 = 64 << 20;
/// The longest PROXY protocol v2 header read (its addresses and TLVs; HAProxy's are far
/// shorter); a longer one refuses the connection.
pub const PROXY_HEADER_V2_BYTES_MAX: usize = 16 + 2048;
/// The drain closes a share of the clients every this often (spread over
/// `shutdown.timeout`).
pub const DRAIN_STEP_MS: u64 = 100;
/// The most channels one API `channels` answer lists; a node with more answers in pages
/// (`next_cursor`).
pub const API_CHANNELS_PAGE_MAX: usize = 100_000;
