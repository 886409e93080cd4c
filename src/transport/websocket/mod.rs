//! The WebSocket transport: the upgrade handshake (`upgrade`), the shard's `Reactor` that
//! serves every upgraded connection of the shard from one task, and the `Connection` record
//! it keeps for each (`connection`). Frame parsing and writing are pure and live in
//! `framing::websocket`; socket readiness comes from `transport::readiness`.

pub mod connection;
pub mod reactor;
pub mod upgrade;

pub use reactor::Reactor;
