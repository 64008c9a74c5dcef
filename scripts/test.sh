#!/usr/bin/env bash
# The test command (`make test`): formatting, lints, every workspace test, and the linters.
# Installs what it needs on a fresh machine, reuses it afterwards. Ends with one PASS/FAIL line.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

step=""
trap 'rc=$?; [ $rc -eq 0 ] || echo "FAIL: make test stopped at: ${step:-setup} (exit $rc)"' EXIT

step="tool install"
# docker-registry and htpasswd: the stand-in's registries (tools/localaws).
need_apt docker-registry apache2-utils
need_venv

# Tests and tools never reach beyond loopback: no instance-metadata lookups, dummy credentials.
export AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL

step="cargo fmt --check"
say "$step"
cargo fmt --all -- --check

step="cargo clippy"
say "$step"
cargo clippy --workspace --all-targets --locked -- -D warnings

step="cargo test"
say "$step"
cargo test --workspace --locked

step="hadolint"
say "$step service/Dockerfile"
"$VENV/bin/hadolint" service/Dockerfile

echo "PASS: make test (fmt, clippy, cargo test, hadolint)"
