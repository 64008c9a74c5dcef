"""Shared by the bench drivers: start the stand-in, talk to it, reach accounts, run timed commands.

Everything stays on loopback: dummy credentials, instance metadata disabled, the stand-in as
AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")

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
    def __init__(self, *extra: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="bench-localaws-")
        ready = os.path.join(self.dir, "ready.json")
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tools"), **SAFE_ENV)
        self.log = open(os.path.join(self.dir, "localaws.log"), "wb")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "localaws", "serve", "--exit-with-parent", "--state-dir", self.dir,
             "--ready-file", ready, *extra],
            env=env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the stand-in did not start; see {self.dir}/localaws.log")
            time.sleep(0.05)
        with open(ready) as f:
            self.endpoint = json.load(f)["endpoint"]
        self.env = dict(os.environ, AWS_ENDPOINT_URL=self.endpoint, **SAFE_ENV)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        subprocess.run(["rm", "-rf", self.dir], check=False)

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.endpoint}/_localaws/{path}", data=data,
                                     method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=600) as res:
                return json.load(res)
        except urllib.error.HTTPError as e:
            raise SystemExit(f"stand-in {path}: HTTP {e.code}: {e.read().decode()[-3000:]}") from None

    def client(self, service: str, account: str, region: str) -> Any:
        import boto3
        from botocore.config import Config

        cfg = Config(retries={"max_attempts": 1, "mode": "standard"})
        sts = boto3.client("sts", region_name=region, endpoint_url=self.endpoint, config=cfg,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/bench",
                                RoleSessionName="bench")["Credentials"]
        return boto3.client(service, region_name=region, endpoint_url=self.endpoint, config=cfg,
                            aws_access_key_id=creds["AccessKeyId"],
                            aws_secret_access_key=creds["SecretAccessKey"],
                            aws_session_token=creds["SessionToken"])

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
