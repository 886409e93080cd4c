//! Routing between shards (DESIGN invariant 2): which shard owns a channel (`partition`),
//! the messages shards exchange (`msg`, the ring vocabulary; `channel_list`, many channel
//! names in one buffer), the node-wide congestion flags
//! (`congestion`) and the `Outbox` in front of the ring mesh that keeps each destination FIFO
//! when a ring is full (`outbox`).
//!
//! `partition` and `msg` are leaves (pure functions and plain data); `outbox` owns the shard's
//! sending side of the mesh. Imports `limits`, `protocol` (codes, `Publication`) and
//! `metrics::counters`.

pub mod channel_list;
pub mod congestion;
pub mod lifecycle;
pub mod msg;
pub mod outbox;
pub mod partition;

pub use channel_list::{ChannelList, ChannelNames};
pub use congestion::Congestion;
pub use lifecycle::Lifecycle;
pub use msg::ShardMsg;
pub use outbox::Outbox;
pub use partition::{owner_of, partition};
