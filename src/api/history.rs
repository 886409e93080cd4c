//! `history` and `history_remove`, answered by the channel's owner.

use super::check_channel;
use crate::protocol::ErrorCode;
use crate::router::msg::{HistoryPage, HistoryQuery};
use crate::shard::Shard;

pub async fn history(
    shard: &Shard,
    channel: &str,
    query: HistoryQuery,
) -> Result<HistoryPage, ErrorCode> {
    check_channel(shard, channel)?;
    shard.history(channel, query).await
}

pub async fn remove(shard: &Shard, channel: &str) -> Result<(), ErrorCode> {
    check_channel(shard, channel)?;
    shard.history_remove(channel).await
}
