"""Bad releases for tests and the demo. Each serves like the hello service (JSON with `version`, the
`x-app-version` header) but is wrong in one way, chosen by BAD_MODE:

    (unset)   `/health` answers 500: the ALB marks every target unhealthy
    crash     exits at start: ECS sees the task stop
    errors    `/health` stays 200, but every other request answers 500 with probability ERROR_RATE
              (default 0.05), independently: target health and alarms on health see nothing
              wrong, only the error rate of real traffic does
    slow      `/health` stays fast, every other request waits DELAY_MS (default 300) first

The stand-in maps a seeded image digest to it."""

import json
import os
import random
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = os.environ.get("BAD_MODE", "")
ERROR_RATE = float(os.environ.get("ERROR_RATE", "0.05"))
DELAY = float(os.environ.get("DELAY_MS", "300")) / 1000.0
_random = random.SystemRandom()


def _fails_next() -> bool:
    """Whether the next request fails: at random, as real errors do (a fixed every-20th pattern
    would make a release easier to judge than one failing at random)."""
    return _random.random() < ERROR_RATE


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        version = os.environ.get("APP_VERSION", "bad")
        health = self.path.startswith("/health")
        if MODE == "":
            status = 500 if health else 200
        elif MODE == "errors" and not health:
            status = 500 if _fails_next() else 200
        else:
            status = 200
        if MODE == "slow" and not health:
            time.sleep(DELAY)
        body = json.dumps({"status": "ok" if status == 200 else "error", "version": version,
                           "region": os.environ.get("AWS_REGION", "local")}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("x-app-version", version)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


if __name__ == "__main__":
    if MODE == "crash":
        print("bad release: crashing at start", file=sys.stderr)
        sys.exit(3)
    if MODE not in ("", "errors", "slow"):
        print(f"bad release: unknown BAD_MODE {MODE!r}; use crash, errors or slow", file=sys.stderr)
        sys.exit(2)
    server = ThreadingHTTPServer((os.environ.get("BIND_ADDR", "127.0.0.1"), int(os.environ.get("PORT", "8080"))),
                                 Handler)
    server.daemon_threads = True
    server.serve_forever()
