#!/usr/bin/env bash
# The first run of ./run.sh from a clean clone, timed: seconds until the server answers its first
# page and /healthz, then until the background build (XRD map, voxel store) has finished.
#   bash bench/first_run.sh [CLONE_DIR] [PORT]      (defaults: /tmp/matmap-first-run, 8099)
# Clones this repository's HEAD into CLONE_DIR (deleted first) and links this checkout's .venv
# into it, so the install is not counted; MATMAP_MIRROR_DIR is passed through (default
# ../shared/datasets beside this checkout). Polls every 5 s; run it on idle cores. The server's
# output is in CLONE_DIR/serve.log, the phases' progress bars there and in
# CLONE_DIR/data/logs/background-build.log. Stops the server at the end.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
clone=${1:-/tmp/matmap-first-run}
port=${2:-8099}
mirror=${MATMAP_MIRROR_DIR:-$(cd "$here/.." && pwd)/shared/datasets}
rm -rf "$clone" && git clone -q "$here" "$clone" && ln -s "$here/.venv" "$clone/.venv"
cd "$clone"
start=$(date +%s)
echo "start $(date -Is) load $(cut -d' ' -f1 /proc/loadavg)"
MATMAP_MIRROR_DIR=$mirror ./run.sh serve --bind "127.0.0.1:$port" >serve.log 2>&1 &
server=$!
status() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/$1"; }
page=""; ready=""
while true; do
  sleep 5
  now=$(($(date +%s) - start))
  if [ -z "$page" ] && [ "$(status _dash-layout)" = 200 ]; then page=$now; echo "first page after ${page} s, load $(cut -d' ' -f1 /proc/loadavg)"; fi
  if [ -z "$ready" ] && [ "$(status healthz)" = 200 ]; then ready=$now; echo "/healthz 200 after ${ready} s, load $(cut -d' ' -f1 /proc/loadavg)"; fi
  if [ -n "$ready" ] && ! pgrep -f "ml finish-build" >/dev/null; then
    echo "background build finished after ${now} s"; sleep 15
    curl -s "http://127.0.0.1:$port/healthz"; echo; break
  fi
  if ! kill -0 "$server" 2>/dev/null; then echo "./run.sh exited: see $clone/serve.log"; exit 1; fi
  if [ "$now" -gt 5400 ]; then echo "gave up after 90 minutes"; break; fi
done
grep -E "map loaded|artifacts rebuilt" serve.log
kill "$server" 2>/dev/null; wait "$server" 2>/dev/null
