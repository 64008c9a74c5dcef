#!/usr/bin/env bash
# Image promotion: bluegreen's copy against skopeo on the stand-in's registries; see
# bench/promotion.py. Writes bench/results/promotion.md.
#   ROUNDS=3 LAYER_MIB=40 BIG_MIB=1024 bash bench/promotion.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$ROOT"
need_apt docker-registry apache2-utils skopeo time
need_venv
export AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL
say "release build of bluegreen's bench entry points"
cargo build --release --locked -p bluegreen --example bench
"$VENV/bin/python" bench/promotion.py
