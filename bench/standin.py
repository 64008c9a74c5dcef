"""Shared by the bench drivers: start the stand-in, talk to it, reach accounts, run timed commands.

Everything stays on loopback: dummy credentials, instance metadata disabled, the stand-in as
AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import tempfile
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
sys.path.insert(0, os.path.join(ROOT, "tools"))

from localaws.launch import Launched  # noqa: E402

SAFE_ENV = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


def say(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def machine() -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    with open("/proc/meminfo") as f:
        mem_kib = int(next(l for l in f if l.startswith("MemTotal")).split()[1])
    return f"{os.cpu_count()} cores ({cpu}), {mem_kib / 1048576:.0f} GiB, {platform.system()} {platform.release()}"


class Standin:
    """A fresh stand-in in a temporary directory, removed by `stop`."""

    def __init__(self, *extra: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="bench-localaws-")
        env = dict(os.environ, **SAFE_ENV)
        self.launched = Launched(self.dir, os.path.join(self.dir, "localaws.log"), env=env,
                                 extra=("--exit-with-parent", *extra), python=PYTHON)
        self.endpoint = self.launched.endpoint
        self.env = dict(os.environ, AWS_ENDPOINT_URL=self.endpoint, **SAFE_ENV)
        self.control = self.launched.control
        self._clients: dict[tuple[str, str, str], Any] = {}

    def stop(self) -> None:
        self.launched.stop()
        subprocess.run(["rm", "-rf", self.dir], check=False)

    def client(self, service: str, account: str, region: str) -> Any:
        """A client acting in `account` (AssumeRole, as bootstrap does), made once and reused."""
        key = (service, account, region)
        if key not in self._clients:
            from botocore.config import Config
            from localaws.bootstrap import session_for

            self._clients[key] = session_for(self.endpoint, account, region).client(
                service, endpoint_url=self.endpoint,
                config=Config(retries={"max_attempts": 1, "mode": "standard"}))
        return self._clients[key]

    def registry(self, account: str, region: str) -> tuple[str, str]:
        """(host:port, user:password) of an account-region's registry, from ECR as on AWS."""
        import base64

        data = self.client("ecr", account, region).get_authorization_token()["authorizationData"][0]
        host = data["proxyEndpoint"].split("://", 1)[1]
        return host, base64.b64decode(data["authorizationToken"]).decode()


_TIME_FIELDS = {
    "Maximum resident set size (kbytes)": "rss_kib",
    "Elapsed (wall clock) time (h:mm:ss or m:ss)": "wall",
    "User time (seconds)": "user_s",
    "System time (seconds)": "sys_s",
}


def timed(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Starts `argv` under GNU time -v; finish it with `finish`."""
    return subprocess.Popen(["/usr/bin/time", "-v", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(p: subprocess.Popen) -> dict[str, Any]:
    out, err = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"{p.args} failed ({p.returncode}):\n{err[-3000:]}")
    stats: dict[str, Any] = {"stdout": out, "stderr": err}
    for line in err.splitlines():
        key, _, value = line.strip().partition(": ")
        if key in _TIME_FIELDS:
            stats[_TIME_FIELDS[key]] = value
    stats["rss_kib"] = int(stats.get("rss_kib", 0))
    m = re.match(r"(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)", stats.get("wall", "0:0"))
    if m:
        h, mi, s = m.groups()
        stats["wall_s"] = int(h or 0) * 3600 + int(mi) * 60 + float(s)
    return stats
