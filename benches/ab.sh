#!/usr/bin/env bash
# Runs the fan-out and idle-connection benchmarks of two checkouts back to back, alternating,
# for ROUNDS rounds: before, after, before, after, ... Figures from one run compare; figures
# from runs on different days do not (the VM's speed drifts).
#
#   benches/ab.sh BEFORE_DIR AFTER_DIR [ROUNDS]
#
# e.g. `git worktree add /tmp/before 1ea8706 && benches/ab.sh /tmp/before . 3`
set -euo pipefail
before=$(cd "$1" && pwd)
after=$(cd "$2" && pwd)
rounds="${3:-3}"
for dir in "$before" "$after"; do
  (cd "$dir" && cargo bench --bench fanout --bench idle_connections --no-run >/dev/null 2>&1 \
    && cargo build --release -p ringcast --bin ringcast >/dev/null 2>&1)
done
bench() { ls -t "$1"/target/release/deps/"$2"-* | grep -v '\.d$' | head -1; }
for round in $(seq "$rounds"); do
  for side in before after; do
    dir=$before; [ "$side" = after ] && dir=$after
    echo "=== fanout $side round $round"
    (cd "$dir" && "$(bench "$dir" fanout)")
    echo "=== idle_connections $side round $round"
    (cd "$dir" && "$(bench "$dir" idle_connections)")
  done
done
