//! ringcast: a thread-per-core real-time messaging server speaking the Centrifugo client
//! protocol and server HTTP API. The data flow, one module per stage (ARCHITECTURE.md):
//!
//! `server` (start-up, accept) → `conn` (HTTP/1.1, WebSocket upgrade, `ws` framing) →
//! `session` (protocol state, `protocol` encoding, `token` auth) → `shard` / `router`
//! (channel → owner shard over the ring mesh) → `owner` (offsets, encode once) → `hub`
//! (local subscribers, per-connection queues) → back to `conn` for the socket write.
//! `api` serves the HTTP API and /metrics; `config` holds the settings.

pub mod api;
pub mod config;
pub mod conn;
pub mod history;
pub mod hub;
pub mod owner;
pub mod protocol;
pub mod router;
pub mod server;
pub mod session;
pub mod shard;
pub mod token;
pub mod ws;
