//! Metrics: each shard's counters (`counters::ShardStats`, plain numbers a shard keeps for
//! itself and hands out on request) and their Prometheus text exposition (`prometheus`),
//! summed over the shards and per shard. A leaf: imports nothing of the crate.

pub mod counters;
pub mod prometheus;
