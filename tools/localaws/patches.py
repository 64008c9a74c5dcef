"""Where the extensions hook into moto. Each patch wraps one moto method; see README.md."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from typing import Any

from moto.core.responses import ActionResult
from moto.ecr.models import ECRBackend, ecr_backends
from moto.ecr.exceptions import ImageAlreadyExistsException
from moto.ecr.responses import ECRResponse
from moto.ecs import exceptions as ecs_exceptions
from moto.ecs.models import EC2ContainerServiceBackend
from moto.elbv2.models import ELBv2Backend, FakeHealthStatus

from .dataplane import Dataplane
from .registry import Registries
from .world import Addresses


def install(addresses: Addresses, dataplane: Dataplane, registries: Registries,
            findings: dict[tuple[str, str, str, str], dict[str, int]]) -> None:
    _patch_ecs()
    _patch_elbv2(addresses, dataplane)
    _patch_ecr(registries, findings)


def _patch_ecs() -> None:
    # Extension 5: AWS answers a missing task set with TaskSetNotFoundException; moto says
    # ClientException, which would make callers that match AWS's documented code misbehave.
    def task_set_not_found(self: Any) -> None:
        ecs_exceptions.ECSException.__init__(self, "TaskSetNotFoundException",
                                             "The specified task set does not exist.")

    ecs_exceptions.TaskSetNotFoundException.__init__ = task_set_not_found

    original = EC2ContainerServiceBackend.create_task_set

    def create_task_set(self: Any, *args: Any, scale: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        # moto would call run_task for the scale; the reconciler (tasks.py) starts real tasks instead.
        ts = original(self, *args, scale=None, **kwargs)
        ts.scale = scale or {"value": 100.0, "unit": "PERCENT"}
        ts.running_count = ts.pending_count = ts.computed_desired_count = 0
        ts.stabilityStatus = ts.stability_status = "STABILIZING"
        return ts

    EC2ContainerServiceBackend.create_task_set = create_task_set


def _patch_elbv2(addresses: Addresses, dataplane: Dataplane) -> None:
    create_lb = ELBv2Backend.create_load_balancer

    def create_load_balancer(self: Any, *args: Any, **kwargs: Any) -> Any:
        lb = create_lb(self, *args, **kwargs)
        # The ALB's DNSName is a loopback address where its listeners really serve.
        lb.localaws_ip = addresses.allocate("alb", 0)
        lb.dns_name = lb.localaws_ip
        return lb

    ELBv2Backend.create_load_balancer = create_load_balancer

    register = ELBv2Backend.register_targets

    def register_targets(self: Any, target_group_arn: str, instances: list[Any]) -> None:
        register(self, target_group_arn, instances)
        tg = self.target_groups[target_group_arn]
        dataplane.registered(target_group_arn, instances, int(tg.port or 80))

    ELBv2Backend.register_targets = register_targets

    deregister = ELBv2Backend.deregister_targets

    def deregister_targets(self: Any, target_group_arn: str, instances: list[dict[str, Any]]) -> None:
        deregister(self, target_group_arn, instances)
        tg = self.target_groups[target_group_arn]
        delay = float(tg.attributes.get("deregistration_delay.timeout_seconds", 300))
        dataplane.deregistered(target_group_arn, instances, int(tg.port or 80), delay)

    ELBv2Backend.deregister_targets = deregister_targets

    describe = ELBv2Backend.describe_target_health

    def describe_target_health(self: Any, target_group_arn: str, targets: list[dict[str, Any]]) -> list[Any]:
        statuses = describe(self, target_group_arn, targets)
        tg = self.target_groups[target_group_arn]
        hc_port = tg.health_check_port
        draining = {(d.target_id, d.port): d for d in dataplane.draining_targets(target_group_arn)}
        out = []
        for s in statuses:
            port = int(s.port or tg.port)
            if s.instance_id in tg.targets:
                h = dataplane.health_of(target_group_arn, s.instance_id, port)
                out.append(FakeHealthStatus(s.instance_id, port, hc_port, h.state, h.reason, h.description))
            elif (s.instance_id, port) in draining:
                out.append(FakeHealthStatus(s.instance_id, port, hc_port, "draining",
                                            "Target.DeregistrationInProgress",
                                            "Target deregistration is in progress"))
            else:
                out.append(s)
        if not targets:
            # As on AWS, draining targets are listed with the registered ones until the delay ends.
            out += [FakeHealthStatus(d.target_id, d.port, hc_port, "draining", "Target.DeregistrationInProgress",
                                     "Target deregistration is in progress") for d in draining.values()]
        return out

    ELBv2Backend.describe_target_health = describe_target_health


def _patch_ecr(registries: Registries, findings: dict[tuple[str, str, str, str], dict[str, int]]) -> None:
    # Extension 6: scan results are what the control API set for the digest (none by default),
    # for any image ECR knows; moto alone answers a fixed fake HIGH finding.
    def describe_image_scan_findings(self: Any, registry_id: str | None, repository_name: str,
                                     image_id: dict[str, Any]) -> dict[str, Any]:
        repo = self._get_repository(repository_name, registry_id)
        image = repo._get_image(image_id.get("imageTag"), image_id.get("imageDigest"))
        digest = image.get_image_digest()
        counts = findings.get((self.account_id, self.region_name, repository_name, digest), {})
        now = datetime.now(timezone.utc)
        return {
            "registryId": repo.registry_id,
            "repositoryName": repository_name,
            "imageId": {"imageDigest": digest, "imageTag": image.image_tag},
            "imageScanStatus": {"status": "COMPLETE", "description": "The scan was completed successfully."},
            "imageScanFindings": {"imageScanCompletedAt": now, "vulnerabilitySourceUpdatedAt": now,
                                  "findings": [], "findingSeverityCounts": dict(counts)},
        }

    ECRBackend.describe_image_scan_findings = describe_image_scan_findings

    def get_authorization_token(self: Any) -> ActionResult:
        registry_ids = self._get_param("registryIds") or [self.current_account]
        data = []
        for registry_id in registry_ids:
            reg = registries.get(registry_id, self.region)
            data.append({
                "authorizationToken": base64.b64encode(f"AWS:{reg.password}".encode()).decode(),
                "expiresAt": datetime.now(timezone.utc) + timedelta(hours=12),
                "proxyEndpoint": reg.url,
            })
        return ActionResult({"authorizationData": data})

    ECRResponse.get_authorization_token = get_authorization_token


MANIFEST_TYPES = {
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}


def registry_pushed(registries: Registries, account: str, region: str, envelope: dict[str, Any]) -> int:
    """Extension 6: a tagged manifest pushed to a registry becomes an image in that account and
    region's ECR, with its real digest, as on AWS where the registry *is* ECR. A repository that
    does not exist yet is created (IMMUTABLE, scan on push), as ECR's create-on-push templates do."""
    from . import oci

    reg = registries.get(account, region)
    backend = ecr_backends[account][region]
    added = 0
    for event in envelope.get("events", []):
        target = event.get("target", {})
        if event.get("action") != "push" or target.get("mediaType") not in MANIFEST_TYPES or not target.get("tag"):
            continue
        repo, tag, digest = target["repository"], target["tag"], target["digest"]
        body = oci.Client(reg.url, "AWS", reg.password).session.get(
            f"{reg.url}/v2/{repo}/manifests/{digest}", headers={"Accept": oci.ACCEPT}, timeout=30).content
        if repo not in backend.repositories:
            backend.create_repository(repo, None, {"encryptionType": "AES256"}, {"scanOnPush": True},
                                      "IMMUTABLE", [])
        try:
            backend.put_image(repo, body.decode(), tag, target["mediaType"], digest)
            added += 1
        except ImageAlreadyExistsException:
            pass
    return added
