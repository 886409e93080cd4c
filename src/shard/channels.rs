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
    /// Sends `query` to every shard now, and with the Redis engine to the other nodes heard
    /// from lately (their answers come back to this shard as more lists).
    pub fn send_channels(&self, query: ChannelsQuery) -> ChannelsAsk {
        let peers = if self.redis().is_some() {
            crate::engine::redis::peers().len()
        } else {
            0
        };
        let ask = self.channel_lists.open(self.count + peers);
        if peers > 0 {
            self.survey_channels(&query, ask.id);
        }
        self.ask_local_channels(query, ask.id);
        ask
    }

    /// Sends `query` to this node's shards, answered to `request` here.
    pub(super) fn ask_local_channels(&self, query: ChannelsQuery, request: u64) {
        let query = Arc::new(query);
        for shard in 0..self.count {
            let reply = ReplyTo {
                shard: self.id,
                request,
            };
            let msg = ShardMsg::Channels {
                query: query.clone(),
                reply,
            };
            self.to_shard(shard, msg);
        }
    }

    /// This node's channels for `query`, merged over its shards (a survey from another node).
    pub(super) async fn local_channels(
        &self,
        query: ChannelsQuery,
    ) -> Result<ChannelsPage, ErrorCode> {
        let limit = query.limit;
        let ask = self.channel_lists.open(self.count);
        self.ask_local_channels(query, ask.id);
        self.channels_answer(ask, limit).await
    }

    /// Merges every shard's list (and other nodes', when asked) into the page: 100 if one of
    /// this node's shards did not answer in time; a node that does not answer is left out.
    pub async fn channels_answer(
        &self,
        ask: ChannelsAsk,
        limit: usize,
    ) -> Result<ChannelsPage, ErrorCode> {
        let mut merged: BTreeMap<Arc<str>, u32> = BTreeMap::new();
        let mut full = false;
        let mut answers = 0;
        // Bounded by the answers expected, each waited for at most the answer timeout.
        while answers < ask.expected() {
            let Some(list) = self.channel_lists.next(&ask).await else {
                if answers >= self.count {
                    break;
                }
                return Err(ErrorCode::Internal);
            };
            answers += 1;
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
