#!/usr/bin/env bash
# Before the release workflow builds the image: is VERSION already in the ECR repository, and was it
# built from this commit? The repository's tags are IMMUTABLE, so a re-run of a release must not
# push again, and no version may ever name another commit's image. Decided from two tags, VERSION
# and sha-COMMIT (the workflow pushes both, from one build):
#
#   VERSION      sha-COMMIT        decision
#   absent       absent            build and push                         exit 0, build=true
#   digest D     digest D          already released from this commit      exit 0, build=false
#   digest D     absent or not D   built from another commit: refused     exit 1
#   absent       digest E          this commit's image has another        exit 1
#                                  version baked in: refused
#
# Usage: release-image-check.sh REPOSITORY VERSION COMMIT (AWS region and credentials from the
# environment). Writes build= and digest= to $GITHUB_OUTPUT and a line to $GITHUB_STEP_SUMMARY when
# they are set. Exit 2: bad usage, or an AWS error other than "no such image" (never taken as absent).
set -euo pipefail

if [ $# -ne 3 ] || [ -z "$1" ] || [ -z "$2" ] || [ -z "$3" ]; then
  echo "usage: release-image-check.sh REPOSITORY VERSION COMMIT" >&2
  exit 2
fi
repo=$1 version=$2 commit=$3
output="${GITHUB_OUTPUT:-/dev/null}"
summary="${GITHUB_STEP_SUMMARY:-/dev/null}"
export AWS_PAGER=""
errfile=$(mktemp)
trap 'rm -f "$errfile"' EXIT

# The digest tag $1 names in the repository, or nothing when the repository has no such tag.
digest_of() {
  local tag=$1 out rc=0
  out=$(aws ecr describe-images --repository-name "$repo" --image-ids "imageTag=$tag" \
    --query 'imageDetails[0].imageDigest' --output text 2>"$errfile") || rc=$?
  if [ "$rc" -eq 0 ]; then
    printf '%s\n' "$out"
  elif ! grep -q 'ImageNotFoundException' "$errfile"; then
    echo "error: cannot tell whether $repo:$tag exists: aws ecr describe-images failed (exit $rc): $(cat "$errfile")" >&2
    exit 2
  fi
}

# A refusal, as a GitHub annotation too when running in Actions.
refuse() {
  echo "error: $1" >&2
  [ -z "${GITHUB_ACTIONS:-}" ] || echo "::error title=release image::$1"
  echo "**refused**: $1" >> "$summary"
  exit 1
}

have=$(digest_of "$version")
mine=$(digest_of "sha-$commit")

if [ -z "$have" ] && [ -z "$mine" ]; then
  echo "$repo:$version is not in ECR yet: building it from $commit"
  echo "build=true" >> "$output"
  echo "\`$repo:$version\`: not in ECR yet, built from \`$commit\`" >> "$summary"
elif [ -n "$have" ] && [ "$have" = "$mine" ]; then
  echo "$repo:$version is already in ECR as $have, built from this commit ($commit): not building or pushing again"
  { echo "build=false"; echo "digest=$have"; } >> "$output"
  echo "\`$repo:$version\`: already in ECR as \`$have\`, built from \`$commit\`: build and push skipped" >> "$summary"
elif [ -n "$have" ]; then
  refuse "$version is already in ECR ($repo) as $have, built from another commit (sha-$commit is ${mine:-not in ECR}); tags are IMMUTABLE: cut a new version"
else
  refuse "$version is not in ECR ($repo), but this commit's image is: sha-$commit is $mine, built for another version of this commit (the version is baked into the image), or by a run that stopped between its two tag pushes; tags are IMMUTABLE: release a new commit, or, to ship that image as $version, add the tag to $mine (aws ecr batch-get-image, then aws ecr put-image --image-tag $version)"
fi
