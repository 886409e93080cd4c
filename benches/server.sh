# Sourced by the bench scripts: starts a release server on a free loopback port with a
# temporary data directory, and reads its CPU time.
#
#   start_server BINARY SHARDS   sets $port, $pid and $data (removed at exit); the server
#                                 runs with API key "k" and HMAC secret "s", clients allowed
#                                 to subscribe to channels without a namespace, extra
#                                 settings from the environment, its output in $data/server.log
#   cpu_ticks                    the server's user + system time so far, in 10 ms ticks
#   stop_server                  stops it

start_server() {
  local bin="$1" shards="$2"
  data=$(mktemp -d)
  trap 'rm -rf "$data"' EXIT
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # The load generator's clients subscribe by themselves (Centrifugo's default refuses them).
  RINGCAST_CHANNEL_WITHOUT_NAMESPACE_ALLOW_SUBSCRIBE_FOR_CLIENT="${RINGCAST_CHANNEL_WITHOUT_NAMESPACE_ALLOW_SUBSCRIBE_FOR_CLIENT:-true}" \
  "$bin" serve --address 127.0.0.1 --port "$port" --shards "$shards" --api-key k \
    --token-hmac-secret-key s --data-dir "$data/data" >"$data/server.log" 2>&1 &
  pid=$!
  # Bounded: 10 s for the server to answer.
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
}

cpu_ticks() {
  awk '{print $14 + $15}' "/proc/$pid/stat"
}

stop_server() {
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}
