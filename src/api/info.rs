//! `info`: this node's counters, summed over its shards, and each shard's; with the Redis
//! engine also the other nodes heard from lately.

use crate::engine::redis::PeerNode;
use crate::metrics::counters::ShardStats;
use crate::protocol::ErrorCode;
use crate::shard::{Shard, StatsAsk};

/// What `info` reports about the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub uid: String,
    pub name: String,
    pub version: &'static str,
    pub stats: ShardStats,
    /// Each shard's own counters, by shard (beyond Centrifugo, which has no shards).
    pub shards: Vec<ShardStats>,
    pub uptime_seconds: u64,
    /// The other nodes (Redis engine), as they last said.
    pub peers: Vec<PeerNode>,
}

/// This node's id, fixed for the life of the process (the one other nodes know it by).
fn node_uid() -> Result<&'static str, ErrorCode> {
    Ok(crate::engine::redis::node_id())
}

pub async fn info(shard: &Shard, ask: StatsAsk) -> Result<NodeInfo, ErrorCode> {
    let (per_shard, _) = shard
        .stats_answers(ask, false)
        .await
        .ok_or(ErrorCode::Internal)?;
    let name = match shard.config.node.name.as_str() {
        "" => "ringcast".to_owned(),
        name => name.to_owned(),
    };
    Ok(NodeInfo {
        uid: node_uid()?.to_owned(),
        name,
        version: crate::VERSION,
        stats: ShardStats::sum(&per_shard),
        shards: per_shard,
        uptime_seconds: shard.started.elapsed().as_secs(),
        peers: crate::engine::redis::peers(),
    })
}
