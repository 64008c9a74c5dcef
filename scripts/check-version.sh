#!/usr/bin/env bash
# Reads endpoints (one per line) on stdin and checks each answers version $1, retrying briefly.
# Used by the release workflow after a promote; writes a table to the GitHub step summary.
set -euo pipefail
want="${1:?usage: check-version.sh VERSION < endpoints}"
failed=0
summary="${GITHUB_STEP_SUMMARY:-/dev/null}"
echo "| endpoint | version |" >> "$summary"
echo "|---|---|" >> "$summary"
while read -r url; do
  [ -n "$url" ] || continue
  got=""
  for _ in 1 2 3 4 5; do
    got=$(curl -fsS --max-time 5 "$url" | jq -r '.version' 2>/dev/null || true)
    [ "$got" = "$want" ] && break
    sleep 2
  done
  echo "| $url | ${got:-no answer} |" >> "$summary"
  if [ "$got" = "$want" ]; then
    echo "ok   $url answers $got"
  else
    echo "::error::$url answers ${got:-nothing}, expected $want"
    failed=1
  fi
done
exit "$failed"
