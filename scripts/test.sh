#!/usr/bin/env bash
# The test command (`make test`): formatting, lints, every workspace test, and the linters.
# Installs what it needs on a fresh machine, reuses it afterwards. Ends with one PASS/FAIL line.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

step=""
trap 'rc=$?; [ $rc -eq 0 ] || echo "FAIL: make test stopped at: ${step:-setup} (exit $rc)"' EXIT

step="tool install"
need_venv

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
