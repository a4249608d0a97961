#!/usr/bin/env bash
# matmap in one command.
#   ./run.sh          set up, build the map of mp2024 and the VAE's voxel store if needed, serve http://127.0.0.1:8050
#                     with gunicorn (gunicorn.conf.py); ./run.sh serve --bind 0.0.0.0:8050 passes options to gunicorn
#                     (development server with Dash's dev tools: .venv/bin/python app.py --debug)
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
    "$VENV/bin/python" -m ml build --dataset "${MATMAP_DATASET:-mp2024}"
    # the latent explorer (/generate) encodes known compounds from the VAE's voxel store (cached)
    # (optional: the other pages work without it, and /generate says how to build it)
    "$VENV/bin/python" -m ml vae-data --dataset mp2024 \
      || echo "warning: the latent explorer's voxel store was not built; /generate will say how to build it" >&2
    if [ $# -gt 0 ]; then shift; fi
    exec "$VENV/bin/gunicorn" --config gunicorn.conf.py "$@" app:server ;;
  *)
    echo "usage: ./run.sh [serve|test|setup]" >&2; exit 2 ;;
esac
