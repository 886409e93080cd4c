#!/usr/bin/env bash
# The seed's Redis table: one /api/broadcast to M personal channels (history on) with the Redis
# engine, on R independent redis-servers (client-side sharding), through benches/broadcast.sh
# (`ringcast-load broadcast`: API answer time and delivery time), plus the Redis servers' CPU
# per publication over the run.
#
#   benches/redis_broadcast.sh [REDIS_INSTANCES] [MEMBERS] [ONLINE] [MESSAGES]
#
# Defaults: 1 instance, 10000 members, 1000 online, 10 messages. redis-server must be on PATH
# (Debian: apt-get install redis-server).
set -euo pipefail
instances="${1:-1}"
members="${2:-10000}"
online="${3:-1000}"
messages="${4:-10}"
dir=$(mktemp -d)
pids=()
addresses=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
for i in $(seq "$instances"); do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$dir" \
    >"$dir/redis-$i.log" 2>&1 &
  pids+=($!)
  addresses+=("127.0.0.1:$port")
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
done
redis_ticks() { local t=0; for p in "${pids[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
before=$(redis_ticks)
RINGCAST_ENGINE_TYPE=redis RINGCAST_ENGINE_REDIS_ADDRESS="${addresses[*]}" \
  "$(dirname "$0")/broadcast.sh" target/release/ringcast 2 "$members" "$online" "$messages"
after=$(redis_ticks)
# Where Redis spent its time, per command (script calls and the commands they ran), summed
# over the instances: calls and microseconds per call.
for a in "${addresses[@]}"; do redis-cli -p "${a##*:}" info commandstats; done | python3 -c '
import sys, collections
calls, usec = collections.Counter(), collections.Counter()
for line in sys.stdin:
    if line.startswith("cmdstat_"):
        name, fields = line.strip()[8:].split(":", 1)
        f = dict(kv.split("=") for kv in fields.split(","))
        calls[name] += int(f["calls"]); usec[name] += int(f["usec"])
for name, n in calls.most_common():
    print(f"redis {name}: {n} calls, {usec[name] / max(n, 1):.2f} us per call, {usec[name] / 1000:.1f} ms")
'
python3 -c "print(f'redis CPU {($after - $before) * 10} ms over {$instances} instance(s) for $messages x $members publications: {($after - $before) * 10000 / ($messages * $members):.2f} us per publication')"
