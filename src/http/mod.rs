//! HTTP/1.1 before an upgrade: the connection loop with pipelining (`connection`), parsing a
//! request head (`request`, pure parsing with httparse plus the reads), responses
//! (`response`), the byte stream, plain or TLS (`stream`), and the routes (`routes`: which path goes where, and the answers of the
//! server API, `/health` and `/metrics`).
//!
//! Imports `api`, `auth`, `metrics`, `shard`, `config`, `framing`, `limits`.

pub mod connection;
pub mod proxy_header;
pub mod request;
pub mod response;
pub mod routes;
pub mod stream;

pub use request::Head;
pub use response::Response;
