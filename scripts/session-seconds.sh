#!/usr/bin/env bash
# How long the release workflow's AWS session must last for `bluegreen promote VERSION -e ENV`:
# the plan's worst case (`bluegreen plan --output json`: worst_case_seconds) plus a margin, at most
# the deploy role's max_session_duration. Prints the plan's steps, writes seconds= to $GITHUB_OUTPUT
# (when set) and the number to stdout's last line.
#
# Usage: session-seconds.sh ENV VERSION. Environment: BLUEGREEN (default bin/bluegreen),
# MAX_SESSION_SECONDS (default 14400), MARGIN_SECONDS (default 900).
#
# `plan` needs no credentials step in a job with id-token: write: bluegreen takes its own session of
# the environment file's role_arn through GitHub's OIDC.
set -euo pipefail

if [ $# -ne 2 ] || [ -z "$1" ] || [ -z "$2" ]; then
  echo "usage: session-seconds.sh ENV VERSION" >&2
  exit 2
fi
env_name=$1 version=$2
bluegreen="${BLUEGREEN:-bin/bluegreen}"
max="${MAX_SESSION_SECONDS:-14400}"
margin="${MARGIN_SECONDS:-900}"
output="${GITHUB_OUTPUT:-/dev/null}"

# With --output json, events and the result (or the error) are JSON lines on stdout.
if ! plan=$("$bluegreen" plan "$version" -e "$env_name" --output json); then
  printf '%s\n' "$plan" >&2
  echo "error: bluegreen plan $version -e $env_name failed: the promote would fail the same way" >&2
  exit 1
fi
jq -r 'select(.type == "result") | .steps[]' <<<"$plan"
worst=$(jq -r 'select(.type == "result") | .worst_case_seconds' <<<"$plan")
if ! [[ "$worst" =~ ^[0-9]+$ ]]; then
  echo "error: bluegreen plan gave no worst_case_seconds (got '${worst}'); is $bluegreen older than this workflow?" >&2
  exit 1
fi

seconds=$((worst + margin))
if [ "$seconds" -gt "$max" ]; then
  msg="the promote may take ${worst}s; with the ${margin}s margin that is more than the role's ${max}s maximum session, so the session is ${max}s: bluegreen renews its own, but the environment file's hooks may outlive theirs; raise max_session_duration (terraform/modules/github-oidc) and MAX_SESSION_SECONDS together"
  echo "warning: $msg" >&2
  [ -z "${GITHUB_ACTIONS:-}" ] || echo "::warning title=AWS session::$msg"
  seconds=$max
fi
echo "worst case ${worst}s: a ${seconds}s session"
echo "seconds=$seconds" >> "$output"
echo "$seconds"
