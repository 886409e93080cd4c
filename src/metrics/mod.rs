//! Metrics: each shard's counters (`counters::ShardStats`, plain numbers a shard keeps for
//! itself and hands out on request) and their Prometheus text exposition (`prometheus`),
//! summed over the shards and per shard, and the latencies of client commands and API
//! methods (`latency`, hdrhistograms merged over the shards). A leaf: imports `protocol`
//! and `limits`.

pub mod counters;
pub mod latency;
pub mod prometheus;
