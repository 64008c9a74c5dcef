"""Extension 7: the request log, injected AWS errors and network delay.

Every AWS API request the stand-in answers is logged with its service, action, region (from the
SigV4 credential scope, as AWS routes it), HTTP status, arrival time `t` and answer time `done`
(and `listener` for ELBv2 calls naming one, `injected` for a made-up error, `delayed_ms` for a
held call, `throttled` for a call the optional rate limits refused (throttling.py), `expired` for a
call signed with an STS session that has ended (sts.py)), so tests and benchmarks can count and
time calls (`GET /_localaws/requests?since=N`).

Faults (`POST /_localaws/faults`) make chosen calls fail the way AWS fails them, before moto sees
them, so a failed mutation never half-happens:

    {"action": "ModifyListener", "region": "eu-west-1", "error": "throttle", "times": 3, "skip": 0}

- `action`: the API action (`CreateTaskSet`, `ModifyListener`, `PutItem`, ...), or `*` for all.
- `region`: only requests signed for this region (optional).
- `access_key`: only requests signed with this access key id (optional).
- `error`: `throttle` (HTTP 400, the service's throttling code), `internal` (HTTP 500, the service's
  internal error code), `unavailable` (HTTP 503), `expired` (HTTP 400 `ExpiredToken`: with
  `access_key`, credentials that have expired, which moto never checks) or `denied` (HTTP 403
  `AccessDenied`, as IAM answers a caller a policy does not allow, e.g. an AssumeRole the role's
  trust policy does not admit; moto never checks).
- `delay_ms`: hold each matching request this long before it is answered, as a network round trip
  to a distant region would; without `error` the request then goes through to moto, with it the
  error is answered after the delay. The stand-in is threaded: held requests overlap.
- `times`: how many matching requests fail or are held (default 1; `-1`: every one); `skip`: how
  many pass first (default 0).
- `{"clear": true}` removes every fault.

Every fault sees each matching request in the order the faults were added, until one fails it:
delays add up, the first error answers.

Error bodies are in each protocol's shape: JSON protocols (ECS, ECR, DynamoDB: `X-Amz-Target`)
answer `{"__type": code, "message": ...}`; query protocols (ELBv2, STS, CloudWatch) answer the
`<ErrorResponse>` XML document. The SDK classifies them exactly as it would AWS's.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
import uuid
from typing import Any, Callable
from urllib.parse import parse_qs

# Per error kind: HTTP status, code for JSON protocols, code for query (XML) protocols.
_KINDS = {
    "throttle": (400, "ThrottlingException", "Throttling", "Rate exceeded"),
    "internal": (500, "InternalFailure", "InternalFailure", "We encountered an internal error. Please try again."),
    "unavailable": (503, "ServiceUnavailableException", "ServiceUnavailable", "Service is unavailable. Please try again."),
    "expired": (400, "ExpiredTokenException", "ExpiredToken", "The security token included in the request is expired"),
    # IAM says no, e.g. a role whose trust policy does not admit the caller (moto never checks).
    "denied": (403, "AccessDeniedException", "AccessDenied",
               "User is not authorized to perform this operation (stand-in: an injected AccessDenied)"),
}
_SCOPE = re.compile(r"Credential=([^/]+)/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
_LOG_LIMIT = 500_000


def describe(environ: dict[str, Any]) -> tuple[str, str, str, str, str | None]:
    """(service, action, region, access key id, ListenerArn if any) of one AWS request; reads and
    restores the body of query-protocol requests."""
    service = region = "?"
    access_key = ""
    m = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if m:
        access_key, region, service = m.group(1), m.group(2), m.group(3)
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return service, target.rsplit(".", 1)[-1], region, access_key, None
    params = parse_qs(environ.get("QUERY_STRING", ""))
    if environ.get("REQUEST_METHOD") == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        params.update(parse_qs(body.decode("utf-8", "replace")))
    action = params.get("Action", ["?"])[0]
    return service, action, region, access_key, params.get("ListenerArn", [None])[0]


class Fault:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.action = str(spec["action"])
        self.region = spec.get("region")
        self.access_key = spec.get("access_key")
        self.delay = float(spec.get("delay_ms", 0)) / 1000
        if self.delay < 0:
            raise ValueError(f"delay_ms must be 0 or more, not {spec['delay_ms']!r}")
        # Without a delay a fault fails requests; its error defaults to a 500.
        default_error = None if self.delay else "internal"
        self.error = spec.get("error", default_error)
        if self.error is not None and self.error not in _KINDS:
            raise ValueError(f"error must be one of {sorted(_KINDS)}, not {self.error!r}")
        self.times = int(spec.get("times", 1))
        if self.times < -1:
            raise ValueError(f"times must be a count or -1 (every request), not {self.times}")
        self.skip = int(spec.get("skip", 0))
        self.injected = 0

    def matches(self, action: str, region: str, access_key: str) -> bool:
        return (self.action in ("*", action) and self.region in (None, region)
                and self.access_key in (None, access_key))

    def snapshot(self) -> dict[str, Any]:
        return {"action": self.action, "region": self.region, "access_key": self.access_key, "error": self.error,
                "delay_ms": self.delay * 1000, "times": self.times, "skip": self.skip, "injected": self.injected}

    def take(self) -> bool:
        """Whether this matching request is one the fault acts on (and counts it)."""
        if self.skip > 0:
            self.skip -= 1
            return False
        if self.times == -1 or self.injected < self.times:
            self.injected += 1
            return True
        return False


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.log: list[dict[str, Any]] = []
        # Checks AWS makes before it acts (expired credentials, throttling: sts.py, throttling.py):
        # each gets (service, action, region, access key, environ) of a request no fault failed,
        # and returns None to let it through or (error kind, log flag) to answer it as AWS would.
        self.gates: list[Callable[[str, str, str, str, dict[str, Any]], tuple[str, str] | None]] = []

    def configure(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if body.get("clear"):
                self._faults.clear()
            else:
                self._faults.append(Fault(body))
            return {"faults": [f.snapshot() for f in self._faults]}

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.snapshot() for f in self._faults]

    def requests(self, since: int) -> dict[str, Any]:
        with self._lock:
            return {"next": len(self.log), "requests": self.log[since:]}

    def _pick(self, action: str, region: str, access_key: str) -> tuple[float, str | None]:
        """(seconds to hold the request, error to answer it with) from the faults matching it."""
        delay, error = 0.0, None
        with self._lock:
            for f in self._faults:
                if f.matches(action, region, access_key) and f.take():
                    delay += f.delay
                    if f.error is not None:
                        error = f.error
                        break
        return delay, error

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            if len(self.log) < _LOG_LIMIT:
                self.log.append(entry)

    def wrap(self, app: Callable) -> Callable:
        """The WSGI app in front of moto: logs every request, fails the ones a fault matches."""

        def handle(environ: dict[str, Any], start_response: Callable) -> Any:
            service, action, region, access_key, listener = describe(environ)
            entry = {"t": time.time(), "service": service, "action": action, "region": region, "status": 0}
            if listener:
                entry["listener"] = listener
            delay, error = self._pick(action, region, access_key)
            if delay:
                entry["delayed_ms"] = round(delay * 1000, 3)
                time.sleep(delay)
            if error is not None:
                entry["injected"] = error
            else:
                for gate in self.gates:
                    verdict = gate(service, action, region, access_key, environ)
                    if verdict is not None:
                        error, flag = verdict
                        entry[flag] = True
                        break
            if error is not None:
                entry["status"] = _KINDS[error][0]
                entry["done"] = time.time()
                self._record(entry)
                return _error(environ, error, start_response)

            def recording_start(status: str, headers: list, exc_info: Any = None) -> Any:
                entry["status"] = int(status.split(" ", 1)[0])
                return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

            self._record(entry)
            body = app(environ, recording_start)
            entry["done"] = time.time()  # moto answers synchronously: its work is done here
            return body

        return handle


def _error(environ: dict[str, Any], kind: str, start_response: Callable) -> list[bytes]:
    status, json_code, query_code, message = _KINDS[kind]
    request_id = str(uuid.uuid4())
    reason = {400: "Bad Request", 403: "Forbidden", 500: "Internal Server Error", 503: "Service Unavailable"}[status]
    if environ.get("HTTP_X_AMZ_TARGET"):
        body = json.dumps({"__type": json_code, "message": message}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", json_code),
                   ("x-amzn-RequestId", request_id)]
    else:
        side = "Sender" if status < 500 else "Receiver"
        body = (f"<ErrorResponse><Error><Type>{side}</Type><Code>{query_code}</Code>"
                f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>").encode()
        headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
    headers.append(("Content-Length", str(len(body))))
    start_response(f"{status} {reason}", headers)
    return [body]
