//! The WebSocket transport: the upgrade handshake (`upgrade`) and the connection loop that
//! feeds frames to the session and writes the connection's `Outbound` queue (`connection`).
//! Frame parsing and writing are pure and live in `framing::websocket`.

pub mod connection;
pub mod upgrade;
