#!/usr/bin/env bash
# Benchmark of the hello service against the stack it replaces (Flask + gunicorn, 2 workers)
# and the ceiling on this machine (a bare hyper server, service/examples/bare_hyper.rs).
# Each server: release build, 2 s warm-up, then wrk for DURATION at CONNS connections on `/`
# and on `/health`. Writes bench/results/service.md.
#   DURATION=10s CONNS=64 bash bench/service.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$ROOT"

DURATION="${DURATION:-10s}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-1}"
OUT="$ROOT/bench/results/service.md"
WORK="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

need_apt wrk curl
need_venv "$ROOT/bench/requirements.txt" "$ROOT/.venv-bench"
say "release build of the service and the bare hyper reference"
cargo build --release --locked -p service --bin service --example bare_hyper

wait_up() {
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "nothing answered on 127.0.0.1:$1/health"
}

# Peak resident memory (VmHWM) of a process and all its descendants, in KiB.
peak_rss_kib() {
  local total=0 pid
  for pid in $1 $(pgrep -P "$1" || true); do
    local hwm
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + ${hwm:-0}))
  done
  echo "$total"
}

# wrk --latency output → "rps p50_ms p99_ms errors"
parse_wrk() {
  python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
errors = 0
m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
errors += int(m.group(1)) if m else 0
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
errors += sum(map(int, m.groups())) if m else 0
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {errors}")
PY
}

declare -A RESULT
run_one() { # name port pid
  local name=$1 port=$2 pid=$3
  wait_up "$port"
  wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$port/" >/dev/null
  for path in / /health; do
    say "$name GET $path: wrk -t$THREADS -c$CONNS -d$DURATION"
    local file="$WORK/$name-${path//\//_}.txt"
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port$path" > "$file"
    RESULT["$name $path"]="$(parse_wrk "$file")"
    say "  ${RESULT["$name $path"]} (req/s p50_ms p99_ms errors)"
  done
  RESULT["$name rss"]="$(peak_rss_kib "$pid")"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

port=$(free_port)
PORT=$port BIND_ADDR=127.0.0.1 APP_VERSION=bench RUST_LOG=off ./target/release/service >/dev/null 2>&1 &
pids+=($!); run_one service "$port" $!

port=$(free_port)
PORT=$port ./target/release/examples/bare_hyper >/dev/null 2>&1 &
pids+=($!); run_one hyper "$port" $!

port=$(free_port)
(cd bench && exec "$ROOT/.venv-bench/bin/gunicorn" -w 2 -b "127.0.0.1:$port" --log-level warning flask_app:app) >/dev/null 2>&1 &
pids+=($!); run_one flask "$port" $!

field() { echo "${RESULT["$1 $2"]}" | cut -d' ' -f"$3"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
size_kib=$(( $(stat -c %s target/release/service) / 1024 ))
svc_rss=$(( ${RESULT["service rss"]} / 1024 ))

{
  echo "# Hello service benchmark"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB; wrk and the server share the cores"
  echo "- command: \`DURATION=$DURATION CONNS=$CONNS THREADS=$THREADS bash bench/service.sh\` (\`make bench\`)"
  echo "- load: \`wrk -t$THREADS -c$CONNS -d$DURATION --latency\` per route after a 2 s warm-up; loopback"
  echo "- servers: service (release, logging off), bare hyper 1 (\`service/examples/bare_hyper.rs\`),"
  echo "  Flask $("$ROOT/.venv-bench/bin/python" -c 'import importlib.metadata as m; print(m.version("flask"))') on gunicorn $("$ROOT/.venv-bench/bin/python" -c 'import importlib.metadata as m; print(m.version("gunicorn"))') with 2 sync workers"
  echo
  echo "| server | route | req/s | p50 ms | p99 ms | errors | peak RSS MiB |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  for name in service hyper flask; do
    for path in / /health; do
      echo "| $name | \`$path\` | $(field "$name" "$path" 1) | $(field "$name" "$path" 2) | $(field "$name" "$path" 3) | $(field "$name" "$path" 4) | $(( ${RESULT["$name rss"]} / 1024 )) |"
    done
  done
  echo
  echo "| target | measured | met |"
  echo "|---|---|---|"
  for path in / /health; do
    r=$(ratio "$(field service "$path" 1)" "$(field flask "$path" 1)")
    met=$(python3 -c "print('yes' if $r >= 10 else 'no')")
    echo "| \`$path\` ≥ 10× Flask+gunicorn | ${r}× | $met |"
    r=$(ratio "$(field service "$path" 1)" "$(field hyper "$path" 1)")
    met=$(python3 -c "print('yes' if $r >= 0.9 else 'no')")
    echo "| \`$path\` ≥ 90% of bare hyper | $(python3 -c "print(f'{$r*100:.0f}%')") | $met |"
    p99=$(field service "$path" 3)
    echo "| \`$path\` p99 < 5 ms | ${p99} ms | $(python3 -c "print('yes' if $p99 < 5 else 'no')") |"
  done
  echo "| RSS < 20 MB | ${svc_rss} MiB | $( [ "$svc_rss" -lt 20 ] && echo yes || echo no) |"
  echo "| binary size | ${size_kib} KiB (\`target/release/service\`, stripped, thin LTO) | |"
  echo
  echo "## Notes"
  echo
  echo "- Both servers make one \`recvfrom\` and one \`writev\` per request (\`strace -c\`), and the bare hyper"
  echo "  server sends the same status, headers and body, so the gap to it is user-space CPU per request:"
  echo "  salvo's router, flow control and response conversion, its connection fuse (slowloris"
  echo "  protection, ~4% here, kept on purpose) and the service's own hoop (headers, error bodies, rate"
  echo "  limiter and access-log checks). With wrk on the same two cores every percent of server CPU"
  echo "  shows up as throughput. Run-to-run spread on this machine is about ±5%."
  echo "- The service's bodies are serialized once at start (they depend only on configuration); an"
  echo "  earlier version that built a \`serde_json::Value\` per request reached 61–78% of bare hyper."
  echo "- Logging is off for the measurement (\`RUST_LOG=off\`); at \`info\` every request writes a JSON line."
} > "$OUT"
say "wrote ${OUT#"$ROOT"/}"
cat "$OUT"
