//! Counters: this shard's (`local_stats`) and every shard's, collected over the rings.

use super::ask::Ask;
use super::Shard;

/// Counters asked of every other shard.
pub type StatsAsk = Ask<(usize, ShardStats, Option<Box<Latencies>>)>;

use std::time::Duration;

use crate::clock::Millis;
use crate::metrics::counters::ShardStats;
use crate::metrics::latency::{Latencies, Timed};
use crate::router::ShardMsg;

impl Shard {
    /// This shard's counters.
    pub fn local_stats(&self) -> ShardStats {
        let hub = self.hub.borrow();
        let registry = self.registry.borrow();
        let usage = self.engine.borrow().usage();
        let mut outbox = self.outbox.borrow_mut();
        ShardStats {
            redis_errors: self.redis().map_or(0, |r| r.errors()),
            redis_links_down: self.redis().map_or(0, |r| r.links_down()),
            ring_occupancy: outbox.in_rings() as u64,
            ring_backlog: outbox.backlogged() as u64,
            ring_waits: outbox.waited(),
            history_appends: usage.history_appends,
            history_appended_bytes: usage.history_appended_bytes,
            history_segments: usage.history_segments,
            history_syncs: self.history_syncs.get(),
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
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
            broadcasts: self.broadcasts.get(),
            broadcast_channels: self.broadcast_channels.get(),
            messages_out: hub.deliveries(),
            publications: self.publications.get(),
            slow_disconnects: registry.slow_disconnects(),
            refusals: self.refusals(),
        }
    }

    /// Records that `method` took `elapsed` on this shard.
    pub fn record_latency(&self, timed: Timed, method: &'static str, elapsed: Duration) {
        self.latencies
            .borrow_mut()
            .record(timed, method, elapsed, Millis::now().as_ms());
    }

    /// This shard's latencies as they stand.
    pub fn latency_snapshot(&self) -> Latencies {
        self.latencies.borrow_mut().snapshot(Millis::now().as_ms())
    }

    /// Every shard's counters, indexed by shard, or `None` if a shard did not answer in time.
    pub async fn collect_stats(&self) -> Option<Vec<ShardStats>> {
        let ask = self.send_stats_requests(false);
        self.stats_answers(ask, false).await.map(|(stats, _)| stats)
    }

    /// The first half of `collect_stats`: the requests sent to every other shard now (with
    /// `latencies`, for a scrape, their latencies too).
    pub fn send_stats_requests(&self, latencies: bool) -> StatsAsk {
        let ask = self.stats.open(self.count - 1);
        for to in (0..self.count).filter(|&s| s != self.id) {
            self.to_shard(
                to,
                ShardMsg::StatsRequest {
                    request: ask.id,
                    from: self.id,
                    latencies,
                },
            );
        }
        ask
    }

    /// The second half of `collect_stats`: this shard's counters and the others' answers,
    /// with every shard's latencies merged when `latencies` (they were asked for).
    pub async fn stats_answers(
        &self,
        ask: StatsAsk,
        latencies: bool,
    ) -> Option<(Vec<ShardStats>, Latencies)> {
        let mut all = vec![ShardStats::default(); self.count];
        all[self.id] = self.local_stats();
        let mut merged = Latencies::default();
        for _ in 1..self.count {
            let (shard, stats, latencies) = self.stats.next(&ask).await?;
            all[shard] = stats;
            if let Some(latencies) = latencies {
                merged.merge(&latencies);
            }
        }
        self.stats.close(&ask);
        if latencies {
            merged.merge(&self.latency_snapshot());
        }
        Some((all, merged))
    }
}
