"""Extension 3: one real OCI registry (Debian's docker-registry, distribution 2.8) per account and
region, found through ECR GetAuthorizationToken exactly as on AWS.

On AWS, `GetAuthorizationToken` returns a base64 `AWS:<password>` token and the `proxyEndpoint`
`https://<account>.dkr.ecr.<region>.amazonaws.com`. Here the endpoint is the local registry's URL
and the token's password is the one that registry's htpasswd (bcrypt) file accepts, so ECR
authentication is really exercised over the OCI distribution API.

`proxyEndpoint` is the registry's front (blobs.py: layer downloads redirect to a pre-signed URL on
another host, cross-repository mounts follow the BLOB_MOUNTING account setting); distribution
itself listens on a private port behind it.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request

from . import procs
from .blobs import Blobs
from .world import Addresses, Settings, free_port


class Registry:
    def __init__(self, account: str, region: str, root: str, notify: str) -> None:
        self.account = account
        self.region = region
        self.dir = os.path.join(root, "registries", f"{account}-{region}")
        self.port = free_port()  # the front, which clients reach (proxyEndpoint)
        self.internal_port = free_port()  # distribution, reached only through the front
        while self.internal_port == self.port:
            self.internal_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen | None = None
        # Extension 6: every push is reported to the launcher, which registers it with ECR.
        self.notify = f"{notify}/_localaws/registry-events?account={account}&region={region}"

    @property
    def token(self) -> str:
        return base64.b64encode(f"AWS:{self.password}".encode()).decode()

    @property
    def internal_url(self) -> str:
        return f"http://127.0.0.1:{self.internal_port}"

    def blob_path(self, digest: str) -> str:
        """Where distribution's filesystem driver keeps a blob's bytes (the layer bucket serves them)."""
        algo, _, hexpart = digest.partition(":")
        return os.path.join(self.dir, "data", "docker", "registry", "v2", "blobs", algo, hexpart[:2], hexpart, "data")

    def start(self) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError("docker-registry is not installed (Debian package docker-registry)")
        htpasswd = shutil.which("htpasswd")
        if htpasswd is None:
            raise RuntimeError("htpasswd is not installed (Debian package apache2-utils)")
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        pw_file = os.path.join(self.dir, "htpasswd")
        # -B: bcrypt, the only hash distribution's htpasswd auth accepts.
        subprocess.run([htpasswd, "-Bbc", pw_file, "AWS", self.password], check=True, capture_output=True)
        config = os.path.join(self.dir, "config.yml")
        with open(config, "w") as f:
            f.write(
                "version: 0.1\n"
                "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {self.dir}/data\n  delete:\n    enabled: true\n"
                f"http:\n  addr: 127.0.0.1:{self.internal_port}\n  secret: {secrets.token_hex(16)}\n"
                f"auth:\n  htpasswd:\n    realm: localaws-{self.account}-{self.region}\n    path: {pw_file}\n"
                "notifications:\n  endpoints:\n    - name: localaws\n"
                f"      url: {self.notify}\n      timeout: 5s\n      threshold: 3\n      backoff: 100ms\n"
                "      ignoredmediatypes:\n        - application/octet-stream\n"
            )
        log = open(os.path.join(self.dir, "registry.log"), "ab")
        self.proc = procs.spawn([binary, "serve", config], dict(os.environ), log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry for {self.account}/{self.region} exited; see {self.dir}/registry.log")
            try:
                urllib.request.urlopen(f"{self.internal_url}/v2/", timeout=1)
            except urllib.error.HTTPError as e:
                if e.code == 401:  # up, and asking for credentials as it should
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"docker-registry for {self.account}/{self.region} did not answer on {self.internal_url} in 15s")


class Registries:
    """Started on first use: the first token asked for in an account and region starts its registry."""

    def __init__(self, root: str, settings: Settings, addresses: Addresses) -> None:
        self.root = root
        self.endpoint = ""  # the launcher's, set once it serves
        self.blobs = Blobs(settings, addresses)
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, str], Registry] = {}

    def get(self, account: str, region: str) -> Registry:
        with self._lock:
            reg = self._by_key.get((account, region))
            if reg is None:
                reg = Registry(account, region, self.root, self.endpoint)
                reg.start()
                self.blobs.front(reg)
                self._by_key[(account, region)] = reg
            return reg

    def by_url(self, url: str) -> Registry | None:
        host = url.split("://", 1)[-1].split("/", 1)[0]
        with self._lock:
            for reg in self._by_key.values():
                if reg.url.split("://", 1)[1] == host:
                    return reg
        return None

    def snapshot(self) -> dict[str, str]:
        with self._lock:
            return {f"{a}/{r}": reg.url for (a, r), reg in self._by_key.items()}
