"""Where the extensions hook into moto. Each patch wraps one moto method; see README.md."""

from __future__ import annotations

import base64
import copy
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import requests
from moto.cloudwatch import exceptions as cw_exceptions
from moto.cloudwatch.models import CloudWatchBackend
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.ecr.models import ECRBackend, Image, ecr_backends
from moto.ecr.exceptions import ImageAlreadyExistsException, InvalidParameterException, ScanNotFoundException
from moto.ecr.responses import ECRResponse
from moto.ecs import exceptions as ecs_exceptions
from moto.ecs.models import EC2ContainerServiceBackend
from moto.elbv2.models import ELBv2Backend, FakeHealthStatus, elbv2_backends

from . import oci
from .albmetrics import NAMESPACE as ALB_NAMESPACE, MetricError
from .dataplane import Dataplane
from .registry import Registries
from .scanning import Scanning, is_index
from .world import Addresses


def install(addresses: Addresses, dataplane: Dataplane, registries: Registries, scanning: Scanning) -> None:
    _patch_ecs()
    _patch_elbv2(addresses, dataplane)
    _patch_ecr(registries, scanning)
    _patch_cloudwatch(dataplane)


def _patch_ecs() -> None:
    # Extension 5: AWS answers a missing task set with TaskSetNotFoundException; moto says
    # ClientException, which would make callers that match AWS's documented code misbehave.
    def task_set_not_found(self: Any) -> None:
        ecs_exceptions.ECSException.__init__(self, "TaskSetNotFoundException",
                                             "The specified task set does not exist.")

    ecs_exceptions.TaskSetNotFoundException.__init__ = task_set_not_found

    original = EC2ContainerServiceBackend.create_task_set

    def create_task_set(self: Any, *args: Any, scale: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        # Extension 14: a task set's target group must be one a load balancer routes to.
        for lb in kwargs.get("load_balancers") or []:
            arn = lb.get("targetGroupArn")
            if arn and not _routed_to(self.account_id, self.region_name, arn):
                raise ecs_exceptions.InvalidParameterException(
                    f"The target group with targetGroupArn {arn} does not have an associated load balancer.")
        # moto would call run_task for the scale; the reconciler (tasks.py) starts real tasks instead.
        ts = original(self, *args, scale=None, **kwargs)
        ts.scale = scale or {"value": 100.0, "unit": "PERCENT"}
        ts.running_count = ts.pending_count = ts.computed_desired_count = 0
        ts.stabilityStatus = ts.stability_status = "STABILIZING"
        return ts

    EC2ContainerServiceBackend.create_task_set = create_task_set


def _routed_to(account: str, region: str, target_group_arn: str) -> bool:
    """Whether a listener's default action or rule of an ALB in the region forwards to the target
    group (weight 0 counts: the group is associated). Read from the live listeners and rules,
    not moto's `LoadBalancerArns`, which ModifyListener and ModifyRule do not keep in step."""
    backend = elbv2_backends[account][region]
    for lb in backend.load_balancers.values():
        for listener in lb.listeners.values():
            for rule in listener.rules.values():
                for action in rule.actions:
                    data = action.data
                    groups = (data.get("ForwardConfig") or {}).get("TargetGroups") or []
                    if data.get("TargetGroupArn") == target_group_arn or any(
                            g.get("TargetGroupArn") == target_group_arn for g in groups):
                        return True
    return False


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


class UnsupportedImageTypeException(ServiceException):
    code = "UnsupportedImageTypeException"


# Extension 9: the account settings ECR's PutAccountSetting names, their values, and what an
# account that never set one answers.
ACCOUNT_SETTINGS = {
    "BLOB_MOUNTING": (("ENABLED", "DISABLED"), "DISABLED"),
    "BASIC_SCAN_TYPE_VERSION": (("AWS_NATIVE", "CLAIR"), "AWS_NATIVE"),
    "REGISTRY_POLICY_SCOPE": (("V1", "V2"), "V1"),
}


def _image_id_rep(image_id: dict[str, Any]) -> str:
    return f"{{imageDigest:'{image_id.get('imageDigest') or 'null'}', imageTag:'{image_id.get('imageTag') or 'null'}'}}"


def account_setting(account: str, region: str, name: str) -> str:
    settings = getattr(ecr_backends[account][region], "localaws_account_settings", {})
    return settings.get(name, ACCOUNT_SETTINGS[name][1])


def scans_on_push(repository: Any) -> bool:
    """Basic scanning on push: the repository's scanOnPush, or a registry rule that applies to it."""
    return bool((repository.image_scanning_configuration or {}).get("scanOnPush")) or \
        (repository.scanning_config or {}).get("scanFrequency") in ("SCAN_ON_PUSH", "CONTINUOUS_SCAN")


def _findings(counts: dict[str, int]) -> list[dict[str, Any]]:
    """One basic-scan finding per counted vulnerability, most severe first."""
    out = []
    for sev in ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED"):
        for i in range(counts.get(sev, 0)):
            name = f"CVE-0000-{len(out) + 1:04d}"
            out.append({"name": name, "uri": f"https://cve.mitre.org/cgi-bin/cvename.cgi?name={name}",
                        "severity": sev, "description": f"localaws {sev} finding {i + 1}",
                        "attributes": [{"key": "package_name", "value": "localaws-fixture"},
                                       {"key": "package_version", "value": "0.0.0"}]})
    return out


def _patch_ecr(registries: Registries, scanning: Scanning) -> None:
    def key_of(backend: Any, repository_name: str, image: Any) -> tuple[str, str, str, str]:
        return (backend.account_id, backend.region_name, repository_name, image.get_image_digest())

    # Extension 6: scan results per image manifest, as ECR keeps them (scanning.py); moto alone
    # answers a fixed fake HIGH finding for any image it was asked to scan.
    def describe_image_scan_findings(self: Any, registry_id: str | None, repository_name: str,
                                     image_id: dict[str, Any], max_results: int | None = None,
                                     next_token: str | None = None) -> dict[str, Any]:
        repo = self._get_repository(repository_name, registry_id)
        image = repo._get_image(image_id.get("imageTag"), image_id.get("imageDigest"))
        state = scanning.state(key_of(self, repository_name, image))
        if state is None:  # never scanned; an image index never is
            raise ScanNotFoundException(image_id=_image_id_rep(image_id), repository_name=repository_name,
                                        registry_id=repo.registry_id)
        echoed = {"imageDigest": image.get_image_digest()}
        if image_id.get("imageTag"):
            echoed["imageTag"] = image_id["imageTag"]
        status = {"status": state.status}
        if state.description:
            status["description"] = state.description
        out: dict[str, Any] = {"registryId": repo.registry_id, "repositoryName": repository_name,
                               "imageId": echoed, "imageScanStatus": status}
        if state.status == "COMPLETE":
            findings = _findings(state.counts)
            try:
                start = int(next_token or 0)
            except ValueError:
                raise InvalidParameterException("Invalid parameter at 'nextToken' failed to satisfy constraint: "
                                                "'The token is not valid'") from None
            size = int(max_results or 100)
            completed = datetime.fromtimestamp(state.completed_at, timezone.utc)
            out["imageScanFindings"] = {"imageScanCompletedAt": completed,
                                        "vulnerabilitySourceUpdatedAt": completed,
                                        "findings": findings[start:start + size]}
            if state.counts:
                out["imageScanFindings"]["findingSeverityCounts"] = {k: v for k, v in state.counts.items() if v}
            if start + size < len(findings):
                out["nextToken"] = str(start + size)
        return out

    ECRBackend.describe_image_scan_findings = describe_image_scan_findings

    def describe_image_scan_findings_response(self: Any) -> ActionResult:
        return ActionResult(self.ecr_backend.describe_image_scan_findings(
            registry_id=self._get_param("registryId"), repository_name=self._get_param("repositoryName"),
            image_id=self._get_param("imageId"), max_results=self._get_param("maxResults"),
            next_token=self._get_param("nextToken")))

    ECRResponse.describe_image_scan_findings = describe_image_scan_findings_response

    # DescribeImages reports each manifest's scan (status and severity summary); an index has none.
    describe_images_original = ECRBackend.describe_images

    def describe_images(self: Any, repository_name: str, registry_id: str | None = None,
                        image_ids: list[dict[str, str]] | None = None) -> Any:
        images = describe_images_original(self, repository_name, registry_id, image_ids)
        views = []
        for image in images:
            view = copy.copy(image)
            state = scanning.state(key_of(self, repository_name, image))
            if state is not None:
                view.image_scan_status = {"status": state.status, **(
                    {"description": state.description} if state.description else {})}
                if state.status == "COMPLETE":
                    completed = datetime.fromtimestamp(state.completed_at, timezone.utc)
                    summary: dict[str, Any] = {"imageScanCompletedAt": completed,
                                               "vulnerabilitySourceUpdatedAt": completed}
                    if state.counts:
                        summary["findingSeverityCounts"] = {k: v for k, v in state.counts.items() if v}
                    view.image_scan_findings_summary = summary
            views.append(view)
        return views

    ECRBackend.describe_images = describe_images

    # StartImageScan: an index cannot be scanned; a manifest once a day (moto counts that).
    start_image_scan_original = ECRBackend.start_image_scan

    def start_image_scan(self: Any, registry_id: str, repository_name: str, image_id: dict[str, str]) -> Any:
        repo = self._get_repository(repository_name, registry_id)
        image = repo._get_image(image_id.get("imageTag"), image_id.get("imageDigest"))
        key = key_of(self, repository_name, image)
        media_type = image.image_manifest_media_type
        if scanning.is_index(key) or is_index(media_type):
            raise UnsupportedImageTypeException(f"An artifact with media type '{media_type}' cannot be scanned. "
                                                "For more information, see the Amazon ECR documentation.")
        out = start_image_scan_original(self, registry_id, repository_name, image_id)
        scanning.start(key)
        return out

    ECRBackend.start_image_scan = start_image_scan

    # Extension 9: PutAccountSetting / GetAccountSetting (moto 5.2.5 has neither), per account and
    # region as ECR's registry settings are.
    def put_account_setting(self: Any, name: str, value: str) -> dict[str, str]:
        if name not in ACCOUNT_SETTINGS:
            raise InvalidParameterException(f"Invalid parameter at 'name' failed to satisfy constraint: "
                                            f"'Member must be one of {', '.join(ACCOUNT_SETTINGS)}'")
        allowed = ACCOUNT_SETTINGS[name][0]
        if value not in allowed:
            raise InvalidParameterException(f"Invalid parameter at 'value' failed to satisfy constraint: "
                                            f"'Member must be one of {', '.join(allowed)}' for {name}")
        if not hasattr(self, "localaws_account_settings"):
            self.localaws_account_settings = {}
        self.localaws_account_settings[name] = value
        return {"name": name, "value": value}

    def get_account_setting(self: Any, name: str) -> dict[str, str]:
        if name not in ACCOUNT_SETTINGS:
            raise InvalidParameterException(f"Invalid parameter at 'name' failed to satisfy constraint: "
                                            f"'Member must be one of {', '.join(ACCOUNT_SETTINGS)}'")
        return {"name": name, "value": account_setting(self.account_id, self.region_name, name)}

    ECRBackend.put_account_setting = put_account_setting
    ECRBackend.get_account_setting = get_account_setting
    ECRResponse.put_account_setting = lambda self: ActionResult(
        self.ecr_backend.put_account_setting(self._get_param("name"), self._get_param("value")))
    ECRResponse.get_account_setting = lambda self: ActionResult(
        self.ecr_backend.get_account_setting(self._get_param("name")))

    def mount_allowed(account: str, region: str, repository: str, source: str) -> bool:
        """A registry mounts across repositories only with BLOB_MOUNTING enabled, and only between
        repositories with the same encryption (one that does not exist yet gets the default)."""
        if account_setting(account, region, "BLOB_MOUNTING") != "ENABLED":
            return False
        repos = ecr_backends[account][region].repositories

        def encryption(name: str) -> Any:
            r = repos.get(name)
            return r.encryption_configuration if r is not None else {"encryptionType": "AES256"}

        return encryption(repository) == encryption(source)

    registries.blobs.mount_allowed = mount_allowed

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


def registry_pushed(registries: Registries, scanning: Scanning, account: str, region: str,
                    envelope: dict[str, Any]) -> int:
    """Extension 6: a manifest pushed to a registry becomes an image in that account and region's
    ECR, with its real digest, as on AWS where the registry *is* ECR: tagged, or untagged when
    pushed by digest (an index's platform manifests). A repository that does not exist yet is
    created (IMMUTABLE, scan on push), as ECR's create-on-push templates do. An image manifest in a
    repository that scans on push is scanned (scanning.py)."""
    reg = registries.get(account, region)
    backend = ecr_backends[account][region]
    added = 0
    for event in envelope.get("events", []):
        target = event.get("target", {})
        if event.get("action") != "push" or target.get("mediaType") not in MANIFEST_TYPES:
            continue
        repo, tag, digest, media_type = target["repository"], target.get("tag"), target["digest"], target["mediaType"]
        body = requests.get(f"{reg.internal_url}/v2/{repo}/manifests/{digest}", auth=("AWS", reg.password),
                            headers={"Accept": oci.ACCEPT}, timeout=30).content
        if repo not in backend.repositories:
            backend.create_repository(repo, None, {"encryptionType": "AES256"}, {"scanOnPush": True},
                                      "IMMUTABLE", [])
        repository = backend.repositories[repo]
        if tag:
            try:
                backend.put_image(repo, body.decode(), tag, media_type, digest)
                added += 1
            except ImageAlreadyExistsException:
                pass
        elif not any(i.get_image_digest() == digest for i in repository.images):
            repository.images.append(Image(account, None, body.decode(), repo, media_type, digest))
            added += 1
        image = next((i for i in repository.images if i.get_image_digest() == digest), None)
        if image is None:  # ECR refused it (an IMMUTABLE tag already on another digest)
            continue
        on_push = scans_on_push(repository) and not is_index(media_type)
        if on_push and image.last_scan is None:
            # The scan on push counts toward ECR's one scan per image per day (StartImageScan).
            image.last_scan = datetime.today()
        scanning.pushed((account, region, repo, digest), media_type, json.loads(body), on_push)
    return added


def _patch_cloudwatch(dataplane: Dataplane) -> None:
    """Extension 15: GetMetricData answers `AWS/ApplicationELB` queries from the data plane's
    counts (albmetrics.py), in the order asked, and passes every other query to moto."""
    original = CloudWatchBackend.get_metric_data

    def get_metric_data(self: Any, queries: list[dict[str, Any]], start_time: datetime, end_time: datetime,
                        scan_by: str = "TimestampAscending") -> list[dict[str, Any]]:
        if start_time >= end_time:
            return original(self, queries, start_time, end_time, scan_by)
        ours = {i for i, q in enumerate(queries)
                if (q.get("MetricStat") or {}).get("Metric", {}).get("Namespace") == ALB_NAMESPACE}
        theirs = [q for i, q in enumerate(queries) if i not in ours]
        by_id = {r["id"]: r for r in (original(self, theirs, start_time, end_time, scan_by) if theirs else [])}
        results = []
        for i, q in enumerate(queries):
            if i in ours:
                if not q.get("ReturnData", True):
                    continue
                try:
                    results.append(dataplane.metrics.answer(self.account_id, self.region_name, q, i + 1,
                                                            start_time, end_time, scan_by))
                except MetricError as e:
                    error = (cw_exceptions.ValidationError if e.code == "ValidationError"
                             else cw_exceptions.InvalidParameterValue)
                    raise error(str(e)) from None
            elif q["Id"] in by_id:
                results.append(by_id.pop(q["Id"]))
        return results + list(by_id.values())

    CloudWatchBackend.get_metric_data = get_metric_data
