#!/usr/bin/env bash
# How long the release workflow's AWS session must last for `bluegreen promote … -e ENV`: the
# worst case the environment file allows (`bluegreen validate --output json`: worst_case_seconds)
# plus a margin, at most the deploy role's max_session_duration. Writes seconds= to
# $GITHUB_OUTPUT (when set) and the number to stdout's last line.
#
# Usage: session-seconds.sh ENV. Environment: BLUEGREEN (default bin/bluegreen),
# MAX_SESSION_SECONDS (default 14400), MARGIN_SECONDS (default 900).
#
# `validate` reads only the environment file: no credentials, no AWS call, so it answers even
# when the environment is mid-deployment (where `plan` would refuse split weights but a promote
# of the same version rolls back and starts clean).
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: session-seconds.sh ENV" >&2
  exit 2
fi
env_name=$1
bluegreen="${BLUEGREEN:-bin/bluegreen}"
max="${MAX_SESSION_SECONDS:-14400}"
margin="${MARGIN_SECONDS:-900}"
output="${GITHUB_OUTPUT:-/dev/null}"

# With --output json, the result (or the error) is a JSON line on stdout.
if ! checked=$("$bluegreen" validate -e "$env_name" --output json); then
  printf '%s\n' "$checked" >&2
  echo "error: bluegreen validate -e $env_name failed: the environment file is wrong, and a promote would refuse it too" >&2
  exit 1
fi
worst=$(jq -r 'select(.type == "result") | .worst_case_seconds' <<<"$checked")
if ! [[ "$worst" =~ ^[0-9]+$ ]]; then
  echo "error: bluegreen validate gave no worst_case_seconds (got '${worst}'); is $bluegreen older than this workflow?" >&2
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
