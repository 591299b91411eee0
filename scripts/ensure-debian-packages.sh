#!/usr/bin/env bash
# Usage: ensure-debian-packages.sh COMMAND PACKAGE...
# Makes sure COMMAND is on PATH: installs Debian's PACKAGEs when it is missing and we may (root,
# or sudo), otherwise stops and says what to run. `make install` uses it for redis-server
# (Tweezer starts its own; it never uses a shared instance), `make test` for the headless
# browser of the dashboard's test (chromium and chromium-driver: nothing downloads a browser)
# and for munge (tests/test_munge.py starts its own munged).
set -euo pipefail
command_name="$1"
shift
if command -v "$command_name" >/dev/null 2>&1; then
  exit 0
fi
echo "$command_name not found: installing Debian's $* package(s)..." >&2
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "Cannot install $* without root. Run: sudo apt-get install $*" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "No apt-get here. Install $* with your package manager." >&2
  exit 1
fi
$SUDO apt-get update -q
# A package's own service (redis-server's) is not needed, and its port may be taken: do not
# start it.
$SUDO env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -q --no-install-recommends "$@"
command -v "$command_name" >/dev/null 2>&1 || { echo "$command_name still missing after install" >&2; exit 1; }
