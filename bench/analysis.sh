#!/usr/bin/env bash
# The traffic analysis's detection time against an alarm, and its false rollbacks on good releases;
# see bench/analysis.py. Writes bench/results/analysis.md.
#   RATE=150 THREADS=6 BAKE=30 GOOD_RUNS=20 bash bench/analysis.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$ROOT"
need_apt docker-registry apache2-utils
need_venv
export AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL
say "release builds of bluegreen and the service"
cargo build --release --locked -p bluegreen --bin bluegreen
cargo build --release --locked -p service --bin service
"$VENV/bin/python" bench/analysis.py
