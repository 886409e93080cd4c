#!/usr/bin/env bash
# Prints the settings tuning/ changes next to their recommended values.
set -u
show() { printf '%-32s %-24s recommended %s\n' "$1" "$2" "$3"; }
show "open files (hard, this shell)" "$(ulimit -Hn)" "4194304"
for key in fs.file-max fs.nr_open net.core.somaxconn net.ipv4.tcp_max_syn_backlog net.ipv4.ip_local_port_range; do
  want=$(grep "^$key" "$(dirname "$0")/sysctl.conf" | cut -d= -f2 | xargs)
  show "$key" "$(sysctl -n "$key" 2>/dev/null | xargs)" "$want"
done
