//! The Prometheus text exposition (format 0.0.4) of every shard's counters: for each metric
//! the node's total (`ringcast_<name>`) and one line per shard (`ringcast_shard_<name>`), and
//! the node gauges Centrifugo exposes under its own names (`centrifugo_node_*`), so its
//! published Grafana dashboard finds them.

use std::fmt::Write as _;

use super::counters::{ShardStats, BROADCAST_BUCKETS};
use super::latency::Latencies;
use crate::protocol::Refusal;

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

type Field = fn(&ShardStats) -> u64;

/// Name, type, help, field: one row per metric.
const METRICS: [(&str, &str, &str, Field); 27] = [
    (
        "redis_errors_total",
        "counter",
        "Redis engine calls that failed (Redis down, a broken connection, an error answer).",
        |s| s.redis_errors,
    ),
    (
        "redis_links_down",
        "gauge",
        "Redis engine connections (commands and pub/sub, per shard and instance) down now.",
        |s| s.redis_links_down,
    ),
    (
        "bytes_in_total",
        "counter",
        "Bytes read from WebSocket connections' sockets (TLS records as received).",
        |s| s.bytes_in,
    ),
    (
        "bytes_out_total",
        "counter",
        "Bytes written to WebSocket connections' sockets (TLS records as sent).",
        |s| s.bytes_out,
    ),
    (
        "ring_occupancy_messages",
        "gauge",
        "Messages in the shards' outgoing rings, not yet taken by the receiving shard.",
        |s| s.ring_occupancy,
    ),
    (
        "ring_backlog_messages",
        "gauge",
        "Messages waiting behind a full ring to another shard.",
        |s| s.ring_backlog,
    ),
    (
        "ring_waits_total",
        "counter",
        "Messages to another shard that found its ring full (or others waiting) and waited.",
        |s| s.ring_waits,
    ),
    (
        "history_appends_total",
        "counter",
        "Publications written to the history logs.",
        |s| s.history_appends,
    ),
    (
        "history_appended_bytes_total",
        "counter",
        "Payload bytes (data, info, channel) of the publications written to the history logs.",
        |s| s.history_appended_bytes,
    ),
    (
        "history_segments",
        "gauge",
        "History segment files, by owner shard.",
        |s| s.history_segments,
    ),
    (
        "history_syncs_total",
        "counter",
        "History sync rounds (msync/fsync of what was appended).",
        |s| s.history_syncs,
    ),
    (
        "connections_accepted_total",
        "counter",
        "WebSocket connections accepted (upgraded).",
        |s| s.connections_accepted,
    ),
    (
        "draining",
        "gauge",
        "Shards draining after SIGTERM/SIGINT (0 while the node serves).",
        |s| s.draining,
    ),
    (
        "presence_entries",
        "gauge",
        "Presence entries, by the shard owning their channels.",
        |s| s.presence_entries,
    ),
    (
        "presence_full_total",
        "counter",
        "Presence entries not recorded: their channel held the most it may.",
        |s| s.presence_full,
    ),
    ("connections", "gauge", "Open WebSocket connections.", |s| {
        s.connections
    }),
    (
        "users",
        "gauge",
        "Distinct users with an open connection, by the shard that counts each user.",
        |s| s.online_users,
    ),
    (
        "subscriptions",
        "gauge",
        "Channel subscriptions of connected clients.",
        |s| s.subscriptions,
    ),
    (
        "channels",
        "gauge",
        "Channels with at least one subscriber, by owner shard.",
        |s| s.channels,
    ),
    (
        "messages_in_total",
        "counter",
        "WebSocket messages received from clients.",
        |s| s.messages_in,
    ),
    (
        "messages_out_total",
        "counter",
        "Publications handed to subscriber connections.",
        |s| s.messages_out,
    ),
    (
        "publications_total",
        "counter",
        "Publications accepted by channel owners.",
        |s| s.publications,
    ),
    (
        "slow_disconnects_total",
        "counter",
        "Connections closed because their send queue was full.",
        |s| s.slow_disconnects,
    ),
    (
        "history_disk_bytes",
        "gauge",
        "Bytes of history segment files, by owner shard.",
        |s| s.history_bytes,
    ),
    (
        "history_records",
        "gauge",
        "Publications held in the history index, by owner shard.",
        |s| s.history_records,
    ),
    (
        "channel_states",
        "gauge",
        "Channel states held by owner shards: subscribed channels, and channels with history \
         published to while nobody subscribes (kept for a few seconds).",
        |s| s.channel_states,
    ),
    (
        "history_channels",
        "gauge",
        "Channels whose stream position the history logs keep, by owner shard.",
        |s| s.history_channels,
    ),
];

/// Centrifugo's node gauges that ringcast has: name, help, value over the node.
const CENTRIFUGO_GAUGES: [(&str, &str, Field); 4] = [
    ("num_clients", "Number of clients connected.", |s| {
        s.connections
    }),
    ("num_users", "Number of unique users connected.", |s| {
        s.online_users
    }),
    ("num_subscriptions", "Number of subscriptions.", |s| {
        s.subscriptions
    }),
    (
        "num_channels",
        "Number of channels with one or more subscribers.",
        |s| s.channels,
    ),
];

/// The exposition of `per_shard` (indexed by shard) and the node's `latencies`; `nodes`
/// counts the nodes this one knows of (itself included); `version` is the server's.
pub fn render(
    per_shard: &[ShardStats],
    latencies: &Latencies,
    nodes: usize,
    version: &str,
) -> String {
    let mut text = String::new();
    for (name, help, field) in CENTRIFUGO_GAUGES {
        let total: u64 = per_shard.iter().map(field).sum();
        let _ = writeln!(
            text,
            "# HELP centrifugo_node_{name} {help}
# TYPE centrifugo_node_{name} gauge
centrifugo_node_{name} {total}"
        );
    }
    // Nodes are processes (shards are not nodes); with the Redis engine, those heard from.
    let _ = writeln!(
        text,
        "# HELP centrifugo_node_num_nodes Number of nodes in the cluster.
# TYPE centrifugo_node_num_nodes gauge
centrifugo_node_num_nodes {nodes}"
    );
    let _ = writeln!(
        text,
        "# HELP centrifugo_node_build Node build info.
# TYPE centrifugo_node_build gauge
centrifugo_node_build{{version=\"{version}\"}} 1"
    );
    latencies.render(&mut text);
    for (name, kind, help, field) in METRICS {
        let total: u64 = per_shard.iter().map(field).sum();
        let _ = writeln!(
            text,
            "# HELP ringcast_{name} {help}\n# TYPE ringcast_{name} {kind}\nringcast_{name} {total}"
        );
        let _ = writeln!(
            text,
            "# HELP ringcast_shard_{name} {help} Per shard.\n# TYPE ringcast_shard_{name} {kind}"
        );
        for (id, stats) in per_shard.iter().enumerate() {
            let _ = writeln!(
                text,
                "ringcast_shard_{name}{{shard=\"{id}\"}} {}",
                field(stats)
            );
        }
    }
    let broadcasts = ShardStats::sum(per_shard);
    let _ = writeln!(
        text,
        "# HELP ringcast_broadcast_channels Channels named per /api/broadcast call.\n\
         # TYPE ringcast_broadcast_channels histogram"
    );
    let mut cumulative = 0;
    for (i, count) in broadcasts.broadcasts.iter().enumerate() {
        cumulative += count;
        match BROADCAST_BUCKETS.get(i) {
            Some(le) => {
                let _ = writeln!(
                    text,
                    "ringcast_broadcast_channels_bucket{{le=\"{le}\"}} {cumulative}"
                );
            }
            None => {
                let _ = writeln!(
                    text,
                    "ringcast_broadcast_channels_bucket{{le=\"+Inf\"}} {cumulative}\n\
                     ringcast_broadcast_channels_sum {}\n\
                     ringcast_broadcast_channels_count {cumulative}",
                    broadcasts.broadcast_channels
                );
            }
        }
    }
    let _ = writeln!(
        text,
        "# HELP ringcast_refusals_total Connects and client commands refused by the access \
         rules or a token, by reason.\n# TYPE ringcast_refusals_total counter"
    );
    for refusal in Refusal::ALL {
        let total: u64 = per_shard.iter().map(|s| s.refusals[refusal.index()]).sum();
        let _ = writeln!(
            text,
            "ringcast_refusals_total{{reason=\"{}\"}} {total}",
            refusal.as_str()
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_per_shard_lines() {
        let a = ShardStats {
            connections: 2,
            ..ShardStats::default()
        };
        let b = ShardStats {
            connections: 3,
            ..ShardStats::default()
        };
        let text = render(&[a, b], &Latencies::default(), 1, "1.2.3");
        assert!(text.contains("\nringcast_connections 5\n"), "{text}");
        assert!(text.contains("\ncentrifugo_node_num_clients 5\n"), "{text}");
        assert!(
            text.contains("centrifugo_node_build{version=\"1.2.3\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ringcast_shard_connections{shard=\"1\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE ringcast_publications_total counter\n"));
    }
}
