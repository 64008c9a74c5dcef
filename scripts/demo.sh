#!/usr/bin/env bash
# The quick-start demo (`make demo`): builds the hello service, runs it as ECS would
# (APP_VERSION, AWS_REGION, PORT from the environment), asks it what it is, and stops it
# with SIGTERM to show the graceful drain. Every process it starts is stopped on exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

need_apt curl
say "building the service"
cargo build --release --locked -p service

port="${PORT:-$(free_port)}"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; true; }
trap cleanup EXIT INT TERM

say "starting service v1.2.0 in eu-west-1 on 127.0.0.1:$port"
PORT="$port" BIND_ADDR=127.0.0.1 APP_VERSION=v1.2.0 AWS_REGION=eu-west-1 \
  ./target/release/service > .demo-service.log 2>&1 &
pid=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done

for path in / /hello /health /missing; do
  say "curl http://127.0.0.1:$port$path"
  curl -s -i "http://127.0.0.1:$port$path" | grep -iE '^(HTTP/|x-app-version)|^\{' || true
done

say "container health check: service healthcheck"
PORT="$port" ./target/release/service healthcheck && echo "healthy (exit 0)"

say "SIGTERM: drain in-flight requests and exit"
kill -TERM "$pid"
wait "$pid" && echo "service exited 0"
pid=""
say "its JSON log:"
cat .demo-service.log
rm -f .demo-service.log
