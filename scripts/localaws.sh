#!/usr/bin/env bash
# `make localaws`: the local AWS stand-in in the foreground, for the demo and for poking at it by hand.
#   PORT=4566 make localaws        then, in another shell:
#   export AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
#          AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
#   curl -s $AWS_ENDPOINT_URL/_localaws/status
# Ctrl-C stops it and every registry and task it started.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

need_apt docker-registry apache2-utils
need_venv
port="${PORT:-4566}"
state="${STATE_DIR:-$ROOT/.state/localaws}"
mkdir -p "$state"
cat >&2 <<MSG
==> starting the local AWS stand-in on 127.0.0.1:$port (state in ${state#"$ROOT"/})
    export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \\
           AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
    status:     curl -s http://127.0.0.1:$port/_localaws/status
    seed:       curl -s -XPOST http://127.0.0.1:$port/_localaws/seed -d '{"account":"111111111111","region":"us-east-1","repository":"hello","tag":"v1.1.0","argv":["$ROOT/target/debug/service"]}'
    bootstrap:  curl -s -XPOST http://127.0.0.1:$port/_localaws/bootstrap -d @spec.json   (see tools/localaws/bootstrap.py)
MSG
AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  PYTHONPATH="$ROOT/tools" exec "$VENV/bin/python" -m localaws serve --port "$port" --state-dir "$state"
