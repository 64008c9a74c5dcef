"""Starting the stand-in as a child process, for tools that drive it from Python (`make demo`,
`bench/`): one place that knows its command line, its ready file and its control API.

    standin = Launched(state_dir, log_path, env=env)   # returns once it serves
    standin.control("seed", {...}); standin.stop()

Only the standard library: importing this does not import moto.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

_TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Launched:
    def __init__(self, state_dir: str, log_path: str, *, env: dict[str, str], port: int = 0,
                 extra: tuple[str, ...] = (), python: str = sys.executable) -> None:
        os.makedirs(state_dir, exist_ok=True)
        ready = os.path.join(state_dir, "ready.json")
        if os.path.exists(ready):
            os.unlink(ready)
        self.log_path = log_path
        log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [python, "-m", "localaws", "serve", "--port", str(port), "--state-dir", state_dir,
             "--ready-file", ready, *extra],
            env={**env, "PYTHONPATH": _TOOLS}, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the stand-in did not start; see {log_path}")
            time.sleep(0.05)
        with open(ready) as f:
            self.endpoint: str = json.load(f)["endpoint"]

    def control(self, path: str, body: dict[str, Any] | None = None, timeout: float = 600) -> Any:
        """GET (no body) or POST a control route; a failure names the route and the reason."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.endpoint}/_localaws/{path}", data=data,
                                     method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as res:
                return json.load(res)
        except urllib.error.HTTPError as e:
            raise SystemExit(f"stand-in {path}: HTTP {e.code}: {e.read().decode()[-3000:]}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
