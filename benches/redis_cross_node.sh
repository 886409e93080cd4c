#!/usr/bin/env bash
# Cross-node delivery latency with the Redis engine: two release ringcast nodes (2 shards
# each) on the same Redis; SUBSCRIBERS clients on node A subscribed to one channel (history
# on), the API publishing through node B at each steady rate for STEP seconds
# (`ringcast-load fanout`); every publication travels B → Redis → A. Prints the scenario's
# table (delivery p50/p99 per rate) and Redis's CPU per publication.
#
#   benches/redis_cross_node.sh [REDIS] [SUBSCRIBERS] [RATES] [STEP]
#
# REDIS as in redis_broadcast.sh (R instances or cN, default 1); defaults: 100 subscribers,
# rates 100,1000 per second, 10 s each.
set -euo pipefail
kind="${1:-1}"
subscribers="${2:-100}"
rates="${3:-100,1000}"
step="${4:-10}"
bin=target/release/ringcast
load=target/release/ringcast-load
. "$(dirname "$0")/redis.sh"
start_redis "$kind"
nodes=()
ports=()
stop_nodes() { for p in "${nodes[@]}"; do kill "$p" 2>/dev/null || true; done; stop_redis; }
trap stop_nodes EXIT
for name in a b; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  env RINGCAST_ENGINE_TYPE=redis "$redis_env" \
    RINGCAST_CHANNEL_WITHOUT_NAMESPACE_ALLOW_SUBSCRIBE_FOR_CLIENT=true \
    RINGCAST_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE=10 \
    RINGCAST_CHANNEL_WITHOUT_NAMESPACE_HISTORY_TTL=300s \
    "$bin" serve --address 127.0.0.1 --port "$port" --shards 2 --api-key k \
    --token-hmac-secret-key s --data-dir "$redis_dir/node-$name" >"$redis_dir/node-$name.log" 2>&1 &
  nodes+=($!)
  ports+=("$port")
  # Bounded: 10 s for the node to answer.
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/health" >/dev/null \
    || { echo "node $name never answered:" >&2; cat "$redis_dir/node-$name.log" >&2; exit 1; }
done
before=$(redis_ticks)
"$load" fanout --ws-url "ws://127.0.0.1:${ports[0]}/connection/websocket" \
  --api-url "http://127.0.0.1:${ports[1]}/api" --api-key k --token-secret s \
  --subscribers "$subscribers" --rates "$rates" --step "$step" --all 2>&1 \
  | grep -E "^(label|rate=)"
after=$(redis_ticks)
echo "redis CPU $(((after - before) * 10)) ms over the run"
redis_commandstats
