//! The network edge: each shard's listening socket and its accept loop (`listener`). The
//! PROXY protocol parser and TLS will live here. Imports `transport`, `session`, `limits`.

pub mod listener;
