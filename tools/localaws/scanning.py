"""Extension 6 (scanning part): ECR basic scanning as ECR does it, per image manifest.

- A pushed image manifest in a repository with scan on push is scanned: its scan is IN_PROGRESS
  for the scan delay (`--scan-delay`, or per digest via `POST /_localaws/scan-findings`), then
  COMPLETE with the findings the control API set (none by default), or FAILED /
  UNSUPPORTED_IMAGE with a description when the control API says so.
- An image index (OCI index, Docker manifest list) is never scanned: its findings live on its
  platform manifests. DescribeImageScanFindings on an index digest is ScanNotFoundException, its
  DescribeImages entry has no imageScanStatus, and StartImageScan on it is
  UnsupportedImageTypeException (patches.py answers those).
- Attestation manifests (an index entry with platform unknown/unknown, or a manifest whose layers
  are all in-toto statements) are scanned like any manifest but fail as an image with no
  supported operating system does, unless the control API sets something else. So does every
  image the stand-in was not told has a supported operating system: seeded images have one unless
  seeded with `"scannable": false`; an image pushed any other way (e.g. a static binary FROM
  scratch) fails with "UnsupportedImageError", as ECR's basic scanning does.

Only state and timing live here; patches.py turns them into ECR's answers.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from typing import Any

SEVERITIES = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL", "UNDEFINED")
# What the control API may make a completed scan report.
FINAL_STATUSES = ("COMPLETE", "FAILED", "UNSUPPORTED_IMAGE")
COMPLETE_DESCRIPTION = "The scan was completed successfully."
UNSUPPORTED_DESCRIPTION = "UnsupportedImageError: The operating system and/or package manager are not supported."
INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"}
IN_TOTO = "application/vnd.in-toto+json"

Key = tuple[str, str, str, str]  # account, region, repository, digest


@dataclasses.dataclass
class Result:
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    status: str = "COMPLETE"
    description: str = COMPLETE_DESCRIPTION


@dataclasses.dataclass
class ScanState:
    status: str  # IN_PROGRESS, COMPLETE, FAILED, UNSUPPORTED_IMAGE
    description: str | None
    counts: dict[str, int]
    completed_at: float | None  # wall time


def is_index(media_type: str | None, manifest: dict[str, Any] | None = None) -> bool:
    if media_type in INDEX_TYPES:
        return True
    return bool(manifest) and "manifests" in manifest and "layers" not in manifest


class Scanning:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        # When each manifest's scan started, and the default delay at that moment.
        self._started: dict[Key, tuple[float, float]] = {}
        self._delay: dict[Key, float] = {}  # per-manifest delay set through the control API
        self._results: dict[Key, Result] = {}
        self._indexes: dict[Key, list[dict[str, Any]]] = {}
        self._attestations: set[Key] = set()
        # Manifests whose image has an operating system ECR's basic scanning supports (seeded
        # images, unless seeded with `"scannable": false`). Anything else, e.g. a static binary
        # FROM scratch, fails its scan as ECR's does: "UnsupportedImageError".
        self._scannable: set[Key] = set()

    # ---- pushes and scans -------------------------------------------------------------------
    def pushed(self, key: Key, media_type: str | None, manifest: dict[str, Any], scan_on_push: bool) -> None:
        """A manifest ECR now lists (called when the registry reports the push)."""
        with self._lock:
            if is_index(media_type, manifest):
                entries = []
                for m in manifest.get("manifests") or []:
                    p = m.get("platform") or {}
                    platform = "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
                    attestation = (p.get("os"), p.get("architecture")) == ("unknown", "unknown") or \
                        (m.get("annotations") or {}).get("vnd.docker.reference.type") == "attestation-manifest"
                    entries.append({"digest": m.get("digest"), "platform": platform, "attestation": attestation})
                    if attestation:
                        self._attestations.add((*key[:3], m.get("digest")))
                self._indexes[key] = entries
                return
            layers = manifest.get("layers") or []
            if layers and all(layer.get("mediaType") == IN_TOTO for layer in layers):
                self._attestations.add(key)
            if scan_on_push and key not in self._started:
                self._started[key] = (time.time(), self.settings.scan_delay)

    def scannable(self, keys: list[Key]) -> None:
        """These manifests are images with an operating system basic scanning supports."""
        with self._lock:
            self._scannable.update(keys)

    def start(self, key: Key) -> None:
        """StartImageScan: a new scan of the manifest begins now."""
        with self._lock:
            self._started[key] = (time.time(), self.settings.scan_delay)

    def is_index(self, key: Key) -> bool:
        with self._lock:
            return key in self._indexes

    def platforms(self, key: Key) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._indexes.get(key, [])]

    def state(self, key: Key, now: float | None = None) -> ScanState | None:
        """None when the manifest was never scanned (or is an index, which cannot be)."""
        now = time.time() if now is None else now
        with self._lock:
            started = self._started.get(key)
            if started is None or key in self._indexes:
                return None
            done = started[0] + self._delay.get(key, started[1])
            if now < done:
                return ScanState("IN_PROGRESS", None, {}, None)
            result = self._results.get(key)
            if result is None and (key in self._attestations or key not in self._scannable):
                result = Result({}, "FAILED", UNSUPPORTED_DESCRIPTION)
            result = result or Result()
            return ScanState(result.status, result.description, dict(result.counts), done)

    # ---- control API --------------------------------------------------------------------------
    def set(self, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /_localaws/scan-findings`:

            {account, region, repository, digest, platform?, counts?, status?, description?, scan_delay?}

        `digest` names an image manifest; with `platform` ("linux/arm64") it may name an image
        index, and the platform's manifest is meant. `counts` maps severities (INFORMATIONAL, LOW,
        MEDIUM, HIGH, CRITICAL, UNDEFINED) to numbers; `status` is COMPLETE (default), FAILED or
        UNSUPPORTED_IMAGE, with `description`; `scan_delay` (seconds from the push or the last
        StartImageScan) is how long this manifest's scan stays IN_PROGRESS. A body with none of
        counts, status, scan_delay sets a clean COMPLETE scan."""
        account, region, repo = str(body["account"]), str(body["region"]), str(body["repository"])
        digest = str(body["digest"])
        key: Key = (account, region, repo, digest)
        with self._lock:
            platform = body.get("platform")
            if platform is not None:
                entries = self._indexes.get(key)
                if entries is None:
                    raise ValueError(f"{repo}@{digest} is not an image index ECR knows in {account}/{region}; "
                                     "`platform` picks a manifest of an index")
                match = [e for e in entries if e["platform"] == platform]
                if not match:
                    raise ValueError(f"{repo}@{digest} has no {platform} manifest; it has "
                                     f"{[e['platform'] for e in entries]}")
                key = (account, region, repo, match[0]["digest"])
            elif key in self._indexes:
                children = {e["platform"]: e["digest"] for e in self._indexes[key]}
                raise ValueError(f"{repo}@{digest} is an image index, which ECR cannot scan: findings live on "
                                 f"its platform manifests {json.dumps(children)}; pass one as `digest`, or add "
                                 "`platform`")
            if "scan_delay" in body:
                delay = float(body["scan_delay"])
                if delay < 0:
                    raise ValueError(f"scan_delay must be 0 or more, not {delay}")
                self._delay[key] = delay
            if "counts" in body or "status" in body or "scan_delay" not in body:
                counts = {}
                for sev, n in (body.get("counts") or {}).items():
                    if sev.upper() not in SEVERITIES:
                        raise ValueError(f"{sev!r} is not an ECR finding severity ({', '.join(SEVERITIES)})")
                    if int(n) < 0:
                        raise ValueError(f"a finding count cannot be negative ({sev}: {n})")
                    counts[sev.upper()] = int(n)
                status = str(body.get("status") or "COMPLETE").upper()
                if status not in FINAL_STATUSES:
                    raise ValueError(f"status must be one of {', '.join(FINAL_STATUSES)}, not {status!r}")
                if status != "COMPLETE" and counts:
                    raise ValueError(f"a {status} scan has no findings; drop `counts`")
                default = COMPLETE_DESCRIPTION if status == "COMPLETE" else UNSUPPORTED_DESCRIPTION
                self._results[key] = Result(counts, status, str(body.get("description") or default))
            state = self.state(key)
        return {"ok": True, "digest": key[3], "status": state.status if state else None}

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            out = {}
            for key in sorted(set(self._started) | set(self._indexes)):
                s = self.state(key, now)
                out["/".join(key)] = "INDEX" if key in self._indexes else (s.status if s else None)
            return out
