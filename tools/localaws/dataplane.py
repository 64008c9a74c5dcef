"""Extensions 2 and 4: real target health, and ALBs that carry traffic.

Both run in one asyncio thread and read moto's live ELBv2 objects in-process, so what they do always
follows the API state exactly (a ModifyListener is in effect for the very next request), with no
second copy of the configuration to keep in sync.

Why a small proxy rather than HAProxy: an ALB picks a target group by the listener's weights, then a
healthy target in it, and fails open to all registered targets when none is healthy. HAProxy can do
each piece, but every listener created through the API would need a configuration reload, every
weight change a runtime map update and every registration a `add server`; a missed or late update
would make the stand-in disagree with moto. Reading moto's state per request removes that class of
bug; the proxy is one handler (`_proxy`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import functools
import logging
import random
import threading
import time
from typing import Any

import aiohttp
from aiohttp import web
from moto.elbv2.models import elbv2_backends

from .albmetrics import AlbMetrics
from .world import Settings

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "content-length", "host"}


@dataclasses.dataclass
class Health:
    state: str = "initial"
    reason: str | None = "Elb.RegistrationInProgress"
    description: str | None = "Target registration is in progress"
    ok_streak: int = 0
    fail_streak: int = 0
    unhealthy_since: float | None = None


@dataclasses.dataclass
class Draining:
    target_id: str
    port: int
    until: float


def _target_groups():
    for account, regions in list(elbv2_backends.items()):
        for region, backend in list(regions.items()):
            for arn, tg in list(backend.target_groups.items()):
                yield account, region, arn, tg


# ---- listener rules (extension 14) ---------------------------------------------------------------
# An ALB evaluates a listener's rules in priority order, lowest first, and the default action
# last. An http-header condition matches when the header (name compared case-insensitively) has
# a value matching one of the condition's values: compared case-insensitively, `*` matching any
# run of characters and `?` exactly one. moto stores rules but routes nothing; this is the part
# of ALB routing bluegreen's test route depends on (tools/localaws/README.md, extension 14).

def _action_for(listener: Any, headers: Any, path: str) -> dict[str, Any]:
    """The first action of the rule that matches, or the listener's default action."""
    rules = sorted(listener._non_default_rules.values(), key=lambda r: int(r.priority))
    for rule in rules:
        if rule.actions and all(_condition_matches(c, headers, path) for c in rule.conditions):
            return rule.actions[0].data
    return listener.default_actions[0].data


def _condition_matches(condition: dict[str, Any], headers: Any, path: str) -> bool:
    field = condition.get("Field")
    if field == "http-header":
        config = condition.get("HttpHeaderConfig") or {}
        patterns = config.get("Values") or []
        values = headers.getall(config.get("HttpHeaderName", ""), [])
        return any(_wildcard(p, v) for p in patterns for v in values)
    if field == "path-pattern":
        patterns = (condition.get("PathPatternConfig") or {}).get("Values") or condition.get("Values") or []
        # Path patterns, unlike header values, are case-sensitive.
        return any(fnmatch.fnmatchcase(path, _glob(p)) for p in patterns)
    # A condition the stand-in does not evaluate never matches: its rule is skipped, loudly.
    _unserved(field)
    return False


def _glob(pattern: str) -> str:
    """An ALB pattern as an fnmatch one: only * and ? are special; [ and ] are literal."""
    return pattern.replace("[", "[[]")


def _wildcard(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value.lower(), _glob(pattern.lower()))


def _unserved(field: str | None) -> None:
    logging.getLogger("localaws.dataplane").error("listener rule condition %s is not evaluated locally", field)


def _code_matches(matcher: dict[str, Any] | None, code: int) -> bool:
    spec = ((matcher or {}).get("HttpCode") or "200").replace(" ", "")
    for part in spec.split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            if int(lo) <= code <= int(hi):
                return True
        elif part and int(part) == code:
            return True
    return False


class Dataplane:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self.health: dict[tuple[str, str, int], Health] = {}
        self.draining: dict[str, list[Draining]] = {}
        # (ip, port) → (account, region, listener arn), and the running sites.
        self._sites: dict[tuple[str, int], tuple[str, str, str, web.AppRunner]] = {}
        self._rr: dict[str, int] = {}
        self.session: aiohttp.ClientSession | None = None
        self.errors: list[str] = []
        # Extension 15: what the ALB's per-target-group CloudWatch metrics count.
        self.metrics = AlbMetrics(settings)
        # Requests per listener and User-Agent product (what an ALB access log would show), so a
        # test can tell whether a client sent any.
        self.agents: dict[str, dict[str, int]] = {}

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self._init())
            ready.set()
            self.loop.create_task(self._health_loop())
            self.loop.create_task(self._listener_loop())
            self.loop.run_forever()

        threading.Thread(target=run, name="localaws-dataplane", daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the data plane thread did not start")

    async def _init(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
            auto_decompress=False,
        )

    # ---- target registration hooks (called from moto's request threads) -------------------
    def registered(self, tg_arn: str, targets: list[dict[str, Any]], default_port: int) -> None:
        with self._lock:
            for t in targets:
                port = int(t.get("Port") or default_port)
                self.health[(tg_arn, t["Id"], port)] = Health()
                self.draining[tg_arn] = [d for d in self.draining.get(tg_arn, [])
                                         if (d.target_id, d.port) != (t["Id"], port)]

    def deregistered(self, tg_arn: str, targets: list[dict[str, Any]], default_port: int, delay: float) -> None:
        until = time.monotonic() + min(delay, self.settings.max_deregistration_delay)
        with self._lock:
            for t in targets:
                port = int(t.get("Port") or default_port)
                self.health.pop((tg_arn, t["Id"], port), None)
                self.draining.setdefault(tg_arn, []).append(Draining(t["Id"], port, until))

    def health_of(self, tg_arn: str, target_id: str, port: int) -> Health:
        with self._lock:
            return dataclasses.replace(self.health.get((tg_arn, target_id, port)) or Health())

    def draining_targets(self, tg_arn: str) -> list[Draining]:
        now = time.monotonic()
        with self._lock:
            live = [d for d in self.draining.get(tg_arn, []) if d.until > now]
            self.draining[tg_arn] = live
            return list(live)

    # ---- extension 2: health checks --------------------------------------------------------
    async def _health_loop(self) -> None:
        while True:
            started = time.monotonic()
            checks = []
            for _account, _region, arn, tg in _target_groups():
                for t in list(tg.targets.values()):
                    port = int(t.get("Port") or tg.port)
                    checks.append(self._check(arn, tg, t["Id"], port))
            if checks:
                for result in await asyncio.gather(*checks, return_exceptions=True):
                    if isinstance(result, Exception):
                        self._error(f"health check failed to run: {type(result).__name__}: {result}")
            await asyncio.sleep(max(0.0, self.settings.health_interval - (time.monotonic() - started)))

    async def _check(self, arn: str, tg: Any, ip: str, port: int) -> None:
        path = tg.health_check_path or "/"
        reason = description = None
        try:
            timeout = aiohttp.ClientTimeout(total=self.settings.health_timeout)
            async with self.session.get(f"http://{ip}:{port}{path}", timeout=timeout,
                                        headers={"User-Agent": "ELB-HealthChecker/2.0"}) as r:
                await r.read()
                ok = _code_matches(tg.matcher, r.status)
                if not ok:
                    reason, description = ("Target.ResponseCodeMismatch",
                                           f"Health checks failed with these codes: [{r.status}]")
        except asyncio.TimeoutError:
            ok, reason, description = False, "Target.Timeout", "Request timed out"
        except aiohttp.ClientError:
            ok, reason, description = False, "Target.FailedHealthChecks", "Health checks failed"
        healthy_th = int(tg.healthy_threshold_count or 5)
        unhealthy_th = int(tg.unhealthy_threshold_count or 2)
        with self._lock:
            h = self.health.get((arn, ip, port))
            if h is None:  # deregistered meanwhile
                return
            if ok:
                h.ok_streak, h.fail_streak = h.ok_streak + 1, 0
                if h.state != "healthy" and h.ok_streak >= healthy_th:
                    h.state, h.reason, h.description, h.unhealthy_since = "healthy", None, None, None
            else:
                h.ok_streak, h.fail_streak = 0, h.fail_streak + 1
                if h.state == "initial" and h.fail_streak < unhealthy_th:
                    h.reason, h.description = "Elb.InitialHealthChecking", "Initial health checks in progress"
                elif h.fail_streak >= unhealthy_th:
                    if h.state != "unhealthy":
                        h.unhealthy_since = time.monotonic()
                    h.state, h.reason, h.description = "unhealthy", reason, description

    # ---- extension 4: listeners that carry traffic ------------------------------------------
    async def _listener_loop(self) -> None:
        """Keeps one HTTP server per (ALB address, listener port) that exists in moto."""
        while True:
            wanted: dict[tuple[str, int], tuple[str, str, str]] = {}
            for account, regions in list(elbv2_backends.items()):
                for region, backend in list(regions.items()):
                    for lb in list(backend.load_balancers.values()):
                        ip = getattr(lb, "localaws_ip", None)
                        if not ip:
                            continue
                        for listener in list(lb.listeners.values()):
                            wanted[(ip, int(listener.port))] = (account, region, listener.arn)
            for key in [k for k in self._sites if k not in wanted or self._sites[k][2] != wanted[k][2]]:
                runner = self._sites.pop(key)[3]
                await runner.cleanup()
            for key, (account, region, arn) in wanted.items():
                if key in self._sites:
                    continue
                app = web.Application()
                app.router.add_route("*", "/{tail:.*}", self._handler(account, region, arn))
                runner = web.AppRunner(app, access_log=None, handle_signals=False)
                await runner.setup()
                try:
                    await web.TCPSite(runner, key[0], key[1], reuse_address=True).start()
                except OSError as e:
                    await runner.cleanup()
                    self._error(f"cannot serve listener {arn} on {key[0]}:{key[1]}: {e}")
                    continue
                self._sites[key] = (account, region, arn, runner)
            await asyncio.sleep(0.1)

    def _handler(self, account: str, region: str, listener_arn: str):
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._proxy(account, region, listener_arn, request)
        return handle

    def _pick(self, account: str, region: str, listener_arn: str,
              headers: "web.BaseRequest.headers", path: str) -> tuple[str, str, str, int] | web.Response:
        """The target a request goes to: (target group ARN, load balancer ARN, address, port), or the
        answer the load balancer gives itself."""
        backend = elbv2_backends[account][region]
        listener = None
        for lb in backend.load_balancers.values():
            for candidate in lb.listeners.values():
                if candidate.arn == listener_arn:
                    listener = candidate
        if listener is None or not listener.default_actions:
            return web.Response(status=503, text="listener has no action")
        action = _action_for(listener, headers, path)
        if action.get("Type") == "fixed-response":
            fixed = action.get("FixedResponseConfig") or {}
            return web.Response(status=int(fixed.get("StatusCode", 503)), text=fixed.get("MessageBody", ""),
                                content_type=fixed.get("ContentType") or "text/plain")
        if action.get("Type") != "forward":
            return web.Response(status=503, text=f"listener action {action.get('Type')} is not served locally")
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or []
        if not groups and action.get("TargetGroupArn"):
            groups = [{"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}]
        weights = [int(g.get("Weight", 1)) for g in groups]
        if sum(weights) <= 0:
            return web.Response(status=503, text="every target group has weight 0")
        tg_arn = random.choices([g["TargetGroupArn"] for g in groups], weights=weights)[0]
        tg = backend.target_groups.get(tg_arn)
        targets = [(t["Id"], int(t.get("Port") or tg.port)) for t in list(tg.targets.values())] if tg else []
        if not targets:
            return web.Response(status=503, text=f"Service Unavailable: no registered targets in {tg_arn}")
        healthy = [t for t in targets if self.health_of(tg_arn, t[0], t[1]).state == "healthy"]
        # An ALB fails open: with no healthy target it routes to all registered ones.
        pool = healthy or targets
        n = self._rr.get(tg_arn, 0)
        self._rr[tg_arn] = n + 1
        ip, port = pool[n % len(pool)]
        return tg_arn, listener.load_balancer_arn, ip, port

    async def _proxy(self, account: str, region: str, listener_arn: str, request: web.Request) -> web.StreamResponse:
        agent = (request.headers.get("User-Agent") or "-").split("/", 1)[0]
        with self._lock:
            per = self.agents.setdefault(listener_arn, {})
            per[agent] = per.get(agent, 0) + 1
        picked = self._pick(account, region, listener_arn, request.headers, request.path)
        if isinstance(picked, web.Response):
            return picked
        tg_arn, lb_arn, ip, port = picked
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        peer = request.remote or ""
        prior = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
        headers["X-Forwarded-Proto"] = request.scheme
        headers["X-Forwarded-Port"] = str(request.url.port or "")
        body = await request.read()
        sent = time.monotonic()
        record = functools.partial(self.metrics.record, account, region, lb_arn, tg_arn)
        answered = False
        try:
            async with self.session.request(request.method, f"http://{ip}:{port}{request.rel_url}",
                                            headers=headers, data=body or None, allow_redirects=False,
                                            timeout=aiohttp.ClientTimeout(total=60)) as upstream:
                # TargetResponseTime: from sending the request until the target's response headers.
                record(status=upstream.status, seconds=time.monotonic() - sent, connection_error=False)
                answered = True
                payload = await upstream.read()
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
                return web.Response(status=upstream.status, headers=out, body=payload)
        except aiohttp.ClientConnectorError:
            # TargetConnectionErrorCount; the ALB answers 502 itself (an ELB code, not a target's).
            record(status=None, seconds=None, connection_error=True)
            return web.Response(status=502, text="Bad Gateway")
        except (aiohttp.ClientError, asyncio.TimeoutError):
            # What an ALB answers when the target resets or does not answer: a request with no
            # target code if it broke before the headers.
            if not answered:
                record(status=None, seconds=None, connection_error=False)
            return web.Response(status=502, text="Bad Gateway")

    def _error(self, msg: str) -> None:
        with self._lock:
            if msg not in self.errors:
                self.errors.append(msg)
                del self.errors[:-50]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "listeners": [f"{ip}:{port}" for (ip, port) in self._sites],
                "errors": list(self.errors),
                "agents": {arn: dict(v) for arn, v in self.agents.items()},
            }
