"""Extension 10: ECS CreateTaskSet `clientToken` idempotency, as ECS does it.

ECS (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/ECS_Idempotency.html):

- a client token is "up to 36 ASCII characters in the range of 33-126 (inclusive)" for
  CreateService and CreateTaskSet; anything else is refused here with `InvalidParameterException`
  (the modelled error for a parameter that is not valid);
- "Requests with the same token in the same cluster are idempotent": a retry with the same token
  and the same parameters "succeeds without performing any further actions" and answers the task
  set the first request made, as it is now;
- the same token with other parameters fails. ECS documents the code only for RunTask
  (`ConflictException`), which CreateTaskSet's model does not list; the stand-in answers
  `InvalidParameterException`, ECS's answer to a non-idempotent CreateService ("Creation of service
  was not idempotent."), with a message of its own naming the token.

How long ECS remembers a token is documented only for RunTask (24 hours, or the resource's life
plus one hour if shorter); the stand-in remembers every token for its own lifetime, longer than any
test. moto alone ignores the token: every retry makes another task set.

The wrapper sits in front of patches.py's create_task_set (install after patches.install), so a
replayed request reaches neither moto nor the task reconciler.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from moto.ecs.exceptions import InvalidParameterException
from moto.ecs.models import EC2ContainerServiceBackend

MAX_TOKEN_LENGTH = 36


class ClientTokens:
    """Every CreateTaskSet client token seen, per account, region and cluster."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        # (account, region, cluster ARN, token) -> (the request's parameters as JSON, task set)
        self._seen: dict[tuple[str, str, str, str], tuple[str, Any]] = {}
        self.replayed = 0
        self.refused = 0

    def configure(self, body: dict[str, Any]) -> dict[str, Any]:
        if "enabled" in body:
            self.enabled = bool(body["enabled"])
        return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"enabled": self.enabled, "tokens": len(self._seen), "replayed": self.replayed,
                    "refused": self.refused}


def validate_token(token: str) -> None:
    if len(token) > MAX_TOKEN_LENGTH or any(not 33 <= ord(c) <= 126 for c in token):
        raise InvalidParameterException(
            f"Invalid client token {token!r}: up to {MAX_TOKEN_LENGTH} ASCII characters in the range "
            "33-126 (inclusive) are allowed.")


def install(tokens: ClientTokens) -> None:
    inner = EC2ContainerServiceBackend.create_task_set

    def create_task_set(self: Any, service: str, cluster_str: str, task_definition: str,
                        **kwargs: Any) -> Any:
        token = kwargs.get("client_token")
        if not tokens.enabled or not token:
            return inner(self, service, cluster_str, task_definition, **kwargs)
        validate_token(token)
        cluster = self._get_cluster(cluster_str)  # ClusterNotFoundException, as ECS answers
        params = json.dumps({"service": service, "cluster": cluster_str, "taskDefinition": task_definition,
                             **{k: v for k, v in kwargs.items() if k != "client_token"}},
                            sort_keys=True, default=str)
        key = (self.account_id, self.region_name, cluster.arn, token)
        with tokens._lock:
            seen = tokens._seen.get(key)
            if seen is not None:
                if seen[0] == params:
                    tokens.replayed += 1
                    return seen[1]
                tokens.refused += 1
                raise InvalidParameterException(
                    f"Creation of task set was not idempotent: client token {token!r} was already used in "
                    f"cluster {cluster.name} with different parameters.")
            task_set = inner(self, service, cluster_str, task_definition, **kwargs)
            tokens._seen[key] = (params, task_set)
            return task_set

    EC2ContainerServiceBackend.create_task_set = create_task_set
