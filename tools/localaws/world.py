"""The stand-in's own state beside moto's: settings, loopback addresses, the image catalogue."""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
from typing import Any


@dataclasses.dataclass
class Settings:
    """Timings, all short so tests run fast; real AWS values are noted beside each."""

    # ALB health checks: AWS runs them every HealthCheckIntervalSeconds (5-300 s).
    health_interval: float = 0.2
    health_timeout: float = 2.0
    # Deregistration delay cap: AWS honours the target group attribute (default 300 s).
    max_deregistration_delay: float = 1.0
    # ECS stop timeout cap between SIGTERM and SIGKILL: AWS default 30 s.
    max_stop_timeout: float = 5.0
    # How long ECS lets a task stay stopped or ELB-unhealthy before replacing it: tens of seconds on AWS.
    replace_after: float = 1.5
    # How often task sets are reconciled with their desired count.
    reconcile_interval: float = 0.1
    # ECR scan on push: how long a pushed image's scan stays IN_PROGRESS before it is COMPLETE.
    # AWS: seconds to minutes for a basic scan.
    scan_delay: float = 0.5
    # Lifetime (X-Amz-Expires) of the pre-signed layer URL a registry blob GET redirects to.
    blob_url_expiry: float = 600.0
    # Fault injection (extension 7) for the layer bucket: after this many bytes served in all
    # (0: never), every download's connection is cut, as a network failure between the client
    # and S3 would. Set with `POST /_localaws/settings {"bucket_cut_after": N}`.
    bucket_cut_after: int = 0
    # ALB CloudWatch metrics (extension 15): the resolution of the per-target-group metrics (AWS:
    # 60 s; a GetMetricData Period must be a multiple of it) and how long after a period ends it
    # is published (AWS: the newest one to three minutes are missing or incomplete).
    metric_period: int = 60
    metric_delay: float = 60.0


class Addresses:
    """Hands out loopback addresses. 127.0.0.0/8 is all routed to `lo` on Linux, so each ALB and
    each task gets an address of its own, as each gets its own ENI on AWS.

    Several stand-ins may run on one machine at once (tests run in parallel), so an address is
    claimed by holding a listening socket on CLAIM_PORT for as long as this stand-in lives: another
    stand-in's probe of that address fails, and it moves on. The claim ends with the process."""

    CLAIM_PORT = 47999

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._octet = 16 + int.from_bytes(os.urandom(2), "big") % 235
        self._next = {"alb": 1, "task": 1, "s3": 1}
        # Third octet ranges: ALBs from 0, the layer bucket (one address) at 127, tasks from 128.
        self._base = {"alb": 0, "s3": 127, "task": 128}
        self._claims: list[socket.socket] = []

    def allocate(self, kind: str, port: int) -> str:
        with self._lock:
            for _ in range(127 * 254):
                n = self._next[kind]
                self._next[kind] += 1
                ip = f"127.{self._octet}.{self._base[kind] + n // 254}.{n % 254 + 1}"
                claim = _claim(ip, self.CLAIM_PORT)
                if claim is None:
                    continue
                if port and not _bindable(ip, port):
                    claim.close()
                    continue
                self._claims.append(claim)
                return ip
        raise RuntimeError(f"no free loopback address for a {kind} on port {port}")


def _bindable(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def _claim(ip: str, port: int) -> socket.socket | None:
    s = socket.socket()
    try:
        s.bind((ip, port))
        s.listen(1)
    except OSError:
        s.close()
        return None
    return s


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class ImageCommand:
    """What a container image "contains" here: the local command its tasks run."""

    argv: list[str]
    env: dict[str, str] = dataclasses.field(default_factory=dict)


class Images:
    """Image digest → local command. ECS on AWS pulls the image; here the digest names a command."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_digest: dict[str, ImageCommand] = {}

    def register(self, digest: str, command: ImageCommand) -> None:
        with self._lock:
            self._by_digest[digest] = command

    def lookup(self, digest: str) -> ImageCommand | None:
        with self._lock:
            return self._by_digest.get(digest)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {d: dataclasses.asdict(c) for d, c in self._by_digest.items()}
