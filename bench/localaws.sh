#!/usr/bin/env bash
# Start-up time and memory of the local AWS stand-in: launch → ready; then a full 2 accounts ×
# 3 regions topology (6 registries, 6 ALBs, 12 hello-service tasks), its bootstrap time, and the
# resident memory of every process in it. Writes bench/results/localaws.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$ROOT"
need_apt docker-registry apache2-utils
need_venv
cargo build -q --locked -p service --bin service
export AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
OUT="$ROOT/bench/results/localaws.md"
WORK="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
t0=$(now)
PYTHONPATH="$ROOT/tools" "$VENV/bin/python" -m localaws serve --state-dir "$WORK/state" \
  --ready-file "$WORK/ready.json" > "$WORK/log" 2>&1 &
pid=$!
until [ -f "$WORK/ready.json" ]; do sleep 0.02; kill -0 "$pid" || die "stand-in exited: $(cat "$WORK/log")"; done
t_ready=$(now)
ep=$(python3 -c "import json;print(json.load(open('$WORK/ready.json'))['endpoint'])")
rss_idle=$(awk '/^VmRSS:/ {print $2}' /proc/$pid/status)

t1=$(now)
for account in 111111111111 222222222222; do
  img=$(curl -fsS -XPOST "$ep/_localaws/seed" -d "{\"account\":\"$account\",\"region\":\"us-east-1\",\"repository\":\"hello\",\"tag\":\"v1.1.0\",\"argv\":[\"$ROOT/target/debug/service\"]}" \
        | python3 -c "import json,sys;print(json.load(sys.stdin)['image'])")
  regions=""
  for r in us-east-1 eu-west-1 ap-southeast-2; do
    regions="$regions{\"region\":\"$r\",\"cluster\":\"hello-$r\",\"service\":\"hello\",\"load_balancer\":\"hello-$r\",\"listener_port\":18000,\"test_listener_port\":18001,\"blue_target_group\":\"hello-$r-blue\",\"green_target_group\":\"hello-$r-green\",\"desired_count\":2},"
  done
  curl -fsS -XPOST "$ep/_localaws/bootstrap" -d "{\"account\":\"$account\",\"image\":\"$img\",\"app_version\":\"v1.1.0\",\"repository\":\"hello\",\"regions\":[${regions%,}]}" >/dev/null
done
t_boot=$(now)
# Ready = every task's target healthy.
until curl -fsS "$ep/_localaws/status" | python3 -c "
import json,sys; d=json.load(sys.stdin); t=d['tasks']; sys.exit(0 if len(t)==12 and all(x['alive'] for x in t) else 1)"; do sleep 0.05; done
t_tasks=$(now)

tree_rss() { # KiB of RSS of a process and all its descendants, by kind
  python3 - "$1" <<'PY'
import os, sys
root = int(sys.argv[1])
kids = {}
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            stat = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            kids.setdefault(int(stat[1]), []).append(int(p))
        except OSError:
            pass
def rss(p):
    for line in open(f"/proc/{p}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
totals = {}
stack = [root]
while stack:
    p = stack.pop()
    cmd = open(f"/proc/{p}/cmdline").read().split("\0")[0]
    kind = "launcher (moto + extensions)" if p == root else ("registry" if "docker-registry" in cmd else "task")
    n, kib = totals.get(kind, (0, 0))
    totals[kind] = (n + 1, kib + rss(p))
    stack += kids.get(p, [])
for kind, (n, kib) in totals.items():
    print(f"{kind}\t{n}\t{kib}")
PY
}
tree_rss "$pid" > "$WORK/rss"

{
  echo "# Local AWS stand-in: start-up and memory"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo "- command: \`bash bench/localaws.sh\`"
  echo
  echo "| step | time |"
  echo "|---|---:|"
  secs() { python3 -c "print(f'{$1 - $2:.2f}')"; }
  echo "| launch → ready (moto imported, control API up) | $(secs "$t_ready" "$t0") s |"
  echo "| seed 2 images + bootstrap 2 accounts × 3 regions (API calls, 2 registries started) | $(secs "$t_boot" "$t1") s |"
  echo "| … until all 12 tasks run | $(secs "$t_tasks" "$t1") s |"
  echo
  echo "| process | count | resident memory |"
  echo "|---|---:|---:|"
  echo "| launcher, idle after start | 1 | $((rss_idle / 1024)) MiB |"
  total=0
  while IFS=$'\t' read -r kind n kib; do
    echo "| $kind, with the topology | $n | $((kib / 1024)) MiB |"
    total=$((total + kib))
  done < "$WORK/rss"
  echo "| all of it | | $((total / 1024)) MiB |"
} > "$OUT"
cat "$OUT"
