"""Extension 11 (optional, off by default): AWS's request rate limits, as token buckets per
account and region.

Each documented bucket holds `capacity` tokens (the burst) and gets `refill` tokens back every
second (the sustained rate), never more than its capacity; every request takes one token from each
bucket its action draws on, and a request that finds one of them empty is refused before moto sees
it with the service's throttling error, in the protocol's own shape (faults.py: HTTP 400
`ThrottlingException` for JSON protocols, `Throttling` for query protocols), and logged with
`"throttled": true`. The SDK retries it with backoff, as it would on AWS.

    POST /_localaws/throttling {"enabled": true}                 AWS's documented buckets
    POST /_localaws/throttling {"enabled": true, "scale": 0.1}   every capacity and refill x 0.1
    POST /_localaws/throttling {"buckets": {"ecs:service-modify": {"capacity": 2, "refill": 1}}}
    POST /_localaws/throttling {"actions": {"ecs:CreateTaskSet": ["ecs:task-set"]},
                                "buckets": {"ecs:task-set": {"capacity": 5, "refill": 1}}}
    POST /_localaws/throttling {"enabled": false}                off (buckets are kept; "reset": true empties them)

or `serve --throttling` to start with it on. Sources (README, extension 11):

- ECS: "Request throttling for the Amazon ECS API" (per category, per account and Region). The
  task set actions (CreateTaskSet, DescribeTaskSets, UpdateTaskSet, DeleteTaskSet,
  UpdateServicePrimaryTaskSet) are in no documented category: they are not limited unless a test
  maps them to a bucket with `actions`.
- ELBv2: "Request throttling for the Elastic Load Balancing API": every action draws on the
  account-level bucket (40, 10/s) and on its category's; actions the page does not list fall in
  "mutating", as the page says, except Describe* (non-mutating).
- CloudWatch: "Amazon CloudWatch endpoints and quotas", rate quotas ("N per second"): modelled as a
  bucket of N refilled by N every second.
- ECR: "Amazon ECR service quotas", rate quotas, likewise.
- DynamoDB: the control plane's 2,500 requests per second ("Best practices for managing the control
  plane in DynamoDB"); item reads and writes are limited by table capacity, not request rate, and
  are not limited here.
- STS: no documented request rate; not limited.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

# Bucket name -> (capacity, refill per second).
BUCKETS: dict[str, tuple[float, float]] = {
    # ECS, per category.
    "ecs:cluster-modify": (20, 1),
    "ecs:cluster-read": (50, 20),
    "ecs:task-definition-modify": (20, 1),
    "ecs:task-definition-read": (50, 20),
    "ecs:task-definition-delete": (5, 1),
    "ecs:capacity-provider-modify": (10, 1),
    "ecs:capacity-provider-read": (50, 20),
    "ecs:tag-modify": (20, 10),
    "ecs:tag-read": (50, 20),
    "ecs:setting-modify": (10, 1),
    "ecs:setting-read": (50, 20),
    "ecs:cluster-resource-modify": (100, 40),
    "ecs:cluster-resource-read": (100, 20),
    "ecs:agent-modify": (200, 120),
    "ecs:service-modify": (50, 5),
    "ecs:service-read": (100, 20),
    "ecs:service-deployment": (50, 20),
    "ecs:service-revision": (50, 20),
    "ecs:task-protection": (200, 80),
    "ecs:cluster-service-resource-read": (10, 1),
    # ELBv2.
    "elbv2:account": (40, 10),
    "elbv2:resource-intensive": (10, 0.2),
    "elbv2:registration": (20, 4),
    "elbv2:non-mutating": (40, 10),
    "elbv2:mutating": (20, 3),
    "elbv2:trust-store-create": (10, 0.2),
    "elbv2:trust-store-modify": (10, 0.2),
    "elbv2:get": (20, 4),
    "elbv2:trust-store-read": (40, 10),
    # DynamoDB control plane.
    "dynamodb:control-plane": (2500, 2500),
}

_ECS = {
    "ecs:cluster-modify": "CreateCluster DeleteCluster PutClusterCapacityProviders UpdateCluster UpdateClusterSettings",
    "ecs:cluster-read": "DescribeClusters ListClusters",
    "ecs:task-definition-modify": "DeregisterTaskDefinition RegisterTaskDefinition",
    "ecs:task-definition-read": "DescribeTaskDefinition ListTaskDefinitions ListTaskDefinitionFamilies",
    "ecs:task-definition-delete": "DeleteTaskDefinitions",
    "ecs:capacity-provider-modify": "CreateCapacityProvider DeleteCapacityProvider UpdateCapacityProvider",
    "ecs:capacity-provider-read": "DescribeCapacityProviders",
    "ecs:tag-modify": "TagResource UntagResource",
    "ecs:tag-read": "ListTagsForResource",
    "ecs:setting-modify": "DeleteAccountSetting PutAccountSetting PutAccountSettingDefault",
    "ecs:setting-read": "ListAccountSettings",
    "ecs:cluster-resource-modify": "DeleteAttributes DeregisterContainerInstance ExecuteCommand PutAttributes "
                                   "RunTask StartTask StopTask UpdateContainerAgent UpdateContainerInstancesState",
    "ecs:cluster-resource-read": "DescribeContainerInstances DescribeTasks ListAttributes ListContainerInstances ListTasks",
    "ecs:agent-modify": "RegisterContainerInstance SubmitAttachmentStateChanges SubmitContainerStateChange "
                        "SubmitTaskStateChange",
    "ecs:service-modify": "CreateService DeleteService UpdateService",
    "ecs:service-read": "DescribeServices ListServices",
    "ecs:service-deployment": "DescribeServiceDeployments ListServiceDeployments",
    "ecs:service-revision": "DescribeServiceRevisions",
    "ecs:task-protection": "UpdateTaskProtection GetTaskProtection",
    "ecs:cluster-service-resource-read": "ListServicesByNamespace",
}

_ELBV2 = {
    "elbv2:resource-intensive": "CreateLoadBalancer SetSubnets",
    "elbv2:registration": "RegisterTargets DeregisterTargets",
    "elbv2:non-mutating": "DescribeAccountLimits DescribeCapacityReservation DescribeListenerAttributes "
                          "DescribeListenerCertificates DescribeListeners DescribeLoadBalancerAttributes "
                          "DescribeLoadBalancers DescribeRules DescribeSSLPolicies DescribeTags "
                          "DescribeTargetGroupAttributes DescribeTargetGroups DescribeTargetHealth",
    "elbv2:trust-store-create": "CreateTrustStore",
    "elbv2:trust-store-modify": "AddTrustStoreRevocations DeleteSharedTrustStoreAssociation DeleteTrustStore "
                                "ModifyTrustStore RemoveTrustStoreRevocations",
    "elbv2:get": "GetResourcePolicy GetTrustStoreCaCertificatesBundle GetTrustStoreRevocationContent",
    "elbv2:trust-store-read": "DescribeTrustStoreAssociations DescribeTrustStoreRevocations DescribeTrustStores",
}

# Rate quotas, N requests per second: a bucket of N refilled by N each second.
_RATES = {
    "monitoring": {
        "DeleteAlarms": 3, "DescribeAlarmHistory": 20, "DescribeAlarms": 9, "DescribeAlarmsForMetric": 9,
        "DisableAlarmActions": 3, "EnableAlarmActions": 3, "GetMetricData": 500, "GetMetricStatistics": 400,
        "ListMetrics": 25, "ListTagsForResource": 10, "PutCompositeAlarm": 3, "PutMetricAlarm": 3,
        "PutMetricData": 500, "SetAlarmState": 3, "TagResource": 20, "UntagResource": 20,
        "PutDashboard": 10, "GetDashboard": 10, "ListDashboards": 10, "DeleteDashboards": 10,
    },
    "ecr": {
        "BatchCheckLayerAvailability": 1000, "BatchGetImage": 2000, "CompleteLayerUpload": 100,
        "GetAuthorizationToken": 500, "GetDownloadUrlForLayer": 3000, "InitiateLayerUpload": 100,
        "PutImage": 10, "UploadLayerPart": 500,
    },
}
for _service, _rates in _RATES.items():
    for _action, _rate in _rates.items():
        BUCKETS[f"{_service}:{_action}"] = (_rate, _rate)

_DYNAMODB_CONTROL = ("CreateTable DeleteTable DescribeTable UpdateTable ListTables DescribeTimeToLive "
                     "UpdateTimeToLive DescribeContinuousBackups UpdateContinuousBackups DescribeLimits "
                     "CreateBackup DeleteBackup DescribeBackup ListBackups CreateGlobalTable UpdateGlobalTable "
                     "DescribeGlobalTable ListGlobalTables TagResource UntagResource ListTagsOfResource "
                     "DescribeKinesisStreamingDestination DescribeContributorInsights UpdateContributorInsights")


def _default_actions() -> dict[str, list[str]]:
    """`service:Action` (the SigV4 signing name) -> the buckets the action draws on."""
    actions: dict[str, list[str]] = {}
    for bucket, names in _ECS.items():
        for a in names.split():
            actions[f"ecs:{a}"] = [bucket]
    for bucket, names in _ELBV2.items():
        for a in names.split():
            actions[f"elasticloadbalancing:{a}"] = ["elbv2:account", bucket]
    for service, rates in _RATES.items():
        for a in rates:
            actions[f"{service}:{a}"] = [f"{service}:{a}"]
    for a in _DYNAMODB_CONTROL.split():
        actions[f"dynamodb:{a}"] = ["dynamodb:control-plane"]
    return actions


class _Bucket:
    """Refilled in whole seconds, as the pages describe it ("a set number of tokens is added back
    every second"); fractional rates (0.2/s) accumulate until a whole token is there."""

    def __init__(self, capacity: float, refill: float, now: float) -> None:
        self.capacity, self.refill = capacity, refill
        self.tokens = capacity
        self.tick = now

    def _refill(self, now: float) -> None:
        seconds = math.floor(now - self.tick)
        if seconds > 0:
            self.tokens = min(self.capacity, self.tokens + seconds * self.refill)
            self.tick += seconds


class Throttling:
    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self.scale = 1.0
        self.overrides: dict[str, tuple[float, float]] = {}
        self.actions = _default_actions()
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, str], _Bucket] = {}
        self.throttled = 0

    def configure(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if "enabled" in body:
                self.enabled = bool(body["enabled"])
            if "scale" in body:
                scale = float(body["scale"])
                if scale <= 0:
                    raise ValueError(f"scale must be more than 0, not {scale}")
                self.scale = scale
                self._buckets.clear()
            for name, spec in (body.get("buckets") or {}).items():
                capacity, refill = float(spec["capacity"]), float(spec["refill"])
                if capacity < 1 or refill <= 0:
                    raise ValueError(f"bucket {name}: capacity must be 1 or more and refill more than 0")
                self.overrides[name] = (capacity, refill)
                for key in [k for k in self._buckets if k[2] == name]:
                    del self._buckets[key]
            for action, buckets in (body.get("actions") or {}).items():
                if ":" not in action:
                    raise ValueError(f"actions are named service:Action (ecs:CreateTaskSet), not {action!r}")
                self.actions[action] = [buckets] if isinstance(buckets, str) else list(buckets)
            if body.get("reset"):
                self._buckets.clear()
                self.throttled = 0
        return self.snapshot()

    def _limits(self, name: str) -> tuple[float, float] | None:
        if name in self.overrides:
            return self.overrides[name]
        base = BUCKETS.get(name)
        if base is None:
            return None
        return max(1.0, base[0] * self.scale), base[1] * self.scale

    def buckets_of(self, service: str, action: str) -> list[str]:
        named = self.actions.get(f"{service}:{action}")
        if named is not None:
            return named
        if service == "elasticloadbalancing":
            # The ELB page: mutating "generally includes all API actions that are not categorized
            # as non-mutating actions".
            return ["elbv2:account", "elbv2:non-mutating" if action.startswith("Describe") else "elbv2:mutating"]
        return []

    def gate(self, service: str, action: str, region: str, access_key: str,
             environ: dict[str, Any]) -> tuple[str, str] | None:
        """faults.Faults gate: ("throttle", "throttled") when a bucket of this request is empty."""
        if not self.enabled or not access_key:
            return None
        names = self.buckets_of(service, action)
        if not names:
            return None
        from moto.iam.models import get_account_id_from

        account = get_account_id_from(access_key)
        now = time.monotonic()
        with self._lock:
            buckets = []
            for name in names:
                key = (account, region, name)
                bucket = self._buckets.get(key)
                if bucket is None:
                    limits = self._limits(name)
                    if limits is None:
                        continue
                    bucket = self._buckets[key] = _Bucket(*limits, now)
                bucket._refill(now)
                buckets.append(bucket)
            if any(b.tokens < 1 for b in buckets):
                self.throttled += 1
                return "throttle", "throttled"
            for b in buckets:
                b.tokens -= 1
        return None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "enabled": self.enabled, "scale": self.scale, "throttled": self.throttled,
                "overrides": {k: {"capacity": c, "refill": r} for k, (c, r) in self.overrides.items()},
                "buckets": [{"account": a, "region": r, "bucket": n, "tokens": round(b.tokens, 3),
                             "capacity": b.capacity, "refill": b.refill}
                            for (a, r, n), b in sorted(self._buckets.items())],
            }
