#!/usr/bin/env bash
# The seed's Redis table: one /api/broadcast to M personal channels (history on) with the Redis
# engine, on R independent redis-servers (client-side sharding) or a Redis Cluster of N
# masters, through benches/broadcast.sh (`ringcast-load broadcast`: API answer time and
# delivery time), plus the Redis servers' CPU per publication over the run and where it went.
#
#   benches/redis_broadcast.sh [REDIS] [MEMBERS] [ONLINE] [MESSAGES]
#
# REDIS: R instances (default 1) or cN for a cluster of N masters. Defaults: 10000 members,
# 1000 online, 10 messages. redis-server and redis-cli must be on PATH (Debian: apt-get install
# redis-server).
set -euo pipefail
kind="${1:-1}"
members="${2:-10000}"
online="${3:-1000}"
messages="${4:-10}"
. "$(dirname "$0")/redis.sh"
start_redis "$kind"
before=$(redis_ticks)
env RINGCAST_ENGINE_TYPE=redis "$redis_env" \
  "$(dirname "$0")/broadcast.sh" target/release/ringcast 2 "$members" "$online" "$messages"
after=$(redis_ticks)
redis_commandstats
python3 -c "print(f'redis CPU {($after - $before) * 10} ms over {len(\"${redis_ports[*]}\".split())} instance(s) for $messages x $members publications: {($after - $before) * 10000 / ($messages * $members):.2f} us per publication')"
