"""A bad release for tests and the demo: serves like the hello service but `/health` answers 500,
or, with BAD_MODE=crash, exits at start. The stand-in maps a seeded image digest to it."""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        version = os.environ.get("APP_VERSION", "bad")
        status = 500 if self.path.startswith("/health") else 200
        body = json.dumps({"status": "unhealthy" if status == 500 else "ok", "version": version,
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
    if os.environ.get("BAD_MODE") == "crash":
        print("bad release: crashing at start", file=sys.stderr)
        sys.exit(3)
    ThreadingHTTPServer((os.environ.get("BIND_ADDR", "127.0.0.1"), int(os.environ.get("PORT", "8080"))),
                        Handler).serve_forever()
