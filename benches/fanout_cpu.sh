#!/usr/bin/env bash
# One channel, 1,000 subscribers, publish rate stepped (`ringcast-load fanout`, four worker
# processes of 250) against a release server with SHARDS shards, everything sharing the
# machine's cores; prints the scenario's table and the server's CPU per delivery over all
# steps (from /proc/<pid>/stat, 10 ms ticks).
#
#   benches/fanout_cpu.sh [BINARY] [SHARDS] [RATES]
#
# BINARY defaults to target/release/ringcast, SHARDS to 2, RATES to 1000,3000; LOAD names
# another load generator (default target/release/ringcast-load).
set -euo pipefail
bin="${1:-target/release/ringcast}"
shards="${2:-2}"
rates="${3:-1000,3000}"
load="${LOAD:-target/release/ringcast-load}"
. "$(dirname "$0")/server.sh"
start_server "$bin" "$shards"
before=$(cpu_ticks)
"$load" fanout --ws-url "ws://127.0.0.1:$port/connection/websocket" \
  --api-url "http://127.0.0.1:$port/api" --api-key k --token-secret s --subscribers 1000 \
  --rates "$rates" --step 5 --per-worker 250 --all --out "$data/out" 2>&1 \
  | grep -E "^(label|rate=)" | tee "$data/table"
after=$(cpu_ticks)
stop_server
received=$(awk 'NR > 1 {s += $4} END {print s}' "$data/table")
python3 -c "print(f'server CPU {($after - $before) * 10} ms for $received deliveries: {($after - $before) * 10000 / max($received, 1):.2f} us per delivery')"
