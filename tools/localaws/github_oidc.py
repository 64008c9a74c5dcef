"""Extension 13: GitHub Actions' OIDC token endpoint, for tests of the CI sign-in path.

In a job with `permissions: id-token: write`, GitHub sets ACTIONS_ID_TOKEN_REQUEST_URL and
ACTIONS_ID_TOKEN_REQUEST_TOKEN; `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=sts.amazonaws.com`
with `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN` answers `{"value": "<JWT>"}`, an
RS256 JWT from issuer https://token.actions.githubusercontent.com with the job's claims
(https://docs.github.com/actions/reference/openid-connect-reference). The stand-in issues such
tokens with a key of its own, and its STS (sts.py) verifies them with that key, as AWS verifies
GitHub's with GitHub's published keys.

    POST /_localaws/github-oidc {"repository": "octo-org/octo-repo", "environment": "prod",
                                 "ttl_seconds": 300, "accounts": ["222222222222"]}
      -> {"request_url", "request_token", "issuer", "jwks_url"}: a job. `accounts` get the IAM OIDC
         provider for the issuer (audience sts.amazonaws.com), as terraform/modules/github-oidc
         creates it; AWS refuses tokens from an issuer the role's account has no provider for.
         Other fields: `ref` (refs/heads/main), `claims` (added to or replacing the defaults).
    GET  /_localaws/github-oidc/token?api-version=2.0&audience=...  (bearer: the request token)
    GET  /_localaws/github-oidc/jwks   the issuer's public keys

Token lifetime: GitHub's documented example token is valid for 5 minutes (exp - iat = 300) with
nbf 10 minutes before iat; `ttl_seconds` sets it (0 or less issues tokens already expired).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ISSUER = "https://token.actions.githubusercontent.com"
DEFAULT_TTL = 300


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class GithubOidc:
    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(16)
        self._lock = threading.Lock()
        self._jobs: dict[str, dict[str, Any]] = {}
        self.endpoint = ""
        self.issued = 0

    # ---- the job and its token endpoint ----------------------------------------------------
    def new_job(self, body: dict[str, Any]) -> dict[str, Any]:
        repository = str(body.get("repository") or "octo-org/octo-repo")
        if repository.count("/") != 1:
            raise ValueError(f"repository is owner/name, not {repository!r}")
        environment = body.get("environment")
        ref = str(body.get("ref") or "refs/heads/main")
        owner = repository.split("/")[0]
        if environment:
            sub = f"repo:{repository}:environment:{environment}"
        else:
            sub = f"repo:{repository}:ref:{ref}"
        claims = {
            "sub": sub, "ref": ref, "sha": secrets.token_hex(20), "repository": repository,
            "repository_owner": owner, "actor_id": "12", "repository_visibility": "private",
            "repository_id": "74", "repository_owner_id": "65", "run_id": str(secrets.randbelow(10**10)),
            "run_number": "1", "run_attempt": "1", "runner_environment": "github-hosted", "actor": "octocat",
            "workflow": "deploy", "head_ref": "", "base_ref": "", "event_name": "workflow_dispatch",
            "ref_type": "branch", "job_workflow_ref": f"{repository}/.github/workflows/deploy.yml@{ref}",
        }
        if environment:
            claims["environment"] = str(environment)
        claims.update(body.get("claims") or {})
        token = secrets.token_urlsafe(32)
        job = {"claims": claims, "ttl": int(body.get("ttl_seconds", DEFAULT_TTL)), "owner": owner}
        with self._lock:
            self._jobs[token] = job
        for account in body.get("accounts") or []:
            ensure_provider(str(account), list(body.get("audiences") or ["sts.amazonaws.com"]))
        return {"request_url": f"{self.endpoint}/_localaws/github-oidc/token?api-version=2.0",
                "request_token": token, "issuer": ISSUER, "sub": sub,
                "jwks_url": f"{self.endpoint}/_localaws/github-oidc/jwks"}

    def token_request(self, authorization: str, audience: str | None) -> tuple[int, dict[str, Any]]:
        """GET .../token: (HTTP status, body)."""
        scheme, _, bearer = authorization.partition(" ")
        with self._lock:
            job = self._jobs.get(bearer.strip()) if scheme.lower() == "bearer" else None
        if job is None:
            return 401, {"message": "Bad credentials: ACTIONS_ID_TOKEN_REQUEST_TOKEN is not this job's"}
        now = int(time.time())
        claims = {"jti": str(uuid.uuid4()), **job["claims"],
                  "aud": audience or f"https://github.com/{job['owner']}", "iss": ISSUER,
                  "nbf": now - 600, "exp": now + job["ttl"], "iat": now}
        with self._lock:
            self.issued += 1
        return 200, {"count": 1, "value": self.sign(claims)}

    # ---- keys ------------------------------------------------------------------------------
    def sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5t": self.kid, "kid": self.kid}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(sig)}"

    def verify(self, token: str) -> bool:
        """Whether `token` carries a valid signature by this issuer's key."""
        try:
            head, payload, sig = token.split(".")
            header = json.loads(b64decode(head))
            if header.get("alg") != "RS256" or header.get("kid") != self.kid:
                return False
            self._key.public_key().verify(b64decode(sig), f"{head}.{payload}".encode(),
                                          padding.PKCS1v15(), hashes.SHA256())
            return True
        except (ValueError, InvalidSignature):
            return False

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()

        def uint(n: int) -> str:
            return _b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))

        return {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
                          "n": uint(numbers.n), "e": uint(numbers.e)}]}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"issuer": ISSUER, "jobs": len(self._jobs), "issued": self.issued}


def ensure_provider(account: str, audiences: list[str]) -> str:
    """The account's IAM OIDC provider for GitHub's issuer (created if missing); its ARN."""
    from moto.iam.models import iam_backends

    iam = iam_backends[account]["aws"]
    arn = f"arn:aws:iam::{account}:oidc-provider/{ISSUER.split('://', 1)[1]}"
    if arn not in iam.open_id_providers:
        iam.create_open_id_connect_provider(ISSUER, [], audiences, [])
    return arn
