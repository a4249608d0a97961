#!/usr/bin/env bash
# matmap in one command.
#   ./run.sh          set up, build the crystal-graph map of mp2024 if needed, serve http://127.0.0.1:8050 with
#                     gunicorn (gunicorn.conf.py), and build what is missing of the rest in the background (the XRD
#                     map, the latent explorer's voxel store; progress in data/logs/background-build.log; the app
#                     says what is being built and shows it when written); ./run.sh serve --bind 0.0.0.0:8050
#                     passes options to gunicorn (development server with Dash's dev tools: .venv/bin/python app.py --debug)
#   ./run.sh test     set up (plus Debian chromium for browser tests) and run the test suite
#   ./run.sh setup    only create .venv and install the requirements
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=.venv

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
}

browser() {
  if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
  fi
}

case "${1:-serve}" in
  setup)
    setup ;;
  test)
    setup
    browser
    shift
    exec "$VENV/bin/python" -m pytest "$@" ;;
  serve)
    setup
    dataset=${MATMAP_DATASET:-mp2024}
    # the crystal-graph map first: the app serves as soon as it is there (at once when it is built)
    "$VENV/bin/python" -m ml build --dataset "$dataset" --views crystal
    # then, beside the server, the XRD map and the latent explorer's voxel store (nothing when both are built,
    # resumed when an earlier run was interrupted, skipped when one already runs); the server reloads them
    log="${MATMAP_DATA_DIR:-data}/logs/background-build.log"
    mkdir -p "$(dirname "$log")"
    nohup "$VENV/bin/python" -m ml finish-build --dataset "$dataset" --log "$log" >>"$log" 2>&1 </dev/null &
    echo "building the rest in the background (XRD map, voxel store): tail -f $log" >&2
    if [ $# -gt 0 ]; then shift; fi
    exec "$VENV/bin/gunicorn" --config gunicorn.conf.py "$@" app:server ;;
  *)
    echo "usage: ./run.sh [serve|test|setup]" >&2; exit 2 ;;
esac
