#!/usr/bin/env bash
# Memory a flood of new channel names leaves in the server: `/api/broadcast` to 1,000,000 new
# names (100 requests of 10,000, nobody subscribed) against a release server with 2 shards;
# prints the server's RSS before, right after and 12 s after (and how much of it is anonymous
# memory), and its channel metrics.
#
#   benches/channel_flood.sh [BINARY] [history: 0|1]
#
# BINARY defaults to target/release/ringcast; history 1 turns history on for every channel
# (size 10, ttl $HISTORY_TTL, default 300s; channel.history_meta_ttl $META_TTL when set).
# ROUNDS (default 1) floods again with new names after each wait of WAIT seconds (default
# 12), printing each round. Uses port 18100 and a temporary data directory.
set -euo pipefail
bin="${1:-target/release/ringcast}"
history="${2:-0}"
rounds="${ROUNDS:-1}"
wait_s="${WAIT:-12}"
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
if [ "$history" = 1 ]; then
  export RINGCAST_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE=10
  export RINGCAST_CHANNEL_WITHOUT_NAMESPACE_HISTORY_TTL="${HISTORY_TTL:-300s}"
  if [ -n "${META_TTL:-}" ]; then export RINGCAST_CHANNEL_HISTORY_META_TTL="$META_TTL"; fi
fi
"$bin" serve --address 127.0.0.1 --port 18100 --shards 2 --api-key k --data-dir "$data" \
  >"$data/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:18100/health >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
for round in $(seq "$rounds"); do
before=$(rss)
ROUND=$round python3 - <<'PY'
import json, os, urllib.request
r = os.environ["ROUND"]
for b in range(100):
    names = [f"flood-{r}-{b}-{i}" for i in range(10000)]
    body = json.dumps({"channels": names, "data": {"x": 1}}).encode()
    request = urllib.request.Request("http://127.0.0.1:18100/api/broadcast", data=body,
                                     headers={"X-API-Key": "k"})
    with urllib.request.urlopen(request) as response:
        assert len(json.loads(response.read())["result"]["responses"]) == 10000
PY
after=$(rss)
sleep "$wait_s"
later=$(rss)
metrics=$(curl -s http://127.0.0.1:18100/metrics \
  | grep -E '^ringcast_(channels|channel_states|history_channels) ' | tr '\n' ' ')
anon=$(awk '/^Anonymous/ {print $2}' "/proc/$pid/smaps_rollup")
echo "history=$history round $round: RSS ${before} kB before, ${after} kB after 1,000,000 names, ${later} kB ${wait_s} s later (anonymous ${anon} kB, the rest file-backed); $metrics"
done
kill "$pid"
wait "$pid" 2>/dev/null || true
