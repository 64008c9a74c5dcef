"""Extension 1: task sets run real tasks.

moto keeps task sets as bookkeeping only. Here a reconciler does what the ECS scheduler does for a
service with the EXTERNAL deployment controller: each task set gets ceil(desiredCount × scale%)
tasks (ECS rounds up); each task is a real process started from the command the task definition's
image digest maps to (see Images), on a loopback address of its own (as awsvpc gives each task an
ENI) with the container's environment, and is registered in the task set's target group. Tasks that
exit are stopped and replaced; tasks the ALB reports unhealthy for `replace_after` get a replacement first and stop once enough tasks are healthy (as the ECS scheduler does with capacity to spare). Scaling down
or deleting a task set deregisters its targets, waits the deregistration delay (draining), sends
SIGTERM, and SIGKILL after the stop timeout, in that order, as ECS does.

The task set's runningCount, pendingCount, computedDesiredCount and stabilityStatus are reported
from these processes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import threading
import time
import traceback
from typing import Any

from moto.ecs.models import ecs_backends
from moto.elbv2.models import elbv2_backends

from . import procs
from .dataplane import Dataplane
from .oci import Client
from .registry import Registries
from .world import Addresses, Images, Settings


@dataclasses.dataclass
class Task:
    id: str
    task_set_arn: str
    account: str
    region: str
    ip: str
    port: int
    tg_arn: str | None
    image: str
    version: str
    proc: subprocess.Popen | None
    started: float
    state: str = "RUNNING"  # RUNNING → DRAINING → STOPPING → STOPPED
    stop_at: float = 0.0
    kill_at: float = 0.0
    exited_at: float | None = None
    stopped_reason: str = ""
    # Failing ELB health checks: a replacement is starting; this one stops once enough are healthy.
    replacing_since: float | None = None


class TaskRunner:
    def __init__(self, settings: Settings, addresses: Addresses, images: Images,
                 registries: Registries, dataplane: Dataplane, state_dir: str) -> None:
        self.settings = settings
        self.addresses = addresses
        self.images = images
        self.registries = registries
        self.dataplane = dataplane
        self.log_dir = os.path.join(state_dir, "tasks")
        os.makedirs(self.log_dir, exist_ok=True)
        self._lock = threading.Lock()
        self.tasks: dict[str, list[Task]] = {}
        self.stopped: list[Task] = []
        self.events: list[str] = []
        self._counter = 0
        self._last_launch: dict[str, float] = {}

    def start(self) -> None:
        threading.Thread(target=self._loop, name="localaws-tasks", daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                self.reconcile()
            except Exception:  # keep the scheduler alive; the event log says what broke
                self._event("reconcile failed: " + traceback.format_exc(limit=3))
            time.sleep(self.settings.reconcile_interval)

    def _event(self, msg: str) -> None:
        with self._lock:
            self.events.append(msg)
            del self.events[:-200]

    # ---- reconciliation ---------------------------------------------------------------------
    def reconcile(self) -> None:
        seen: set[str] = set()
        for account, regions in list(ecs_backends.items()):
            for region, backend in list(regions.items()):
                for service in list(backend.services.values()):
                    for ts in list(service.task_sets):
                        seen.add(ts.task_set_arn)
                        self._reconcile_set(account, region, service, ts)
        # Task sets deleted through the API: drain and stop what they still run.
        with self._lock:
            gone = [arn for arn in self.tasks if arn not in seen]
        for arn in gone:
            for task in self._tasks(arn):
                self._begin_stop(task, "task set deleted")
            self._advance(arn)

    def _tasks(self, arn: str) -> list[Task]:
        with self._lock:
            return list(self.tasks.get(arn, []))

    def _reconcile_set(self, account: str, region: str, service: Any, ts: Any) -> None:
        arn = ts.task_set_arn
        scale = float((ts.scale or {}).get("value", 100.0))
        desired = math.ceil(service.desired_count * scale / 100.0 - 1e-9)
        now = time.monotonic()

        for task in self._tasks(arn):
            if task.state != "RUNNING":
                continue
            if task.proc is not None and task.proc.poll() is not None and task.exited_at is None:
                task.exited_at = now
                self._event(f"task {task.id} ({task.ip}) exited with {task.proc.returncode}")
            h = self.dataplane.health_of(task.tg_arn, task.ip, task.port) if task.tg_arn else None
            # ECS replaces a task that stopped or that the ALB keeps reporting unhealthy.
            if task.exited_at is not None and now - task.exited_at >= self.settings.replace_after:
                self._begin_stop(task, f"Essential container exited with code {task.proc.returncode}")
            elif task.proc is None and now - task.started >= self.settings.replace_after:
                self._begin_stop(task, task.stopped_reason or "CannotPullContainerError")
            elif (h is not None and h.state == "unhealthy" and h.unhealthy_since is not None
                  and now - h.unhealthy_since >= self.settings.replace_after and task.replacing_since is None):
                # Like the ECS scheduler with capacity to spare, start the replacement first and
                # stop this task once enough are healthy, so the target group never goes empty.
                task.replacing_since = now
                self._event(f"task {task.id} ({task.ip}) failed ELB health checks; replacing it")

        running = [t for t in self._tasks(arn) if t.state == "RUNNING"]
        serving = [t for t in running if t.replacing_since is None]
        if len(serving) > desired:
            for task in sorted(serving, key=lambda t: t.started, reverse=True)[: len(serving) - desired]:
                self._begin_stop(task, "Scaling activity initiated by deployment")
        elif len(serving) < desired:
            # Relaunch a crash-looping image no faster than ECS's replacement pace.
            if now - self._last_launch.get(arn, 0.0) >= min(self.settings.replace_after, 0.5) or not serving:
                for _ in range(desired - len(serving)):
                    self._launch(account, region, service, ts)
                self._last_launch[arn] = now
        healthy_serving = sum(
            1 for t in serving
            if t.tg_arn is None or self.dataplane.health_of(t.tg_arn, t.ip, t.port).state == "healthy"
        )
        for task in running:
            if task.replacing_since is not None and (
                healthy_serving >= desired or now - task.replacing_since >= 4 * self.settings.replace_after
            ):
                self._begin_stop(task, f"Task failed ELB health checks in (target-group {task.tg_arn})")

        self._advance(arn)
        running = [t for t in self._tasks(arn) if t.state == "RUNNING"]
        alive = [t for t in running if t.proc is not None and t.proc.poll() is None]
        healthy = all(
            t.tg_arn is None or self.dataplane.health_of(t.tg_arn, t.ip, t.port).state == "healthy"
            for t in alive
        )
        settling = any(t.state != "RUNNING" for t in self._tasks(arn))
        ts.computed_desired_count = desired
        ts.running_count = len(alive)
        ts.pending_count = len(running) - len(alive)
        steady = len(alive) == desired and healthy and not settling
        status = "STEADY_STATE" if steady else "STABILIZING"
        if getattr(ts, "stabilityStatus", None) != status:
            ts.stabilityStatus = status
            ts.stability_status = status
            from moto.core.utils import utcnow
            ts.stabilityStatusAt = utcnow()

    # ---- one task ---------------------------------------------------------------------------
    def _launch(self, account: str, region: str, service: Any, ts: Any) -> None:
        backend = ecs_backends[account][region]
        taskdef = backend.describe_task_definition(ts.task_definition)
        lb = (ts.load_balancers or [None])[0]
        containers = taskdef.container_definitions
        container = next((c for c in containers if lb and c.get("name") == lb.get("containerName")), containers[0])
        port = int((lb or {}).get("containerPort") or
                   next(iter(container.get("portMappings") or []), {}).get("containerPort") or 8080)
        with self._lock:
            self._counter += 1
            task_id = f"{self._counter:04d}{os.urandom(6).hex()}"
        ip = self.addresses.allocate("task", port)
        env = {e["name"]: e["value"] for e in container.get("environment") or []}
        version = env.get("APP_VERSION", "")
        image = container.get("image", "")
        task = Task(task_id, ts.task_set_arn, account, region, ip, port, (lb or {}).get("targetGroupArn"),
                    image, version, None, time.monotonic())
        digest, why = self._digest_of(image, account, region)
        command = self.images.lookup(digest) if digest else None
        if command is None:
            task.stopped_reason = why or f"CannotPullContainerError: the stand-in has no command for image {image}"
            self._event(f"task {task_id}: {task.stopped_reason}")
        else:
            proc_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **command.env, **env,
                        "PORT": str(port), "BIND_ADDR": ip, "AWS_REGION": region,
                        "AWS_DEFAULT_REGION": region, "HOSTNAME": f"ip-{ip.replace('.', '-')}",
                        "ECS_TASK_ID": task_id}
            log = open(os.path.join(self.log_dir, f"{task_id}.log"), "ab")
            task.proc = procs.spawn(command.argv, proc_env, log)
            log.close()
        with self._lock:
            self.tasks.setdefault(ts.task_set_arn, []).append(task)
        if task.tg_arn and task.proc is not None:
            # ECS registers the task's ENI address and container port once the task is started.
            elbv2_backends[account][region].register_targets(task.tg_arn, [{"Id": ip, "Port": port}])

    def _digest_of(self, image: str, account: str, region: str) -> tuple[str | None, str | None]:
        if "@sha256:" in image:
            return image.split("@", 1)[1], None
        name, _, tag = image.rpartition(":")
        if not name or "/" in tag:
            return None, f"CannotPullContainerError: {image} names no tag or digest"
        host, _, repo = name.partition("/")
        reg = self.registries.by_url(host)
        if reg is None and ".dkr.ecr." in host:
            acct, _, rest = host.partition(".dkr.ecr.")
            reg = self.registries.get(acct, rest.split(".", 1)[0])
        if reg is None:
            return None, f"CannotPullContainerError: no registry at {host}"
        try:
            digest = Client(reg.url, "AWS", reg.password).resolve(repo, tag)
        except Exception as e:  # the registry is ours; any failure is a pull failure
            return None, f"CannotPullContainerError: {e}"
        return digest, None if digest else f"CannotPullContainerError: {image} not found"

    def _begin_stop(self, task: Task, reason: str) -> None:
        if task.state != "RUNNING":
            return
        task.stopped_reason = reason
        now = time.monotonic()
        if task.tg_arn and task.proc is not None:
            backend = elbv2_backends[task.account][task.region]
            tg = backend.target_groups.get(task.tg_arn)
            if tg is not None and task.ip in tg.targets:
                backend.deregister_targets(task.tg_arn, [{"Id": task.ip, "Port": task.port}])
            delay = float((tg.attributes if tg else {}).get("deregistration_delay.timeout_seconds", 300))
            task.stop_at = now + min(delay, self.settings.max_deregistration_delay)
            task.state = "DRAINING"
        else:
            task.stop_at = now
            task.state = "DRAINING"

    def _advance(self, arn: str) -> None:
        """Moves stopping tasks along: draining → SIGTERM → SIGKILL → stopped."""
        now = time.monotonic()
        for task in self._tasks(arn):
            if task.state == "DRAINING" and now >= task.stop_at:
                if task.proc is not None and task.proc.poll() is None:
                    task.proc.terminate()
                task.state, task.kill_at = "STOPPING", now + self.settings.max_stop_timeout
            if task.state == "STOPPING":
                if task.proc is not None and task.proc.poll() is None:
                    if now < task.kill_at:
                        continue
                    task.proc.kill()
                    task.proc.wait()
                if task.proc is not None:
                    procs.forget(task.proc)
                task.state = "STOPPED"
                with self._lock:
                    self.tasks[arn] = [t for t in self.tasks.get(arn, []) if t is not task]
                    if not self.tasks[arn]:
                        del self.tasks[arn]
                    self.stopped.append(task)
                    del self.stopped[:-100]

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            tasks = [t for ts in self.tasks.values() for t in ts]
        return [{
            "id": t.id, "task_set_arn": t.task_set_arn, "account": t.account, "region": t.region,
            "ip": t.ip, "port": t.port, "target_group_arn": t.tg_arn, "image": t.image,
            "version": t.version, "pid": t.proc.pid if t.proc else None, "state": t.state,
            "alive": bool(t.proc and t.proc.poll() is None), "stopped_reason": t.stopped_reason,
        } for t in tasks]
