//! `info`: this node's counters, summed over its shards, and each shard's.

use std::sync::OnceLock;

use crate::metrics::counters::ShardStats;
use crate::protocol::{ClientId, ErrorCode};
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
}

/// This node's id, fixed for the life of the process.
fn node_uid() -> Result<&'static str, ErrorCode> {
    static UID: OnceLock<String> = OnceLock::new();
    if let Some(uid) = UID.get() {
        return Ok(uid);
    }
    let uid = ClientId::random()
        .map_err(|_| ErrorCode::Internal)?
        .to_string();
    Ok(UID.get_or_init(|| uid))
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
    })
}
