#!/usr/bin/env bash
# `make demo`: the whole release story on the local AWS stand-in (tools/demo/demo.py). Installs what
# it needs, builds bluegreen and the service, and stops every process it started on exit.
#   make demo                 run it
#   make demo ARGS=--keep     leave the stand-in running afterwards to try commands by hand
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

need_apt docker-registry apache2-utils curl
need_venv
say "building bluegreen and the hello service"
cargo build --locked -p bluegreen -p service
exec "$VENV/bin/python" tools/demo/demo.py "$@"
