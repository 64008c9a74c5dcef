"""The launcher: moto in server mode, the extensions, and a small control API under /_localaws/.

    python -m localaws serve [--port 0] [--state-dir DIR] [--ready-file FILE]
                             [--scan-delay 0.5] [--blob-url-expiry 600]

Control API (JSON):
    GET  /_localaws/status       endpoint, registries, ALB listeners, tasks, images, recent events
    POST /_localaws/images       {"digest", "argv", "env"}: what tasks of an image digest run
    POST /_localaws/seed         build and push an image, map its digests to a command (see seed())
    POST /_localaws/bootstrap    create an environment's topology (see bootstrap.py)
    POST /_localaws/scan-findings  ECR scan results for an image manifest: {account, region, repository,
                                 digest, platform?, counts?, status?, description?, scan_delay?}
                                 (see scanning.Scanning.set)
    POST /_localaws/settings     change timings at run time: {scan_delay?, blob_url_expiry?} (seconds),
                                 the layer bucket's fault {bucket_cut_after?} (bytes; 0: off), and the
                                 ALB metrics' {metric_period?, metric_delay?} (extension 15, albmetrics.py)
    POST /_localaws/registry-events  the registries' push notifications (extension 6)
    GET  /_localaws/requests?since=N  the AWS request log from entry N (extension 7)
    POST /_localaws/faults       inject AWS errors into chosen calls (extension 7, see faults.py)
    POST /_localaws/client-tokens  {"enabled": bool}: CreateTaskSet clientToken idempotency (extension 10, idempotency.py)
    POST /_localaws/throttling   AWS's request rate limits, off by default (extension 11, throttling.py)
    POST /_localaws/sts          {"session_seconds"|"time_scale"}: short STS sessions for tests (extension 12, sts.py)
    POST /_localaws/github-oidc  a GitHub Actions job's OIDC token endpoint (extension 13, github_oidc.py)
    GET  /_localaws/github-oidc/token?audience=A  (Authorization: bearer <request token>) -> {"value": JWT}
    GET  /_localaws/github-oidc/jwks
Everything else is moto, including POST /moto-api/reset.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Callable

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from . import bootstrap, idempotency, oci, patches, procs, sts, throttling
from .faults import Faults
from .github_oidc import GithubOidc
from .dataplane import Dataplane
from .registry import Registries
from .scanning import Scanning
from .tasks import TaskRunner
from .world import Addresses, ImageCommand, Images, Settings, free_port


class Standin:
    def __init__(self, settings: Settings, state_dir: str) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.addresses = Addresses()
        self.images = Images()
        self.registries = Registries(state_dir, settings, self.addresses)
        self.dataplane = Dataplane(settings)
        self.tasks = TaskRunner(settings, self.addresses, self.images, self.registries, self.dataplane, state_dir)
        self.endpoint = ""
        self.faults = Faults()
        self.scanning = Scanning(settings)
        patches.install(self.addresses, self.dataplane, self.registries, self.scanning)
        # Extensions 10-13 (each in its own module; installed after patches.py's, which they wrap).
        self.client_tokens = idempotency.ClientTokens()
        idempotency.install(self.client_tokens)
        self.throttling = throttling.Throttling()
        self.sessions = sts.Sessions()
        self.github = GithubOidc()
        sts.install(self.sessions, self.github)
        # AWS authenticates before it throttles: an ended session is ExpiredToken whatever the rate.
        self.faults.gates += [self.sessions.gate, self.throttling.gate]

    # ---- control API ------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "pid": os.getpid(),
            "state_dir": self.state_dir,
            "aws_requests": len(self.faults.log),
            "faults": self.faults.snapshot(),
            "client_tokens": self.client_tokens.snapshot(),
            "throttling": self.throttling.snapshot(),
            "sts": self.sessions.snapshot(),
            "github_oidc": self.github.snapshot(),
            "registries": self.registries.snapshot(),
            "blobs": self.registries.blobs.snapshot(),
            "scans": self.scanning.snapshot(),
            "dataplane": self.dataplane.snapshot(),
            "alb_metrics": self.dataplane.metrics.snapshot(),
            "tasks": self.tasks.snapshot(),
            "images": self.images.snapshot(),
            "events": list(self.tasks.events[-50:]),
        }

    def seed(self, body: dict[str, Any]) -> dict[str, Any]:
        """Writes a real image to an account-and-region registry and maps its digests to a command.

        body: account, region, repository, tag, argv, env (optional), layers (1), layer_size (bytes,
        1024), platforms (["linux/amd64"]; two or more make an index), scannable (true: the image
        has an operating system ECR's basic scanning supports; false: like a static binary FROM
        scratch, its scan fails with UnsupportedImageError)."""
        reg = self.registries.get(str(body["account"]), body["region"])
        client = oci.Client(reg.url, "AWS", reg.password)
        pushed = oci.build_and_push(
            client, body["repository"], body["tag"],
            layers=int(body.get("layers", 1)), layer_size=int(body.get("layer_size", 1024)),
            platforms=list(body.get("platforms") or ["linux/amd64"]),
            labels={"org.opencontainers.image.version": body["tag"]},
        )
        self._await_ecr(str(body["account"]), body["region"], body["repository"], body["tag"], pushed.digest)
        command = ImageCommand(list(body["argv"]), dict(body.get("env") or {}))
        for digest in [pushed.digest, *pushed.platform_digests]:
            self.images.register(digest, command)
        if body.get("scannable", True):
            account, region, repo = str(body["account"]), body["region"], body["repository"]
            images = pushed.platform_digests or [pushed.digest]
            self.scanning.scannable([(account, region, repo, d) for d in images])
        host = reg.url.split("://", 1)[1]
        return {"digest": pushed.digest, "media_type": pushed.media_type,
                "platform_digests": pushed.platform_digests, "blob_bytes": pushed.blob_bytes,
                "registry": reg.url, "image": f"{host}/{body['repository']}@{pushed.digest}"}

    @staticmethod
    def _await_ecr(account: str, region: str, repo: str, tag: str, digest: str) -> None:
        """The registry reports pushes asynchronously; a seed returns once ECR shows the image."""
        from moto.ecr.models import ecr_backends

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            repository = ecr_backends[account][region].repositories.get(repo)
            if repository and any(i.get_image_digest() == digest and tag in i.image_tags
                                  for i in repository.images):
                return
            time.sleep(0.02)
        raise RuntimeError(f"the registry's push of {repo}:{tag} never reached ECR (registry notifications)")

    def set_findings(self, body: dict[str, Any]) -> dict[str, Any]:
        """Scan results for one image manifest (scanning.Scanning.set), e.g.
        {account, region, repository, digest, counts: {"CRITICAL": 2}}."""
        return self.scanning.set(body)

    def change_settings(self, body: dict[str, Any]) -> dict[str, Any]:
        """Timings tests may change while the stand-in runs: scan_delay (for manifests pushed from
        now on that have no delay of their own) and blob_url_expiry, in seconds; and
        bucket_cut_after, the layer bucket's connection-cut fault, in bytes (0: off)."""
        names = (("scan_delay", float), ("blob_url_expiry", float), ("bucket_cut_after", int),
                 ("metric_period", int), ("metric_delay", float))
        for name, kind in names:
            if name in body:
                value = kind(body[name])
                if value < 0 or (name == "metric_period" and value < 1):
                    raise ValueError(f"{name} must be {'1' if name == 'metric_period' else '0'} or more, not {value}")
                setattr(self.settings, name, value)
        return {name: getattr(self.settings, name) for name, _kind in names}

    def wsgi(self) -> Callable:
        moto_app = self.faults.wrap(DomainDispatcherApplication(create_backend_app))
        routes: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
            ("GET", "/_localaws/status"): lambda _b: self.status(),
            ("POST", "/_localaws/images"): lambda b: self.images.register(
                b["digest"], ImageCommand(list(b["argv"]), dict(b.get("env") or {}))) or {"ok": True},
            ("POST", "/_localaws/seed"): self.seed,
            ("POST", "/_localaws/bootstrap"): lambda b: bootstrap.run(self.endpoint, b),
            ("POST", "/_localaws/scan-findings"): self.set_findings,
            ("POST", "/_localaws/settings"): self.change_settings,
            ("POST", "/_localaws/faults"): self.faults.configure,
            ("POST", "/_localaws/client-tokens"): self.client_tokens.configure,
            ("POST", "/_localaws/throttling"): self.throttling.configure,
            ("POST", "/_localaws/sts"): self.sessions.configure,
            ("POST", "/_localaws/github-oidc"): self.github.new_job,
        }

        def app(environ: dict[str, Any], start_response: Callable) -> Any:
            path = environ.get("PATH_INFO", "")
            if not path.startswith("/_localaws/"):
                return moto_app(environ, start_response)
            req = Request(environ)
            if (req.method, path) == ("GET", "/_localaws/requests"):
                body = self.faults.requests(int(req.args.get("since", 0)))
                return Response(json.dumps(body), 200, content_type="application/json")(environ, start_response)
            if (req.method, path) == ("GET", "/_localaws/github-oidc/token"):
                status, body = self.github.token_request(req.headers.get("Authorization", ""),
                                                         req.args.get("audience"))
                return Response(json.dumps(body), status, content_type="application/json")(environ, start_response)
            if (req.method, path) == ("GET", "/_localaws/github-oidc/jwks"):
                return Response(json.dumps(self.github.jwks()), 200,
                                content_type="application/json")(environ, start_response)
            if (req.method, path) == ("POST", "/_localaws/registry-events"):
                added = patches.registry_pushed(self.registries, self.scanning, req.args["account"],
                                                req.args["region"], json.loads(req.get_data() or b"{}"))
                return Response(json.dumps({"registered": added}), 200,
                                content_type="application/json")(environ, start_response)
            handler = routes.get((req.method, path))
            if handler is None:
                res = Response(json.dumps({"error": f"no control route {req.method} {path}"}), 404,
                               content_type="application/json")
                return res(environ, start_response)
            try:
                body = json.loads(req.get_data() or b"{}")
                res = Response(json.dumps(handler(body), default=str), 200, content_type="application/json")
            except Exception as e:  # the caller (a test) gets the whole reason
                res = Response(json.dumps({"error": f"{type(e).__name__}: {e}",
                                           "trace": traceback.format_exc()}), 500,
                               content_type="application/json")
            return res(environ, start_response)

        return app


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="localaws serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--state-dir", default=None, help="registries' storage and task logs (default: a temp dir)")
    p.add_argument("--ready-file", default=None, help="write the endpoint as JSON here once serving")
    p.add_argument("--health-interval", type=float, default=Settings.health_interval)
    p.add_argument("--replace-after", type=float, default=Settings.replace_after)
    p.add_argument("--scan-delay", type=float, default=Settings.scan_delay,
                   help="seconds a pushed image's ECR scan stays IN_PROGRESS before it is COMPLETE")
    p.add_argument("--blob-url-expiry", type=float, default=Settings.blob_url_expiry,
                   help="lifetime in seconds of the pre-signed URL a registry blob GET redirects to")
    p.add_argument("--metric-period", type=int, default=Settings.metric_period,
                   help="ALB metric resolution in seconds (AWS: 60); GetMetricData Periods are multiples of it")
    p.add_argument("--metric-delay", type=float, default=Settings.metric_delay,
                   help="seconds after a metric period ends before it is published (AWS: one to three minutes)")
    p.add_argument("--throttling", action="store_true",
                   help="enforce AWS's documented request rate limits (extension 11; off by default)")
    p.add_argument("--ecs-client-tokens", choices=["strict", "off"], default="strict",
                   help="CreateTaskSet clientToken idempotency as ECS does it (extension 10; default strict)")
    p.add_argument("--sts-session-seconds", type=float, default=None,
                   help="test knob: STS sessions last at most this long (extension 12; default: as requested)")
    p.add_argument("--sts-time-scale", type=float, default=1.0,
                   help="test knob: STS sessions last requested x this (extension 12; default 1)")
    p.add_argument("--exit-with-parent", action="store_true",
                   help="stop when the process that started this one exits (for test harnesses)")
    args = p.parse_args(argv)

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print("localaws serve: --host must be a loopback address", file=sys.stderr)
        return 2
    state_dir = args.state_dir or tempfile.mkdtemp(prefix="localaws-")
    os.makedirs(state_dir, exist_ok=True)
    settings = Settings(health_interval=args.health_interval, replace_after=args.replace_after,
                        scan_delay=args.scan_delay, blob_url_expiry=args.blob_url_expiry,
                        metric_period=args.metric_period, metric_delay=args.metric_delay)
    if settings.metric_period < 1 or settings.metric_delay < 0:
        p.error("--metric-period must be 1 or more and --metric-delay 0 or more")
    standin = Standin(settings, state_dir)
    standin.throttling.configure({"enabled": args.throttling})
    standin.client_tokens.configure({"enabled": args.ecs_client_tokens == "strict"})
    standin.sessions.configure({"session_seconds": args.sts_session_seconds, "time_scale": args.sts_time_scale})
    port = args.port or free_port(args.host)
    server = make_server(args.host, port, standin.wsgi(), threaded=True)
    standin.endpoint = f"http://{args.host}:{port}"
    standin.registries.endpoint = standin.endpoint
    standin.github.endpoint = standin.endpoint
    standin.dataplane.start()
    standin.tasks.start()

    def shutdown(signum: int, _frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    if args.exit_with_parent:
        parent = os.getppid()

        def watch_parent() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            shutdown(0, None)

        threading.Thread(target=watch_parent, name="localaws-parent-watch", daemon=True).start()
    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    info = {"endpoint": standin.endpoint, "pid": os.getpid(), "state_dir": state_dir}
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(info, f)
        os.replace(tmp, args.ready_file)
    print(f"localaws: AWS endpoint {standin.endpoint}  (AWS_ENDPOINT_URL={standin.endpoint})", flush=True)
    print(f"localaws: state in {state_dir}; control API {standin.endpoint}/_localaws/status", flush=True)
    started = time.monotonic()
    try:
        server.serve_forever()
    finally:
        procs.stop_all()
        print(f"localaws: stopped after {time.monotonic() - started:.1f}s", flush=True)
    return 0
