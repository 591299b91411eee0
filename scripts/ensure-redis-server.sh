#!/usr/bin/env bash
# Makes sure a redis-server binary is on PATH (Tweezer starts its own; it never uses a shared
# instance). Installs Debian's redis-server package when it is missing and we may, otherwise
# stops and says how.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
echo "redis-server not found: installing Debian's redis-server package..." >&2
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "Cannot install redis-server without root. Run: sudo apt-get install redis-server" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "No apt-get here. Install redis-server (>= 7.0) with your package manager." >&2
  exit 1
fi
$SUDO apt-get update -q
# The package's own service is not needed (and port 6379 may be taken): do not start it.
$SUDO env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -q --no-install-recommends redis-server
command -v redis-server >/dev/null 2>&1 || { echo "redis-server still missing after install" >&2; exit 1; }
