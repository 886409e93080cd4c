# Sourced by the Redis bench scripts: starts redis-server processes (no persistence) on free
# loopback ports, either independent instances or a Redis Cluster, and reads their CPU time.
#
#   start_redis KIND     KIND N: N independent instances; cN: a cluster of N masters
#                        (redis-cli --cluster create). Sets $redis_env (the ringcast
#                        environment naming them, for `env`) and $redis_ports; stopped and
#                        removed at exit
#   redis_ticks          their user + system time so far, in 10 ms ticks
#   redis_commandstats   where they spent it, per command, summed over them

redis_pids=()
redis_ports=()
redis_dir=$(mktemp -d)
stop_redis() { for p in "${redis_pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$redis_dir"; }
trap stop_redis EXIT

start_redis() {
  local kind="$1" count cluster=()
  count="${kind#c}"
  [ "$kind" != "$count" ] && cluster=(--cluster-enabled yes)
  for i in $(seq "$count"); do
    local port bus
    # Two free ports at once (bound together, so they differ): a cluster node's bus port
    # defaults to port + 10000, which may not exist, so it is named.
    read -r port bus < <(python3 -c 'import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')
    [ ${#cluster[@]} -gt 0 ] && cluster=(--cluster-enabled yes --cluster-port "$bus")
    mkdir -p "$redis_dir/$i"
    redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$redis_dir/$i" \
      "${cluster[@]}" >"$redis_dir/redis-$i.log" 2>&1 &
    redis_pids+=($!)
    redis_ports+=("$port")
    # Bounded: 5 s for it to answer.
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
    redis-cli -p "$port" ping >/dev/null 2>&1 || { echo "redis-server on $port never answered" >&2; exit 1; }
  done
  local addresses=()
  for p in "${redis_ports[@]}"; do addresses+=("127.0.0.1:$p"); done
  if [ ${#cluster[@]} -gt 0 ]; then
    redis-cli --cluster create "${addresses[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
    # Bounded: 20 s for every node to agree.
    for _ in $(seq 200); do
      local ok=0
      for p in "${redis_ports[@]}"; do
        redis-cli -p "$p" cluster info | grep -q cluster_state:ok && ok=$((ok + 1))
      done
      [ "$ok" -eq "$count" ] && break
      sleep 0.1
    done
    [ "$ok" -eq "$count" ] || { echo "the cluster never became ok" >&2; exit 1; }
    redis_env="RINGCAST_ENGINE_REDIS_CLUSTER_ADDRESS=${addresses[*]}"
  else
    redis_env="RINGCAST_ENGINE_REDIS_ADDRESS=${addresses[*]}"
  fi
}

redis_ticks() {
  local t=0
  for p in "${redis_pids[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}

redis_commandstats() {
  for p in "${redis_ports[@]}"; do redis-cli -p "$p" info commandstats; done | python3 -c '
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
}
