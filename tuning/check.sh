#!/usr/bin/env bash
# Compares this host with tuning/'s recommendations and names each shortfall with its fix.
# Exits 1 when a shortfall caps the connection limit (the one given, or the configuration's
# client.connection_limit), 0 otherwise; it changes nothing.
#
#   tuning/check.sh [--connections N] [--config FILE] [--binary PATH]
#
# N defaults to client.connection_limit of FILE (read with `ringcast checkconfig`); without
# either, only what would stop ringcast altogether (io_uring disabled) fails the check.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
connections=0
config=""
binary="${RINGCAST_BIN:-ringcast}"
while [ $# -gt 0 ]; do
  case "$1" in
    --connections) connections="${2:?}"; shift 2 ;;
    --config) config="${2:?}"; shift 2 ;;
    --binary) binary="${2:?}"; shift 2 ;;
    *) echo "usage: $0 [--connections N] [--config FILE] [--binary PATH]" >&2; exit 2 ;;
  esac
done
if [ "$connections" = 0 ] && [ -n "$config" ]; then
  connections=$("$binary" checkconfig --config "$config" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["client"].get("connection_limit", 0))' 2>/dev/null || echo 0)
fi
# What the server needs beyond its connections (listeners, rings, history files).
reserve=256
need=$((connections + reserve))
caps=0
short=0

report() { # STATUS NAME NOW WANT FIX
  printf '%-6s %-34s now %-24s want %-20s %s\n' "$1" "$2" "$3" "$4" "$5"
}
recommended() { grep -E "^$1 *=" "$here/sysctl.conf" | head -1 | cut -d= -f2 | tr -s ' ' ' ' | sed 's/^ //; s/ $//'; }
sysctl_now() { sysctl -n "$1" 2>/dev/null | tr -s '[:space:]' ' ' | sed 's/^ //; s/ $//'; }

# A numeric setting: below what the connections need caps them; below the recommendation is
# a shortfall.
check_number() { # KEY CAPS_BELOW FIX
  local key="$1" floor="$2" fix="$3" now want
  now=$(sysctl_now "$key")
  want=$(recommended "$key")
  if [ -z "$now" ]; then
    report "absent" "$key" "-" "$want" "(not on this kernel or module not loaded)"
  elif [ "$floor" -gt 0 ] && [ "$now" -lt "$floor" ]; then
    caps=$((caps + 1)); report "CAPS" "$key" "$now" "$want" "caps $connections connections: $fix"
  elif [ "$now" -lt "${want%% *}" ]; then
    short=$((short + 1)); report "short" "$key" "$now" "$want" "$fix"
  else
    report "ok" "$key" "$now" "$want" ""
  fi
}

fix_sysctl="sudo tuning/apply.sh (or sysctl -w, and /etc/sysctl.d/60-ringcast.conf)"
floor=0; [ "$connections" -gt 0 ] && floor=$need
echo "ringcast host check ($([ "$connections" -gt 0 ] && echo "$connections connections" || echo "no connection limit given"))"
check_number fs.file-max "$floor" "$fix_sysctl"
check_number fs.nr_open "$floor" "$fix_sysctl"
check_number net.core.somaxconn 0 "$fix_sysctl"
check_number net.ipv4.tcp_max_syn_backlog 0 "$fix_sysctl"
check_number net.core.netdev_max_backlog 0 "$fix_sysctl"
# conntrack drops what its table cannot hold: where it is loaded it caps the connections.
check_number net.netfilter.nf_conntrack_max "$floor" "$fix_sysctl (or no stateful firewall on this port)"
# tcp_fin_timeout is better lower: above the recommendation is the shortfall.
fin=$(sysctl_now net.ipv4.tcp_fin_timeout)
if [ -n "$fin" ] && [ "$fin" -gt "$(recommended net.ipv4.tcp_fin_timeout)" ]; then
  short=$((short + 1))
  report "short" "net.ipv4.tcp_fin_timeout" "$fin" "$(recommended net.ipv4.tcp_fin_timeout)" "$fix_sysctl"
elif [ -n "$fin" ]; then
  report "ok" "net.ipv4.tcp_fin_timeout" "$fin" "$(recommended net.ipv4.tcp_fin_timeout)" ""
fi

# Open files of the process: the service's LimitNOFILE when the unit is installed, else this
# shell's hard limit (ringcast raises its soft limit to the hard one at start).
nofile=""
source="this shell's hard limit (ulimit -Hn)"
if command -v systemctl >/dev/null 2>&1 && systemctl cat ringcast >/dev/null 2>&1; then
  nofile=$(systemctl show ringcast -p LimitNOFILE --value 2>/dev/null)
  source="ringcast.service LimitNOFILE"
fi
[ -z "$nofile" ] && nofile=$(ulimit -Hn)
[ "$nofile" = "infinity" ] || [ "$nofile" = "unlimited" ] && nofile=$((1 << 62))
if [ "$connections" -gt 0 ] && [ "$nofile" -lt "$need" ]; then
  caps=$((caps + 1))
  report "CAPS" "open files ($source)" "$nofile" "$need" "caps $connections connections: LimitNOFILE in tuning/ringcast.service, or tuning/limits.conf"
elif [ "$nofile" -lt 1048576 ]; then
  short=$((short + 1))
  report "short" "open files ($source)" "$nofile" "4194304" "LimitNOFILE in tuning/ringcast.service, or tuning/limits.conf"
else
  report "ok" "open files ($source)" "$nofile" "4194304" ""
fi

# io_uring: disabled (kernel.io_uring_disabled = 1 or 2 on 6.6+) stops ringcast altogether.
if [ -r /proc/sys/kernel/io_uring_disabled ]; then
  disabled=$(cat /proc/sys/kernel/io_uring_disabled)
  if [ "$disabled" != 0 ]; then
    caps=$((caps + 1))
    report "CAPS" "kernel.io_uring_disabled" "$disabled" "0" "ringcast cannot start: sudo sysctl -w kernel.io_uring_disabled=0"
  else
    report "ok" "kernel.io_uring_disabled" "$disabled" "0" ""
  fi
fi
# Locked memory: io_uring's rings count against it on kernels before 5.12.
memlock=$(ulimit -Hl)
kernel=$(uname -r | cut -d. -f1-2)
if [ "$memlock" != "unlimited" ] && [ "$(printf '%s\n5.12\n' "$kernel" | sort -V | head -1)" != "5.12" ] && [ "$memlock" -lt 65536 ]; then
  short=$((short + 1))
  report "short" "locked memory (ulimit -Hl, KiB)" "$memlock" "unlimited" "LimitMEMLOCK=infinity (tuning/ringcast.service) on kernel $kernel"
else
  report "ok" "locked memory (ulimit -Hl, KiB)" "$memlock" "unlimited" "(io_uring does not need it on kernel $kernel)"
fi

echo "$caps shortfall(s) capping the connections, $short other shortfall(s)"
[ "$caps" -eq 0 ]
