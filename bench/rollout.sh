#!/usr/bin/env bash
# Rollback latency vs region count, detection latency and API economy on the stand-in; see
# bench/rollout.py. Writes bench/results/rollout.md.
#   COUNTS=1,2,4,8 DETECT_RUNS=5 ROLLBACK_RUNS=3 LATENCY_MS=50 bash bench/rollout.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$ROOT"
need_apt docker-registry apache2-utils
need_venv
export AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL
say "release builds of bluegreen, its bench entry points and the service"
cargo build --release --locked -p bluegreen --bin bluegreen --example bench
cargo build --release --locked -p service --bin service
"$VENV/bin/python" bench/rollout.py
