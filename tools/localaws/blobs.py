"""Extensions 8 and 9: what stands between a client and each registry, as ECR's front does.

Each registry's `proxyEndpoint` is a small front proxy; distribution (docker-registry) listens on
a private port behind it. The front streams every request through unchanged, except:

- Extension 8, layer downloads: ECR answers `GET /v2/<name>/blobs/<digest>` with
  `307 Temporary Redirect` to a pre-signed S3 URL on another host. Here the front asks
  distribution (HEAD, with the client's credentials) whether the blob is in that repository;
  if it is, it answers 307 to a pre-signed URL on the *layer bucket*, a second loopback address
  and port served by this module. Otherwise the client gets distribution's own answer (401,
  404 BLOB_UNKNOWN). `HEAD` on a blob is answered by the registry itself (200 with its length
  and digest), never redirected.
- Extension 9, cross-repository mounts: `POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repo>`
  mounts only when the registry's `BLOB_MOUNTING` account setting is `ENABLED` (and both
  repositories use the same encryption); otherwise `mount` and `from` are dropped and
  distribution opens a normal upload (202 + Location), as the OCI distribution spec says a
  registry that does not mount must.

The layer bucket behaves as S3 does for a pre-signed GET URL: the signature (HMAC over method,
path, query and host) and the expiry (`X-Amz-Date` + `X-Amz-Expires`) are checked, a request that
*also* carries an `Authorization` header is refused (400 `InvalidArgument`, "Only one auth
mechanism allowed"), an expired one gets 403 `AccessDenied` "Request has expired", a wrong
signature (a HEAD on a GET URL, too) 403 `SignatureDoesNotMatch`. Bytes are served from the
registry's own storage with sendfile (`Range` works), never read into memory.

Everything runs in one asyncio thread; bodies stream both ways in chunks.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qsl, quote, urlencode

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from xml.sax.saxutils import escape
from yarl import URL

from .world import Addresses, Settings, free_port

if TYPE_CHECKING:
    from .registry import Registry

CHUNK = 1 << 20
# Headers that describe one hop, not the message; never forwarded either way.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "trailers", "transfer-encoding", "upgrade",
              "expect"}  # 100-continue is answered here, to the client
# Dropped from the existence check before a redirect: the client sends them again to the bucket.
_CONDITIONAL = {"range", "if-range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since"}
_BLOB = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[a-f0-9]{64})$")
_UPLOADS = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/?$")
_KEY = re.compile(r"^/prod-(?P<region>[a-z0-9-]+)-starport-layer-bucket/(?P<account>[0-9]{12})/sha256/(?P<hex>[a-f0-9]{64})$")
# What S3 names the signing parameters of a pre-signed (SigV4 query) URL.
_PRESIGN = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
            "X-Amz-Signature")
_ACCESS_KEY = "ASIALOCALAWSLAYERS00"  # an STS-style key id, as ECR's layer URLs carry

MountPolicy = Callable[[str, str, str, str], bool]


class Blobs:
    def __init__(self, settings: Settings, addresses: Addresses) -> None:
        self.settings = settings
        self.addresses = addresses
        self.loop = asyncio.new_event_loop()
        self.session: aiohttp.ClientSession | None = None
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._started = False
        self._registries: dict[tuple[str, str], Registry] = {}
        self.bucket_url = ""
        # Set by patches.install: (account, region, repository, from repository) → mount or not.
        self.mount_allowed: MountPolicy = lambda _a, _r, _repo, _from: False
        self.stats = {"redirects": 0, "mounts_refused": 0, "bucket_denied": 0, "bucket_served": 0,
                      "bucket_bytes": 0, "bucket_cut": 0}

    # ---- lifecycle --------------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(self.loop)
                ready.set()
                self.loop.run_forever()

            threading.Thread(target=run, name="localaws-blobs", daemon=True).start()
            if not ready.wait(10):
                raise RuntimeError("the registry front thread did not start")
            self._call(self._init())
            self._started = True

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _init(self) -> None:
        # No pool limit, no decompression: bytes pass through as distribution sent them.
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                             auto_decompress=False)
        ip = self.addresses.allocate("s3", 0)
        port = free_port(ip)
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._bucket)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, ip, port).start()
        self.bucket_url = f"http://{ip}:{port}"

    def front(self, reg: Registry) -> None:
        """Serves `reg.url` (its public port), forwarding to distribution on `reg.internal`."""
        self._start()
        self._registries[(reg.account, reg.region)] = reg
        self._call(self._serve_front(reg))

    async def _serve_front(self, reg: Registry) -> None:
        app = web.Application(client_max_size=0)

        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._front(reg, request)

        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", reg.port).start()

    # ---- the registry front -------------------------------------------------------------------
    async def _front(self, reg: Registry, request: web.Request) -> web.StreamResponse:
        raw_path, _, raw_query = request.raw_path.partition("?")
        blob = _BLOB.match(raw_path)
        if request.method == "GET" and blob:
            # Only a blob the client may read in that repository is redirected: distribution
            # answers the same question for HEAD (credentials, then the repository's blob link).
            headers = CIMultiDict((k, v) for k, v in self._forward_headers(request).items()
                                  if k.lower() not in _CONDITIONAL)
            async with self.session.head(self._upstream(reg, request.raw_path), headers=headers,
                                         allow_redirects=False) as head:
                if head.status == 200:
                    self.stats["redirects"] += 1
                    location = self.presign(reg, blob["digest"])
                    return web.Response(status=307, headers={
                        "Location": location,
                        "Docker-Distribution-Api-Version": "registry/2.0",
                        "Content-Type": "text/html; charset=utf-8",
                    }, text=f'<a href="{escape(location)}">Temporary Redirect</a>.\n')
            # Anything else (401, 404 BLOB_UNKNOWN, ...): distribution's own GET answer.
        uploads = _UPLOADS.match(raw_path)
        if request.method == "POST" and uploads and raw_query:
            params = parse_qsl(raw_query, keep_blank_values=True)
            mount = dict(params).get("mount")
            source = dict(params).get("from")
            if mount and not (source and self.mount_allowed(reg.account, reg.region,
                                                             uploads["name"], source)):
                # Not mounted: a plain upload starts, as a registry that does not mount answers.
                self.stats["mounts_refused"] += 1
                rest = [(k, v) for k, v in params if k not in ("mount", "from")]
                raw_query = urlencode(rest, safe=":")
                return await self._forward(reg, request, raw_path + ("?" + raw_query if raw_query else ""))
        return await self._forward(reg, request, request.raw_path)

    @staticmethod
    def _to_internal(reg: Registry, request: web.Request, location: str) -> str:
        """`location` (an upload session on the front) as the same URL on distribution itself."""
        front = f"http://{request.host}"
        internal = f"http://127.0.0.1:{reg.internal_port}"
        if location.startswith(front):
            return internal + location[len(front):]
        if location.startswith("/"):
            return internal + location
        return location

    @staticmethod
    def _upstream(reg: Registry, raw_path_qs: str) -> URL:
        return URL(f"http://127.0.0.1:{reg.internal_port}{raw_path_qs}", encoded=True)

    @staticmethod
    def _forward_headers(request: web.Request) -> CIMultiDict:
        # Host is kept: distribution builds its Location URLs from it, so they name the front.
        # Repeated headers (several `Accept` lines, as docker sends them) stay repeated.
        return CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP)

    async def _forward(self, reg: Registry, request: web.Request, raw_path_qs: str) -> web.StreamResponse:
        headers = self._forward_headers(request)
        data = None
        if request.body_exists:
            data = request.content.iter_chunked(CHUNK)
        else:
            headers.popall("Content-Length", None)
        try:
            upstream_cm = self.session.request(
                request.method, self._upstream(reg, raw_path_qs), headers=headers, data=data,
                allow_redirects=False, skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300))
            async with upstream_cm as upstream:
                out = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                # A new upload's session goes straight to distribution: the layer bytes (PATCH,
                # PUT) need nothing of the front, and a Python hop would halve the stand-in's
                # upload throughput. Clients follow an absolute Location, as the spec allows.
                direct = request.method == "POST" and upstream.status == 202 and \
                    _UPLOADS.match(raw_path_qs.partition("?")[0]) is not None
                for k, v in upstream.headers.items():
                    if k.lower() in HOP_BY_HOP or k.lower() == "content-length":
                        continue
                    if direct and k.lower() == "location":
                        v = self._to_internal(reg, request, v)
                    out.headers.add(k, v)
                if upstream.content_length is not None:
                    out.content_length = upstream.content_length
                await out.prepare(request)
                if request.method != "HEAD":
                    async for chunk in upstream.content.iter_chunked(CHUNK):
                        await out.write(chunk)
                await out.write_eof()
                return out
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
            return web.Response(status=502, text=f"registry {reg.account}/{reg.region} did not answer: {e}")

    # ---- pre-signed layer URLs --------------------------------------------------------------
    def _signature(self, method: str, path: str, query: list[tuple[str, str]], host: str) -> str:
        canonical = "\n".join([method, path, urlencode(sorted(query), quote_via=quote), f"host:{host}"])
        return hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()

    def presign(self, reg: Registry, digest: str, now: float | None = None) -> str:
        """A pre-signed GET URL for a blob of `reg`, valid for `settings.blob_url_expiry` seconds."""
        now = time.time() if now is None else now
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        path = f"/prod-{reg.region}-starport-layer-bucket/{reg.account}/{digest.replace(':', '/')}"
        query = [
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Credential", f"{_ACCESS_KEY}/{stamp[:8]}/{reg.region}/s3/aws4_request"),
            ("X-Amz-Date", stamp),
            ("X-Amz-Expires", str(int(self.settings.blob_url_expiry))),
            ("X-Amz-SignedHeaders", "host"),
        ]
        host = self.bucket_url.split("://", 1)[1]
        query.append(("X-Amz-Signature", self._signature("GET", path, query, host)))
        return f"{self.bucket_url}{path}?{urlencode(query, quote_via=quote)}"

    # ---- the layer bucket (S3's side of a pre-signed URL) ------------------------------------
    async def _bucket(self, request: web.Request) -> web.StreamResponse:
        query = list(parse_qsl(request.query_string, keep_blank_values=True))
        given = dict(query)
        presigned = any(k in given for k in _PRESIGN)
        auth = request.headers.get("Authorization")
        if auth is not None:
            if presigned:
                return self._s3_error(request, 400, "InvalidArgument",
                                      "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                                      "Signature query string parameter or the Authorization header should be "
                                      "specified", ArgumentName="Authorization", ArgumentValue=auth)
            return self._s3_error(request, 400, "InvalidArgument", "Unsupported Authorization Type",
                                  ArgumentName="Authorization", ArgumentValue=auth)
        if not all(k in given for k in _PRESIGN):
            return self._s3_error(request, 403, "AccessDenied", "Access Denied")
        try:
            signed_at = calendar.timegm(time.strptime(given["X-Amz-Date"], "%Y%m%dT%H%M%SZ"))
            expires = int(given["X-Amz-Expires"])
        except ValueError:
            return self._s3_error(request, 400, "AuthorizationQueryParametersError",
                                  "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
        now = time.time()
        if now > signed_at + expires:
            return self._s3_error(request, 403, "AccessDenied", "Request has expired", **{
                "X-Amz-Expires": str(expires),
                "Expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(signed_at + expires)),
                "ServerTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            })
        unsigned = [(k, v) for k, v in query if k != "X-Amz-Signature"]
        expected = self._signature(request.method, request.path, unsigned, request.host)
        if not hmac.compare_digest(expected, given["X-Amz-Signature"]):
            return self._s3_error(request, 403, "SignatureDoesNotMatch",
                                  "The request signature we calculated does not match the signature you "
                                  "provided. Check your key and signing method.")
        key = _KEY.match(request.path)
        reg = self._registries.get((key["account"], key["region"])) if key else None
        path = reg.blob_path(f"sha256:{key['hex']}") if (reg and key) else None
        if path is None or not os.path.isfile(path):
            return self._s3_error(request, 404, "NoSuchKey", "The specified key does not exist.",
                                  Key=request.path.split("/", 2)[-1])
        self.stats["bucket_served"] += 1
        headers = {
            "Content-Type": "application/octet-stream",
            "x-amz-request-id": uuid.uuid4().hex[:16].upper(),
            "Server": "AmazonS3",
        }
        if self.settings.bucket_cut_after:
            return await self._serve_then_cut(request, path, headers)
        return web.FileResponse(path, chunk_size=CHUNK, headers=headers)

    async def _serve_then_cut(self, request: web.Request, path: str,
                              headers: dict[str, str]) -> web.StreamResponse:
        """The fault `bucket_cut_after`: the blob's bytes until the total served reaches the
        limit, then the connection is closed mid-body (the client sees a short read)."""
        size = os.path.getsize(path)
        response = web.StreamResponse(headers={**headers, "Content-Length": str(size)})
        await response.prepare(request)
        with open(path, "rb") as f:
            while chunk := f.read(64 * 1024):
                left = self.settings.bucket_cut_after - self.stats["bucket_bytes"]
                if left <= len(chunk):
                    if left > 0:
                        await response.write(chunk[:left])
                        self.stats["bucket_bytes"] += left
                    self.stats["bucket_cut"] += 1
                    if request.transport is not None:
                        request.transport.close()
                    return response
                await response.write(chunk)
                self.stats["bucket_bytes"] += len(chunk)
        await response.write_eof()
        return response

    def _s3_error(self, request: web.Request, status: int, code: str, message: str,
                  **extra: str) -> web.Response:
        self.stats["bucket_denied"] += 1
        request_id = uuid.uuid4().hex[:16].upper()
        headers = {"Content-Type": "application/xml", "x-amz-request-id": request_id,
                   "x-amz-id-2": secrets.token_urlsafe(48), "Server": "AmazonS3"}
        if request.method == "HEAD":  # S3 answers a failed HEAD with the status only
            return web.Response(status=status, headers=headers)
        fields = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in extra.items())
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{escape(message)}'
                f"</Message>{fields}<RequestId>{request_id}</RequestId><HostId>{headers['x-amz-id-2']}</HostId>"
                "</Error>")
        return web.Response(status=status, headers=headers, body=body.encode())

    def snapshot(self) -> dict[str, Any]:
        return {"bucket": self.bucket_url, **self.stats}
