#!/usr/bin/env bash
# One /api/broadcast to the personal channels (history on) of a room of M members, ONLINE of
# them connected (`ringcast-load broadcast`), against a release server with SHARDS shards,
# everything sharing the machine's cores; prints the scenario's table and the server's CPU
# per channel over the whole run (from /proc/<pid>/stat, 10 ms ticks; connects included).
#
#   benches/broadcast.sh [BINARY] [SHARDS] [MEMBERS] [ONLINE] [MESSAGES]
#
# Defaults: target/release/ringcast, 2 shards, 100000 members, 1000 online, 20 messages;
# LOAD names another load generator (default target/release/ringcast-load); LOAD_ARGS adds
# flags (e.g. "--single-publishes --api-connections 4 --window 64": one /api/publish per
# channel, pipelined, instead of one /api/broadcast).
set -euo pipefail
bin="${1:-target/release/ringcast}"
shards="${2:-2}"
members="${3:-100000}"
online="${4:-1000}"
messages="${5:-20}"
load="${LOAD:-target/release/ringcast-load}"
. "$(dirname "$0")/server.sh"
RINGCAST_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE=10 \
RINGCAST_CHANNEL_WITHOUT_NAMESPACE_HISTORY_TTL=300s \
  start_server "$bin" "$shards"
before=$(cpu_ticks)
"$load" broadcast --ws-url "ws://127.0.0.1:$port/connection/websocket" \
  --api-url "http://127.0.0.1:$port/api" --api-key k --token-secret s --members "$members" \
  --online "$online" --messages "$messages" --out "$data/out" ${LOAD_ARGS:-} 2>&1 \
  | grep -E "^(label|M=)" | tee "$data/table"
after=$(cpu_ticks)
stop_server
python3 -c "print(f'server CPU {($after - $before) * 10} ms for $messages x $members channels: {($after - $before) * 10000 / ($messages * $members):.2f} us per channel')"
