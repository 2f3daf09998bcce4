#!/usr/bin/env bash
# Installs the Debian packages named as arguments that are missing, with apt
# when running as root; otherwise says what to install and fails, or, with
# --best-effort first, carries on (the tests that need them skip).
set -euo pipefail
best_effort=false
if [ "${1:-}" = --best-effort ]; then best_effort=true; shift; fi
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages: ${missing[*]}; install them (sudo apt-get install ${missing[*]}) or run as root" >&2
  $best_effort && exit 0
  exit 1
fi
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt (a timer's, another make) rather than fail at once.
lock=(-o DPkg::Lock::Timeout=300)
apt-get "${lock[@]}" install -y -qq "${missing[@]}" >/dev/null ||
  { apt-get "${lock[@]}" update -qq && apt-get "${lock[@]}" install -y -qq "${missing[@]}" >/dev/null; }
