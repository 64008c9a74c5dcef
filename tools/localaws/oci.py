"""Real OCI images for the local registries: random tar layers, a config, a manifest per platform,
and an index when there are several platforms, pushed through the OCI distribution API."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass

import requests

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
ACCEPT = ", ".join([INDEX, MANIFEST, "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])
CHUNK = 1 << 20


@dataclass
class Pushed:
    digest: str
    media_type: str
    platform_digests: list[str]
    blob_bytes: int


class Client:
    """A minimal distribution API client with basic auth (what ECR's token decodes to)."""

    def __init__(self, base_url: str, user: str, password: str) -> None:
        self.base = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.auth = (user, password)

    def _url(self, repo: str, kind: str, ref: str) -> str:
        return f"{self.base}/v2/{repo}/{kind}/{ref}"

    def has_blob(self, repo: str, digest: str) -> bool:
        r = self.session.head(self._url(repo, "blobs", digest), timeout=30)
        return r.status_code == 200

    def push_blob(self, repo: str, digest: str, path: str) -> int:
        if self.has_blob(repo, digest):
            return 0
        r = self.session.post(f"{self.base}/v2/{repo}/blobs/uploads/", timeout=30)
        r.raise_for_status()
        location = r.headers["Location"]
        if location.startswith("/"):
            location = self.base + location
        size = os.path.getsize(path)
        sep = "&" if "?" in location else "?"
        with open(path, "rb") as f:
            r = self.session.put(
                f"{location}{sep}digest={digest}",
                data=f,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                timeout=600,
            )
        r.raise_for_status()
        return size

    def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        r = self.session.put(self._url(repo, "manifests", ref), data=body,
                             headers={"Content-Type": media_type}, timeout=30)
        r.raise_for_status()
        return r.headers.get("Docker-Content-Digest", "sha256:" + hashlib.sha256(body).hexdigest())

    def resolve(self, repo: str, ref: str) -> str | None:
        r = self.session.head(self._url(repo, "manifests", ref), headers={"Accept": ACCEPT}, timeout=30)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.headers["Docker-Content-Digest"]


def _random_layer(size: int, directory: str) -> tuple[str, str, int]:
    """A tar archive holding one file of `size` random bytes; returns (path, digest, bytes)."""
    fd, path = tempfile.mkstemp(dir=directory, suffix=".tar")
    with os.fdopen(fd, "wb") as out:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(name=f"data/{os.urandom(6).hex()}.bin")
            info.size = size
            info.mode = 0o644
            tar.addfile(info, _RandomReader(size))
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return path, "sha256:" + h.hexdigest(), os.path.getsize(path)


class _RandomReader(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        n = min(len(b), self.left, CHUNK)
        b[:n] = os.urandom(n)
        self.left -= n
        return n


def build_and_push(client: Client, repo: str, tag: str, *, layers: int, layer_size: int,
                   platforms: list[str], labels: dict[str, str]) -> Pushed:
    """Writes a fresh image (or index of images) to `repo:tag` and returns its digest."""
    entries = []
    blob_bytes = 0
    with tempfile.TemporaryDirectory(prefix="localaws-oci-") as tmp:
        for platform in platforms:
            os_name, arch = platform.split("/", 1)
            layer_descs, diff_ids = [], []
            for _ in range(layers):
                path, digest, size = _random_layer(layer_size, tmp)
                blob_bytes += client.push_blob(repo, digest, path)
                os.unlink(path)
                layer_descs.append({"mediaType": LAYER, "digest": digest, "size": size})
                diff_ids.append(digest)
            config = json.dumps({
                "architecture": arch, "os": os_name,
                "config": {"Entrypoint": ["/service"], "ExposedPorts": {"8080/tcp": {}}, "Labels": labels},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }, sort_keys=True).encode()
            config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
            cpath = os.path.join(tmp, "config.json")
            with open(cpath, "wb") as f:
                f.write(config)
            blob_bytes += client.push_blob(repo, config_digest, cpath)
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": MANIFEST,
                "config": {"mediaType": CONFIG, "digest": config_digest, "size": len(config)},
                "layers": layer_descs,
            }, sort_keys=True).encode()
            mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
            if len(platforms) == 1:
                client.put_manifest(repo, tag, manifest, MANIFEST)
                return Pushed(mdigest, MANIFEST, [mdigest], blob_bytes)
            client.put_manifest(repo, mdigest, manifest, MANIFEST)
            entries.append({"mediaType": MANIFEST, "digest": mdigest, "size": len(manifest),
                            "platform": {"os": os_name, "architecture": arch}})
    index = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}, sort_keys=True).encode()
    digest = client.put_manifest(repo, tag, index, INDEX)
    return Pushed(digest, INDEX, [e["digest"] for e in entries], blob_bytes)
