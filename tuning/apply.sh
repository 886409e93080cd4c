#!/usr/bin/env bash
# Applies tuning/ to this host: the sysctl settings (/etc/sysctl.d/60-ringcast.conf, loaded
# now), the per-user limits (/etc/security/limits.d/60-ringcast.conf) and the systemd unit
# (/etc/systemd/system/ringcast.service). Idempotent: a file already in place is left alone;
# a different one is kept as <file>.bak-<time> before it is replaced. Every change is shown
# (the setting, its value now and the value applied). Needs root, except with --dry-run,
# which shows what would change and changes nothing.
#
#   tuning/apply.sh [--dry-run]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dry=0
case "${1:-}" in
  --dry-run) dry=1 ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac
if [ "$dry" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "apply.sh changes system files: run it as root (or with --dry-run to see the changes)" >&2
  exit 2
fi
stamp=$(date +%Y%m%d-%H%M%S)
# trim TEXT: without leading and trailing blanks. squeeze TEXT: blanks (tabs too) as one space.
trim() { local t="$1"; t="${t#"${t%%[![:space:]]*}"}"; printf '%s' "${t%"${t##*[![:space:]]}"}"; }
squeeze() { printf '%s' "$1" | tr -s '[:space:]' ' ' | sed 's/^ //; s/ $//'; }
changes=0

# install SOURCE TARGET: puts SOURCE at TARGET unless it is there already.
install_file() {
  local source="$1" target="$2"
  if [ -f "$target" ] && cmp -s "$source" "$target"; then
    echo "unchanged  $target"
    return
  fi
  changes=$((changes + 1))
  if [ "$dry" = 1 ]; then
    if [ -f "$target" ]; then
      echo "would replace $target (kept as $target.bak-$stamp):"
      diff -u "$target" "$source" | sed 's/^/    /' || true
    else
      echo "would write  $target"
    fi
    return
  fi
  mkdir -p "$(dirname "$target")"
  if [ -f "$target" ]; then
    cp -p "$target" "$target.bak-$stamp"
    echo "backup     $target.bak-$stamp"
  fi
  cp "$source" "$target"
  echo "wrote      $target"
}

# The sysctl settings, each shown with its value now.
echo "== kernel settings (tuning/sysctl.conf)"
while IFS= read -r line; do
  case "$line" in ''|'#'*) continue ;; esac
  key=$(trim "${line%%=*}")
  value=$(squeeze "${line#*=}")
  now=$(squeeze "$(sysctl -n "$key" 2>/dev/null || true)")
  if [ -z "$now" ]; then
    echo "absent     $key (not on this kernel or module not loaded; skipped)"
  elif [ "$now" = "$value" ]; then
    echo "unchanged  $key = $value"
  else
    changes=$((changes + 1))
    if [ "$dry" = 1 ]; then
      echo "would set  $key: $now -> $value"
    elif sysctl -q -w "$key=$value" >/dev/null 2>&1; then
      echo "set        $key: $now -> $value"
    else
      echo "refused    $key: $now -> $value (the kernel said no: a container?)"
    fi
  fi
done < "$here/sysctl.conf"
install_file "$here/sysctl.conf" /etc/sysctl.d/60-ringcast.conf

echo "== limits for the service user (tuning/limits.conf)"
install_file "$here/limits.conf" /etc/security/limits.d/60-ringcast.conf

echo "== systemd unit (tuning/ringcast.service)"
install_file "$here/ringcast.service" /etc/systemd/system/ringcast.service
if [ "$dry" = 0 ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload && echo "reloaded   systemd units"
fi

if [ "$dry" = 1 ]; then
  echo "dry run: $changes change(s) would be made"
else
  echo "$changes change(s) made"
fi
