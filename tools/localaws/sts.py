"""Extension 12: STS sessions that end, and web identity tokens that are checked.

moto issues AssumeRole and AssumeRoleWithWebIdentity credentials with an `Expiration`, accepts any
DurationSeconds and any web identity token, and honours the credentials forever. AWS:

- DurationSeconds is 900 to 43200 (else `ValidationError` "1 validation error detected: Value 'N'
  at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal
  to 900"), at most the role's MaxSessionDuration ("The requested DurationSeconds exceeds the
  MaxSessionDuration set for this role.") and at most an hour when the caller is itself an assumed
  role ("... exceeds the 1 hour session limit for roles assumed by role chaining."). Checked here
  (the role's limit only for roles that exist in the stand-in's IAM; as with moto, a role need not
  exist to be assumed).
- A request signed with credentials whose session has ended answers HTTP 400 `ExpiredToken`
  (query protocols) / `ExpiredTokenException` (JSON protocols), "The security token included in
  the request is expired": the `gate` below, before moto sees the request (faults.py's shape),
  logged with `"expired": true`.
- AssumeRoleWithWebIdentity verifies the JWT: the role's account must have an IAM OIDC provider
  for its `iss` (`InvalidIdentityToken` "No OpenIDConnect provider found in your account for
  <iss>"), the signature must verify with the issuer's keys (the stand-in knows only its own
  GitHub issuer's, github_oidc.py; others: "Couldn't retrieve verification key from your identity
  provider, ..."), `exp` must be in the future (`ExpiredTokenException` "Token expired: current
  date/time N must be before the expiration date/time M"), `aud` must be one of the provider's
  client IDs (`InvalidIdentityToken` "Incorrect token audience"), and, when the role exists, its
  trust policy must allow the token's `sub`/`aud` (`AccessDenied` "Not authorized to perform
  sts:AssumeRoleWithWebIdentity"; StringEquals and StringLike conditions are evaluated).

Test knob (not AWS): sessions can be made short, so a test sees them end in seconds while the API
keeps AWS's validation of DurationSeconds:

    POST /_localaws/sts {"session_seconds": 5}   every session issued from now on lasts min(requested, 5) s
    POST /_localaws/sts {"time_scale": 0.01}     ... requested x 0.01 s (3600 s -> 36 s)
    POST /_localaws/sts {"session_seconds": null, "time_scale": 1}   back to real lifetimes
    serve --sts-session-seconds 5 / --sts-time-scale 0.01

The `Expiration` returned is the session's real end, so the SDK's credential cache renews on time
(the Rust SDK renews 5-10 s before `Expiration`: with sessions under ~10 s every call renews).
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from moto.core.exceptions import ServiceException
from moto.sts.exceptions import STSValidationError
from moto.sts.models import STSBackend
from moto.sts.responses import TokenResponse
from werkzeug.exceptions import HTTPException

from .faults import _SCOPE
from .github_oidc import GithubOidc, b64decode

MIN_DURATION, MAX_DURATION, CHAINED_MAX = 900, 43200, 3600
_ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::(\d{12}):role/")


class StsError(ServiceException):
    """An STS error of the model (moto takes its HTTP status from the model: 400 for these)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)


class AccessDenied(HTTPException):
    """STS's `AccessDenied` (HTTP 403), which its model does not list, so moto would answer 400."""

    code = 403

    def __init__(self, message: str) -> None:
        body = (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
                f"<Code>AccessDenied</Code><Message>{message}</Message></Error>"
                f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")
        super().__init__(description=body)

    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        return [("Content-Type", "text/xml")]


class Sessions:
    def __init__(self, session_seconds: float | None = None, time_scale: float = 1.0) -> None:
        self.session_seconds = session_seconds
        self.time_scale = time_scale
        self._lock = threading.Lock()
        self._ends: dict[str, float] = {}  # access key id -> when the session ends (epoch seconds)
        self.expired_calls = 0

    def configure(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if "session_seconds" in body:
                s = body["session_seconds"]
                if s is not None and float(s) < 1:
                    raise ValueError(f"session_seconds must be 1 or more (or null), not {s}")
                self.session_seconds = None if s is None else float(s)
            if "time_scale" in body:
                scale = float(body["time_scale"])
                if scale <= 0:
                    raise ValueError(f"time_scale must be more than 0, not {scale}")
                self.time_scale = scale
        return self.snapshot()

    def lifetime(self, requested: int) -> int:
        """Seconds the session really lasts (whole seconds, as Expiration is given)."""
        seconds = requested * self.time_scale
        if self.session_seconds is not None:
            seconds = min(seconds, self.session_seconds)
        return max(1, round(seconds))

    def register(self, access_key_id: str, expiration: datetime) -> None:
        if expiration.tzinfo is None:
            expiration = expiration.replace(tzinfo=timezone.utc)
        with self._lock:
            self._ends[access_key_id] = expiration.timestamp()

    def is_session(self, access_key_id: str) -> bool:
        with self._lock:
            return access_key_id in self._ends

    def gate(self, service: str, action: str, region: str, access_key: str,
             environ: dict[str, Any]) -> tuple[str, str] | None:
        """faults.Faults gate: ("expired", "expired") for a call signed by a session that ended."""
        with self._lock:
            end = self._ends.get(access_key)
            if end is None or time.time() < end:
                return None
            self.expired_calls += 1
        return "expired", "expired"

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            return {"session_seconds": self.session_seconds, "time_scale": self.time_scale,
                    "sessions": len(self._ends), "live": sum(1 for e in self._ends.values() if e > now),
                    "expired_calls": self.expired_calls}


def _role(role_arn: str) -> Any | None:
    from moto.iam.models import iam_backends

    m = _ROLE_ARN.match(role_arn or "")
    if not m:
        return None
    try:
        return iam_backends[m.group(1)]["aws"].get_role_by_arn(role_arn)
    except Exception:
        return None


def check_duration(duration: int | None, role_arn: str, chained: bool) -> None:
    if duration is None:
        return
    if duration < MIN_DURATION:
        raise STSValidationError(
            f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy "
            f"constraint: Member must have value greater than or equal to {MIN_DURATION}")
    if duration > MAX_DURATION:
        raise STSValidationError(
            f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy "
            f"constraint: Member must have value less than or equal to {MAX_DURATION}")
    if chained and duration > CHAINED_MAX:
        raise STSValidationError(
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.")
    role = _role(role_arn)
    if role is not None and duration > int(role.max_session_duration or 3600):
        raise STSValidationError("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")


def _invalid(message: str) -> StsError:
    return StsError("InvalidIdentityToken", message)


def verify_web_identity(token: str, role_arn: str, github: GithubOidc) -> dict[str, Any]:
    """The token's claims, or the error AWS answers for it."""
    from moto.iam.models import iam_backends

    try:
        head, payload, _sig = token.split(".")
        json.loads(b64decode(head))
        claims = json.loads(b64decode(payload))
        iss = str(claims["iss"])
    except (ValueError, KeyError, TypeError):
        raise _invalid("The web identity token that was passed could not be validated by AWS. "
                       "Get a new identity token from the identity provider and then retry the request.") from None
    m = _ROLE_ARN.match(role_arn or "")
    account = m.group(1) if m else ""
    host = iss.split("://", 1)[-1].rstrip("/")
    provider = iam_backends[account]["aws"].open_id_providers.get(
        f"arn:aws:iam::{account}:oidc-provider/{host}") if account else None
    if provider is None:
        raise _invalid(f"No OpenIDConnect provider found in your account for {iss}")
    if iss != github_issuer():
        raise _invalid("Couldn't retrieve verification key from your identity provider,  please reference "
                       "AssumeRoleWithWebIdentity documentation for requirements")
    if not github.verify(token):
        raise _invalid("The web identity token that was passed could not be validated by AWS. "
                       "Get a new identity token from the identity provider and then retry the request.")
    now = int(time.time())
    exp = int(claims.get("exp", 0))
    if now >= exp:
        raise StsError("ExpiredTokenException",
                       f"Token expired: current date/time {now} must be before the expiration date/time {exp}")
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if not any(a in provider.client_id_list for a in auds):
        raise _invalid("Incorrect token audience")
    role = _role(role_arn)
    if role is not None and not _trusts(role.assume_role_policy_document, provider.arn, host, claims):
        raise AccessDenied("Not authorized to perform sts:AssumeRoleWithWebIdentity")
    return claims


def github_issuer() -> str:
    from .github_oidc import ISSUER

    return ISSUER


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _trusts(document: Any, provider_arn: str, host: str, claims: dict[str, Any]) -> bool:
    """Whether the trust policy lets a web identity with `claims` from `provider_arn` in."""
    try:
        policy = json.loads(document) if isinstance(document, str) else document
    except ValueError:
        return False

    def applies(st: dict[str, Any]) -> bool:
        actions = _listed(st.get("Action", []))
        if not any(fnmatch.fnmatchcase("sts:AssumeRoleWithWebIdentity", a) for a in actions):
            return False
        federated = _listed((st.get("Principal") or {}).get("Federated", []))
        if provider_arn not in federated:
            return False
        for operator, tests in (st.get("Condition") or {}).items():
            for key, expected in tests.items():
                claim = key.split(":", 1)[1] if key.startswith(f"{host}:") else None
                actual = claims.get(claim) if claim else None
                values = [str(v) for v in _listed(actual)] if actual is not None else []
                wanted = [str(v) for v in _listed(expected)]
                if operator == "StringEquals":
                    ok = any(v in wanted for v in values)
                elif operator == "StringLike":
                    ok = any(fnmatch.fnmatchcase(v, w) for v in values for w in wanted)
                else:
                    ok = False  # not evaluated here: refuse rather than let in
                if not ok:
                    return False
        return True

    statements = _listed(policy.get("Statement", []))
    allowed = any(st.get("Effect") == "Allow" and applies(st) for st in statements)
    denied = any(st.get("Effect") == "Deny" and applies(st) for st in statements)
    return allowed and not denied


def _caller_key(response: TokenResponse) -> str:
    m = _SCOPE.search(response.headers.get("Authorization", "") or "")
    return m.group(1) if m else ""


def install(sessions: Sessions, github: GithubOidc) -> None:
    backend_assume = STSBackend.assume_role

    def assume_role(self: Any, region_name: str, role_session_name: str, role_arn: str, policy: str,
                    duration: int, external_id: str) -> Any:
        role = backend_assume(self, region_name=region_name, role_session_name=role_session_name,
                              role_arn=role_arn, policy=policy, duration=sessions.lifetime(duration),
                              external_id=external_id)
        sessions.register(role.access_key_id, role.expiration)
        return role

    STSBackend.assume_role = assume_role

    def checked(original: Callable, web_identity: bool) -> Callable:
        def response(self: TokenResponse) -> Any:
            duration = self._get_int_param("DurationSeconds")
            role_arn = self._get_param("RoleArn")
            chained = not web_identity and sessions.is_session(_caller_key(self))
            check_duration(duration, role_arn, chained)
            if web_identity:
                verify_web_identity(self._get_param("WebIdentityToken") or "", role_arn, github)
            return original(self)

        return response

    TokenResponse.assume_role = checked(TokenResponse.assume_role, False)
    TokenResponse.assume_role_with_web_identity = checked(TokenResponse.assume_role_with_web_identity, True)
