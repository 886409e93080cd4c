#!/usr/bin/env bash
# Redis's CPU per publication for the broadcast script and cheaper variants of it, alone on
# one redis-server (no ringcast): each variant runs 256 channels per EVALSHA over 102,400
# channels, once to create their keys, then ROUNDS more times, timed by Redis's own
# INFO commandstats (the script call's microseconds over the publications). `current` is a
# copy of PUBLISH_MANY_SCRIPT's body in src/broker/redis/stream.rs (ARGV-named keys, PUBLISH)
# as of this script's commit; the others each drop one part of it, or keep a channel's
# position and history in one hash.
#
#   benches/redis_script_cost.sh [ROUNDS]     (default 3; redis-server on PATH)
set -euo pipefail
rounds="${1:-3}"
. "$(dirname "$0")/redis.sh"
start_redis 1
port="${redis_ports[0]}"
body() { # $1: the XADD line, $2: the EXPIRE line, $3: the PUBLISH line
  cat <<EOF
local out = {}
for i = 7, #ARGV, 3 do
  local meta, stream = ARGV[i], ARGV[i + 1]
  local epoch = redis.call('hget', meta, 'e')
  if not epoch then
    epoch = ARGV[5]
    redis.call('hset', meta, 'e', epoch)
  end
  local offset = redis.call('hincrby', meta, 's', 1)
  $1
  $2
  $3
  out[#out + 1] = offset
  out[#out + 1] = epoch
end
return out
EOF
}
xadd="redis.call('xadd', stream, 'MAXLEN', ARGV[2], offset .. '-0', 'd', ARGV[1])"
expire="redis.call('expire', stream, ARGV[3])"
publish="redis.call(ARGV[6], ARGV[i + 2], offset .. ':' .. epoch .. ':' .. ARGV[1])"
one_hash=$(cat <<'EOF'
local out = {}
for i = 7, #ARGV, 3 do
  local meta = ARGV[i]
  local offset = redis.call('hincrby', meta, 's', 1)
  local epoch
  if offset == 1 then
    epoch = ARGV[5]
    redis.call('hset', meta, 'e', epoch, offset, ARGV[1])
  else
    epoch = redis.call('hget', meta, 'e')
    redis.call('hset', meta, offset, ARGV[1])
  end
  if offset > tonumber(ARGV[2]) then redis.call('hdel', meta, offset - ARGV[2]) end
  redis.call('expire', meta, ARGV[3])
  redis.call(ARGV[6], ARGV[i + 2], offset .. ':' .. epoch .. ':' .. ARGV[1])
  out[#out + 1] = offset
  out[#out + 1] = epoch
end
return out
EOF
)
run() { # $1: name, $2: script
  redis-cli -p "$port" flushall >/dev/null
  local sha
  sha=$(redis-cli -p "$port" script load "$2")
  for phase in create steady; do
    redis-cli -p "$port" config resetstat >/dev/null
    local n=1
    [ "$phase" = steady ] && n="$rounds"
    python3 - "$port" "$sha" "$n" <<'EOF'
import socket, sys
port, sha, rounds = int(sys.argv[1]), sys.argv[2].encode(), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
def command(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out
payload = b"x" * 120
calls = 0
for _ in range(rounds):
    request = b""
    for b in range(400):
        argv = []
        for k in range(256):
            c = b"u%d" % (b * 256 + k)
            argv += [b"p.m.{" + c + b"}", b"p.s.{" + c + b"}", b"p.p.{" + c + b"}"]
        request += command(b"EVALSHA", sha, 1, argv[0], payload, 10, 300, 0, b"EPOCH", b"publish", *argv)
        calls += 1
    s.sendall(request)
# Bounded by the answers: one top-level array (or error) per call.
s.sendall(command(b"PING"))
data = b""
while not data.endswith(b"+PONG\r\n"):
    chunk = s.recv(1 << 20)
    if not chunk:
        sys.exit("redis closed the connection")
    data += chunk
if b"\r\n-" in data or data.startswith(b"-"):
    sys.exit("a script call failed: " + data[:300].decode(errors="replace"))
EOF
    local usec
    usec=$(redis-cli -p "$port" info commandstats | sed -n 's/^cmdstat_evalsha:.*usec=\([0-9]*\),.*/\1/p')
    python3 -c "print(f'$1 ($phase): {$usec / (102400 * $n):.2f} us per publication')"
  done
}
run current "$(body "$xadd" "$expire" "$publish")"
trim="'MAXLEN', ARGV[2], "
run no-trim "$(body "${xadd/"$trim"/}" "$expire" "$publish")"
run no-expire "$(body "$xadd" "" "$publish")"
run no-publish "$(body "$xadd" "$expire" "")"
run one-hash "$one_hash"
