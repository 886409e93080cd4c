//! The network edge: each shard's listening socket and its accept loop (`listener`), and
//! each listener's TLS set-up with its certificate reload (`tls`). Imports `transport`,
//! `session`, `config`, `limits`.

pub mod listener;
pub mod tls;
