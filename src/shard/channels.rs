//! The API's `channels`: each shard lists the channels its connections subscribe to (with
//! how many), filtered by the glob and the cursor and cut to the page's first names; the
//! asking shard merges the lists (counts of a name on several shards added up). A page costs
//! each shard one pass over its channels, never a sort of them all.

use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

use super::ask::Ask;
use super::Shard;
use crate::protocol::ErrorCode;
use crate::router::msg::{ChannelsQuery, ReplyTo};
use crate::router::ShardMsg;

/// A `channels` query sent to every shard.
pub type ChannelsAsk = Ask<Vec<(Arc<str>, u32)>>;

/// One page of the node's channels.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ChannelsPage {
    /// Names in byte order with their subscriber counts.
    pub channels: Vec<(Arc<str>, u32)>,
    /// Where the next page starts, when there may be one.
    pub next_cursor: Option<Arc<str>>,
}

impl Shard {
    /// Sends `query` to every shard now.
    pub fn send_channels(&self, query: ChannelsQuery) -> ChannelsAsk {
        let ask = self.channel_lists.open(self.count);
        let query = Arc::new(query);
        for shard in 0..self.count {
            let reply = ReplyTo {
                shard: self.id,
                request: ask.id,
            };
            let msg = ShardMsg::Channels {
                query: query.clone(),
                reply,
            };
            self.to_shard(shard, msg);
        }
        ask
    }

    /// Merges every shard's list into the page (100 if a shard did not answer in time).
    pub async fn channels_answer(
        &self,
        ask: ChannelsAsk,
        limit: usize,
    ) -> Result<ChannelsPage, ErrorCode> {
        let mut merged: BTreeMap<Arc<str>, u32> = BTreeMap::new();
        let mut full = false;
        for _ in 0..self.count {
            let Some(list) = self.channel_lists.next(&ask).await else {
                return Err(ErrorCode::Internal);
            };
            full |= list.len() >= limit;
            for (name, count) in list {
                *merged.entry(name).or_default() += count;
            }
        }
        self.channel_lists.close(&ask);
        full |= merged.len() > limit;
        let channels: Vec<_> = merged.into_iter().take(limit).collect();
        let next_cursor = if full {
            channels.last().map(|(name, _)| name.clone())
        } else {
            None
        };
        Ok(ChannelsPage {
            channels,
            next_cursor,
        })
    }

    /// This shard's share of a `channels` query: its first `limit` matching names after the
    /// cursor, in byte order.
    pub(super) fn run_channels(&self, query: &ChannelsQuery, reply: ReplyTo) {
        let pattern = query
            .pattern
            .as_deref()
            .and_then(|p| glob::Pattern::new(p).ok());
        let mut first: BinaryHeap<(Arc<str>, u32)> = BinaryHeap::new();
        for (name, count) in self.hub.borrow().channels() {
            if query.after.as_deref().is_some_and(|after| **name <= *after)
                || pattern.as_ref().is_some_and(|p| !p.matches(name))
            {
                continue;
            }
            // The heap keeps the `limit` smallest names: its top is the largest kept.
            if first.len() < query.limit {
                first.push((name.clone(), count as u32));
            } else if first.peek().is_some_and(|(top, _)| **name < **top) {
                first.pop();
                first.push((name.clone(), count as u32));
            }
        }
        let channels = first.into_sorted_vec();
        self.to_shard(
            reply.shard,
            ShardMsg::ChannelsAnswer {
                request: reply.request,
                channels,
            },
        );
    }
}
