//! Redis: a pipelined connection per shard and Redis (`connection`). The engine's Redis side
//! (the publish script, streams, pub/sub) builds on it.

pub mod connection;

pub use connection::{Link, RedisConnection, RedisError, RedisSettings};
