#!/usr/bin/env bash
# Tests the release workflow's scripts against fakes: release-image-check.sh with an `aws` on PATH
# that answers describe-images from $FAKE_ECR ("tag=digest" pairs) as the AWS CLI does (the digest
# on stdout, or ImageNotFoundException on stderr and exit 254); session-seconds.sh with a
# `bluegreen` that prints validate's JSON lines. One line per case; exit 1 if any failed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir "$tmp/bin"
cat > "$tmp/bin/aws" <<'FAKE'
#!/usr/bin/env bash
echo "$*" >> "$FAKE_CALLS"
[ -z "${FAKE_FAIL:-}" ] || { echo "$FAKE_FAIL" >&2; exit 254; }
tag=""
for a in "$@"; do case $a in imageTag=*) tag=${a#imageTag=} ;; esac; done
for kv in $FAKE_ECR; do
  [ "${kv%%=*}" = "$tag" ] && { echo "${kv#*=}"; exit 0; }
done
echo "An error occurred (ImageNotFoundException) when calling the DescribeImages operation: The image with imageId {imageDigest:'null', imageTag:'$tag'} does not exist within the repository with name 'hello' in the registry with id '111111111111'" >&2
exit 254
FAKE
chmod +x "$tmp/bin/aws"

commit=0123456789abcdef0123456789abcdef01234567
d1=sha256:1111111111111111111111111111111111111111111111111111111111111111
d2=sha256:2222222222222222222222222222222222222222222222222222222222222222
failed=0

# case_ NAME WANT_EXIT WANT_IN_LOG WANT_LINE_IN_GITHUB_OUTPUT FAKE_ECR [FAKE_FAIL]
case_() {
  local name=$1 want_rc=$2 want_text=$3 want_out=$4 rc=0 problem=""
  : > "$tmp/out"; : > "$tmp/summary"; : > "$tmp/calls"
  FAKE_ECR=$5 FAKE_FAIL=${6:-} FAKE_CALLS="$tmp/calls" GITHUB_OUTPUT="$tmp/out" \
    GITHUB_STEP_SUMMARY="$tmp/summary" GITHUB_ACTIONS="" PATH="$tmp/bin:$PATH" \
    bash "$here/release-image-check.sh" hello v1.2.0 "$commit" > "$tmp/log" 2>&1 || rc=$?
  [ "$rc" -eq "$want_rc" ] || problem="exit $rc, want $want_rc"
  grep -qF -- "$want_text" "$tmp/log" || problem="${problem:+$problem; }output lacks \"$want_text\""
  if [ -n "$want_out" ]; then
    grep -qxF -- "$want_out" "$tmp/out" || problem="${problem:+$problem; }GITHUB_OUTPUT lacks $want_out"
  elif [ -s "$tmp/out" ]; then
    problem="${problem:+$problem; }GITHUB_OUTPUT written on a refusal: $(tr '\n' ' ' < "$tmp/out")"
  fi
  grep -q -- "--repository-name hello --image-ids imageTag=v1.2.0" "$tmp/calls" \
    || problem="${problem:+$problem; }never asked ECR for hello:v1.2.0"
  if [ -z "$problem" ]; then
    echo "ok   release-image-check: $name"
  else
    echo "FAIL release-image-check: $name: $problem"
    sed 's/^/     /' "$tmp/log"
    failed=1
  fi
}

case_ "absent: builds" 0 "not in ECR yet" "build=true" ""
case_ "same digest under both tags: skips build and push" 0 "already in ECR as $d1" "build=false" \
  "v1.2.0=$d1 sha-$commit=$d1"
if ! grep -qxF "digest=$d1" "$tmp/out" || ! grep -qF "$d1" "$tmp/summary"; then
  echo "FAIL release-image-check: the skip writes its digest to GITHUB_OUTPUT and the step summary"
  failed=1
fi
case_ "version from another commit (different digest): refused" 1 \
  "v1.2.0 is already in ECR (hello) as $d1, built from another commit (sha-$commit is $d2); tags are IMMUTABLE: cut a new version" \
  "" "v1.2.0=$d1 sha-$commit=$d2"
case_ "version from another commit (no commit tag): refused" 1 \
  "built from another commit (sha-$commit is not in ECR); tags are IMMUTABLE" "" "v1.2.0=$d1"
case_ "this commit already released as another version: refused" 1 \
  "sha-$commit is $d2, built for another version of this commit" "" "sha-$commit=$d2"
case_ "an AWS error is an error, never 'absent'" 2 "AccessDeniedException" "" "" \
  "An error occurred (AccessDeniedException) when calling the DescribeImages operation: not authorized"

# session-seconds.sh: a fake `bluegreen validate` whose result states $FAKE_WORST (or fails).
cat > "$tmp/bin/bluegreen" <<'FAKE'
#!/usr/bin/env bash
echo "$*" > "$FAKE_CALLS"
if [ -n "${FAKE_PLAN_FAIL:-}" ]; then
  echo '{"type":"error","exit_code":2,"message":"'"$FAKE_PLAN_FAIL"'"}'
  exit 2
fi
echo '{"type":"result","env":"prod","waves":[["us-east-1"]],"worst_case_seconds":'"$FAKE_WORST"'}'
FAKE
chmod +x "$tmp/bin/bluegreen"

# session NAME WANT_EXIT WANT_IN_LOG WANT_LINE_IN_GITHUB_OUTPUT FAKE_WORST [FAKE_PLAN_FAIL]
session() {
  local name=$1 want_rc=$2 want_text=$3 want_out=$4 rc=0 problem=""
  : > "$tmp/out"; : > "$tmp/calls"
  BLUEGREEN="$tmp/bin/bluegreen" FAKE_WORST=$5 FAKE_PLAN_FAIL=${6:-} FAKE_CALLS="$tmp/calls" \
    GITHUB_OUTPUT="$tmp/out" GITHUB_ACTIONS="" MAX_SESSION_SECONDS=14400 \
    bash "$here/session-seconds.sh" prod > "$tmp/log" 2>&1 || rc=$?
  [ "$rc" -eq "$want_rc" ] || problem="exit $rc, want $want_rc"
  grep -qF -- "$want_text" "$tmp/log" || problem="${problem:+$problem; }output lacks \"$want_text\""
  if [ -n "$want_out" ]; then
    grep -qxF -- "$want_out" "$tmp/out" || problem="${problem:+$problem; }GITHUB_OUTPUT lacks $want_out"
  elif [ -s "$tmp/out" ]; then
    problem="${problem:+$problem; }GITHUB_OUTPUT written on a failure: $(tr '\n' ' ' < "$tmp/out")"
  fi
  grep -qxF "validate -e prod --output json" "$tmp/calls" || problem="${problem:+$problem; }never ran bluegreen validate -e prod --output json"
  if [ -z "$problem" ]; then
    echo "ok   session-seconds: $name"
  else
    echo "FAIL session-seconds: $name: $problem"
    sed 's/^/     /' "$tmp/log"
    failed=1
  fi
}

session "worst case plus 15 min (prod's 4290 s)" 0 "worst case 4290s: a 5190s session" "seconds=5190" 4290
session "capped at the role's maximum, with a warning" 0 "more than the role's 14400s maximum session" "seconds=14400" 14000
session "a bad environment file fails, with its message" 1 "bluegreen.toml:3: waves" "" 0 "environments/prod/bluegreen.toml:3: waves: us-east-2 is in no wave"
session "no worst_case_seconds is an error, not a session" 1 "gave no worst_case_seconds" "" null

exit "$failed"
