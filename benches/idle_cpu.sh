#!/usr/bin/env bash
# Server CPU while holding idle connections: a release server with one shard, `ringcast-load
# idle` holding N connections (each connected and subscribed to its own channel); once they
# are all up, the server's CPU is read from /proc/<pid>/stat over WINDOW seconds (10 ms
# ticks) and printed as % of one core and % per 10,000 connections. Extra server settings
# go in the environment (e.g. RINGCAST_CLIENT_PING_INTERVAL=600s to see the cost without
# the pings).
#
#   benches/idle_cpu.sh [BINARY] [CONNECTIONS] [WINDOW]
set -euo pipefail
bin="${1:-target/release/ringcast}"
connections="${2:-10000}"
window="${3:-60}"
load="${LOAD:-target/release/ringcast-load}"
. "$(dirname "$0")/server.sh"
start_server "$bin" 1
"$load" idle --ws-url "ws://127.0.0.1:$port/connection/websocket" \
  --api-url "http://127.0.0.1:$port/api" --api-key k --token-secret s \
  --connections "$connections" --hold "$((window + 30))" --connect-parallel 256 \
  --per-worker 2500 --out "$data/out" >"$data/load.log" 2>&1 &
load_pid=$!
# Wait (bounded) until the server holds every connection.
for _ in $(seq 120); do
  held=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^ringcast_connections[ {]/ && !/shard=/ {print $2}')
  [ "${held:-0}" -ge "$connections" ] && break
  sleep 1
done
sleep 5
before=$(cpu_ticks)
sleep "$window"
after=$(cpu_ticks)
python3 -c "
t = ($after - $before) * 10 / 1000 / $window * 100
print(f'held ${held:-?} connections; server CPU {t:.2f}% of a core over ${window} s, {t * 10000 / $connections:.2f}% per 10,000')"
kill "$load_pid" 2>/dev/null || true
wait "$load_pid" 2>/dev/null || true
stop_server
