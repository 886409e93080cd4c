//! Framing: how one protocol message becomes bytes on a transport. `websocket` is RFC 6455's
//! server side (pure: no socket); `tls` is TLS records over caller-owned buffers (rustls's
//! unbuffered connection). `Framing` names the framing a connection uses, so the
//! place where Server-Sent Events or HTTP-streaming framing would go is one match arm.
//!
//! A leaf: imports only `limits`.

pub mod tls;
pub mod websocket;

use bytes::Bytes;

/// A connection's framing (with one variant the type takes no bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// RFC 6455 text frames, unmasked (server to client).
    WebSocket,
}

impl Framing {
    /// One message (a line, or newline-joined lines) framed for the wire.
    pub fn message(self, payload: &[u8]) -> Bytes {
        match self {
            Framing::WebSocket => websocket::text_frame(payload),
        }
    }
}
