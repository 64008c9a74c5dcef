#!/usr/bin/env bash
# `make test`'s check of `make demo ARGS=--keep`: runs the demo with --keep on a free port in the
# background, waits for it to say that the stand-in keeps running, runs the `bluegreen status -e prod`
# it prints with exactly the exports it prints (in an otherwise empty environment), then stops the
# demo and checks that it exits 0 and leaves no process behind. Only loopback addresses are touched.
#   bash scripts/demo-keep-check.sh          stop it as Ctrl-C does: SIGINT to its whole process group
#   bash scripts/demo-keep-check.sh TERM     stop it with SIGTERM to the demo process alone
#   DEMO_KEEP_TIMEOUT=300                    seconds to wait for the story (the cargo build included)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

sig="${1:-INT}"
case "$sig" in INT | TERM) ;; *) die "usage: $0 [INT|TERM]" ;; esac
timeout="${DEMO_KEEP_TIMEOUT:-300}"
mkdir -p "$ROOT/.state"
dir="$(mktemp -d "$ROOT/.state/demo-keep-check.XXXXXX")"
log="$dir/demo.log"
port="$(free_port)"
pid=""     # the demo, until this script has waited for it
pgid=""    # its process group: the stand-in, its registries and tasks

fail() {
  printf 'error: demo --keep: %s\n' "$*" >&2
  printf -- '--- last 40 lines of %s\n' "${log#"$ROOT"/}" >&2
  tail -n 40 "$log" >&2 || true
  printf -- '--- last 10 lines of %s\n' "${dir#"$ROOT"/}/localaws.log" >&2
  grep -v '^127\.0\.0\.1 - - \[' "$dir/localaws.log" | tail -n 10 >&2 || true # no access-log lines
  exit 1
}

# Whatever happens, nothing this script started outlives it.
cleanup() {
  local rc=$?
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  if [ -n "$pgid" ] && pgrep -g "$pgid" >/dev/null; then kill -KILL -- "-$pgid" 2>/dev/null || true; fi
  if [ "$rc" -eq 0 ]; then rm -rf "$dir"; else echo "demo --keep: logs kept in ${dir#"$ROOT"/}" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT # Ctrl-C of make test: the demo runs in its own process group, the trap stops it
trap 'exit 143' TERM

answers() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

# -m: the demo gets a process group of its own (pgid = pid), as a foreground job in a terminal does,
# and SIGINT is not ignored in it as it would be in a plain background job.
started=$SECONDS
set -m
bash scripts/demo.sh --keep --port "$port" --state-dir "$dir" >"$log" 2>&1 &
pid=$!
pgid=$pid
set +m

# The lines this check reads: the endpoint, the exports, the status command, prod eu-west-1's ALB.
status_cmd="$ROOT/target/debug/bluegreen status -e prod --config-dir $ROOT/tools/demo/environments"
printed() {
  grep -q '^==> The stand-in keeps running at ' "$log" && grep -q '^    export ' "$log" \
    && grep -qxF "    $status_cmd" "$log" && grep -q '^    curl http://.*prod eu-west-1$' "$log"
}
until printed; do
  if ! kill -0 "$pid" 2>/dev/null; then
    rc=0 && wait "$pid" || rc=$?
    pid=""
    fail "the demo exited ($rc) before saying that the stand-in keeps running"
  fi
  [ $((SECONDS - started)) -lt "$timeout" ] || fail "no 'The stand-in keeps running' line in ${timeout}s"
  sleep 1
done
story=$((SECONDS - started))

header="$(grep -m1 '^==> The stand-in keeps running at ' "$log")"
endpoint="${header#==> The stand-in keeps running at }"
endpoint="${endpoint%%;*}"
[ "$endpoint" = "http://127.0.0.1:$port" ] || fail "endpoint '$endpoint', expected http://127.0.0.1:$port"
exports="$(grep -m1 '^    export ' "$log")"
exports="${exports#    }"
[[ "$exports" =~ ^export(\ AWS_[A-Z0-9_]+=[A-Za-z0-9:/._-]+)+$ ]] || fail "unexpected export line: $exports"
[[ " $exports " == *" AWS_ENDPOINT_URL=$endpoint "* ]] || fail "the export line lacks AWS_ENDPOINT_URL=$endpoint"
alb="$(sed -n 's|^    curl http://\(127\.[0-9.]*:[0-9]*\)/ .*prod eu-west-1$|\1|p' "$log" | head -n1)"
[ -n "$alb" ] || fail "no curl line with prod eu-west-1's ALB address"

# The status command it printed, in an environment holding nothing but PATH, HOME and those exports.
out="$(env -i PATH="$PATH" HOME="$HOME" bash -c "$exports && exec $status_cmd" 2>&1)" \
  || fail "\`bluegreen status -e prod\` exited $? against the kept stand-in:"$'\n'"$out"
for region in us-east-1 eu-west-1 ap-southeast-2; do
  grep -qw -- "$region" <<<"$out" || fail "\`bluegreen status -e prod\` does not name $region:"$'\n'"$out"
done
answers "$alb" || fail "prod eu-west-1's ALB $alb does not answer"

# Stop it; it must exit 0 within a minute, and take the stand-in, its ALBs, tasks and registries along.
stopping=$SECONDS
if [ "$sig" = INT ]; then kill -INT -- "-$pgid"; else kill -TERM "$pid"; fi
for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
kill -0 "$pid" 2>/dev/null && fail "the demo still runs 60s after SIG$sig"
rc=0 && wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || fail "the demo exited $rc after SIG$sig, expected 0"
answers "127.0.0.1:$port" && fail "the stand-in's port $port still answers after the demo exited"
answers "$alb" && fail "prod eu-west-1's ALB $alb still answers after the demo exited"
for _ in $(seq 10); do pgrep -g "$pgid" >/dev/null || break; sleep 0.5; done
left="$(pgrep -a -g "$pgid" || true)"
[ -z "$left" ] || fail "processes of the demo are left behind:"$'\n'"$left"
echo "demo --keep: status names all 3 regions; SIG$sig stopped everything in $((SECONDS - stopping))s (story ${story}s, ${SECONDS}s in all)"
