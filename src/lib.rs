//! ringcast: a thread-per-core real-time messaging server speaking the Centrifugo client
//! protocol and server HTTP API. The modules follow the data flow, in layers; a module
//! imports only from its own layer or lower ones (`tests/layering.rs` holds the crate to it):
//!
//! | layer | modules | what they are |
//! |---|---|---|
//! | 0 leaves | `limits` `clock` `rand` `config` `protocol` `framing` `router` `metrics` | bounds, time, randomness, settings, pure codecs (TLS records among them), the ring vocabulary and partition hash, counters |
//! | 1 storage | `history` | the persistent log of each partition |
//! | 2 engine | `engine` `broker` | the owner side of a channel: offsets, epochs, history, durability holds; what nodes share through (Redis) |
//! | 3 fan-out | `fanout` | local subscribers, per-connection queues, frames per codec |
//! | 4 shard | `shard` | one core: routing to owners, typed asks, ring loop, ticker, backpressure |
//! | 5 handlers | `auth` `session` `api` | tokens and keys, the client protocol, the server API |
//! | 6 edges | `http` `transport` | HTTP/1.1 over TCP or TLS, and the WebSocket transport |
//! | 7 network | `net` | listeners, accept loops, each listener's TLS set-up |
//! | 8 process | `server` | start-up, one executor per shard |
//!
//! The flow: `net` accepts → `transport` (HTTP, upgrade, frames) → `session` (commands) →
//! `shard` (route to the channel's owner over the rings) → `engine` (offset, history) →
//! `shard` fans the frame out, encoded once → `fanout` (each subscriber's queue) →
//! `transport` writes it. ARCHITECTURE.md has the whole picture.

// Every `unsafe` says why it is sound, and unsafe operations inside unsafe functions are
// explicit (as in the ring crate).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod api;
pub mod auth;
pub mod broker;
pub mod clock;
pub mod config;
pub mod engine;
pub mod fanout;
pub mod framing;
pub mod history;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod protocol;
pub mod rand;
pub mod router;
pub mod server;
pub mod session;
pub mod shard;
pub mod transport;

/// The server's version, as `connect` and `info` report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Exit code after a failed history sync: nothing unsynced may be acknowledged, so the
/// process stops and a restart recovers the log (crash-only).
pub const EXIT_SYNC_FAILED: i32 = 70;
