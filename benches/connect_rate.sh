#!/usr/bin/env bash
# Connect rate and the server's CPU per connect: a release server with one shard on CPU 0,
# `ringcast-load idle` on CPU 1 opening N connections (each connected and subscribed to its
# own channel), server CPU from /proc/<pid>/stat over the connect phase (10 ms ticks).
#
#   benches/connect_rate.sh [BINARY] [CONNECTIONS] [RUNS]
#
# BINARY defaults to target/release/ringcast; the load generator is target/release/
# ringcast-load (`cargo build --release --workspace`). Each run uses a free port and a
# temporary data directory, and prints one line. LOAD_ARGS adds load generator flags
# (`--sub-tokens`; `--token-rsa-key tests/fixtures/token-rsa-private.pem` with the server's
# RINGCAST_CLIENT_TOKEN_RSA_PUBLIC_KEY set to the public key); the server inherits the
# environment.
set -euo pipefail
bin="${1:-target/release/ringcast}"
connections="${2:-10000}"
runs="${3:-1}"
load="${LOAD:-target/release/ringcast-load}"
for _ in $(seq "$runs"); do
  data=$(mktemp -d)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  RINGCAST_CHANNEL_WITHOUT_NAMESPACE_ALLOW_SUBSCRIBE_FOR_CLIENT=true \
  taskset -c 0 "$bin" serve --address 127.0.0.1 --port "$port" --shards 1 --api-key k \
    --token-hmac-secret-key s --data-dir "$data/data" >"$data/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  taskset -c 1 "$load" idle --ws-url "ws://127.0.0.1:$port/connection/websocket" \
    --api-url "http://127.0.0.1:$port/api" --api-key k --token-secret s \
    --connections "$connections" --hold 1 --connect-parallel 256 --per-worker 2500 \
    --server-pid "$pid" --out "$data/out" ${LOAD_ARGS:-} 2>&1 | grep -E "connected in" || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$data"
done
