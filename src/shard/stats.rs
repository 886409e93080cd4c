//! Counters: this shard's (`local_stats`) and every shard's, collected over the rings.

use super::ask::Ask;
use super::Shard;

/// Counters asked of every other shard.
pub type StatsAsk = Ask<(usize, ShardStats)>;
use crate::metrics::counters::ShardStats;
use crate::router::ShardMsg;

impl Shard {
    /// This shard's counters.
    pub fn local_stats(&self) -> ShardStats {
        let hub = self.hub.borrow();
        let registry = self.registry.borrow();
        let usage = self.engine.borrow().usage();
        ShardStats {
            connections: registry.connection_count() as u64,
            users: registry.user_count() as u64,
            online_users: self.online.borrow().count() as u64,
            subscriptions: hub.subscription_count() as u64,
            channels: usage.active_channels,
            history_bytes: usage.history_bytes,
            history_records: usage.history_records,
            channel_states: usage.channel_states,
            history_channels: usage.history_channels,
            presence_entries: usage.presence_entries,
            presence_full: self.presence_full.get(),
            connections_accepted: self.connections_accepted.get(),
            draining: u64::from(self.draining()),
            messages_in: self.messages_in.get(),
            messages_out: hub.deliveries(),
            publications: self.publications.get(),
            slow_disconnects: registry.slow_disconnects(),
            refusals: self.refusals(),
        }
    }

    /// Every shard's counters, indexed by shard, or `None` if a shard did not answer in time.
    pub async fn collect_stats(&self) -> Option<Vec<ShardStats>> {
        let ask = self.send_stats_requests();
        self.stats_answers(ask).await
    }

    /// The first half of `collect_stats`: the requests sent to every other shard now.
    pub fn send_stats_requests(&self) -> StatsAsk {
        let ask = self.stats.open(self.count - 1);
        for to in (0..self.count).filter(|&s| s != self.id) {
            self.to_shard(
                to,
                ShardMsg::StatsRequest {
                    request: ask.id,
                    from: self.id,
                },
            );
        }
        ask
    }

    /// The second half of `collect_stats`: this shard's counters and the others' answers.
    pub async fn stats_answers(&self, ask: StatsAsk) -> Option<Vec<ShardStats>> {
        let mut all = vec![ShardStats::default(); self.count];
        all[self.id] = self.local_stats();
        for _ in 1..self.count {
            let (shard, stats) = self.stats.next(&ask).await?;
            all[shard] = stats;
        }
        self.stats.close(&ask);
        Some(all)
    }
}
