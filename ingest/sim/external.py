"""An independent S3-compatible server as the emulator's storage (``ingest sim --storage-url``).

Owns what changes when the providers' upload URLs point at another server
than the emulator's own ``/s3`` route: signing them for it, and the
emulator's own requests to it where a provider must know whether bytes landed.

How it works:

- `ExternalStore.presign` signs a SigV4 query URL with the same
  `sigv4.presign` as the ``/s3`` route, for ``<endpoint>/<bucket>/<key>``
  (path style), with the store's credentials. An issued key
  ``<sim bucket>/<object key>`` is the object's key in the one external
  bucket, so ``/_sim/assets`` names the objects there.
- `head` (a pre-signed HeadObject:
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html) is
  how ModelHunter's complete, Autoenhance's image status and Scenario's
  multipart complete learn that an object exists, as the real services must;
  `get` (GetObject) reads a Scenario part's bytes back to assemble the file.
- `check`, at start-up: a pre-signed HeadBucket, so a wrong URL, bucket or
  key is one clear line before anything is issued.

What an external store changes: the emulator's storage faults (``put.*``),
its signature and expiry checks and its per-PUT counts belong to ``/s3`` and
no longer apply; the external server's own checks do. moto, the server the
tests use, checks neither the signature nor the expiry of a pre-signed URL
(moto 5.2, ``moto/s3/responses.py``: only that signed metadata headers match
what is sent; with its IAM auth on, ``moto/iam/access_control.py`` reads only
an ``Authorization`` header, and a pre-signed request gets a 500). s3rver 3.7
checks expiry but not SigV4 signatures ("Signature version 4 calculation is
unimplemented", ``lib/middleware/authentication.js``). The strict check of
signatures and expiry stays the emulator's own ``/s3`` route.

Invariants: the secret never appears in a message or repr; errors name the
endpoint and bucket only (no signed query).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import yarl

from ingest.sim import sigv4
from ingest.sim.settings import ExternalStorage, StorageCredentials
from ingest.urls import base_url_problem

_CHECK_LIFETIME = 60  # seconds: the emulator's own requests are made at once


def external_storage(url: str, *, key_env: str, secret_env: str, region: str) -> ExternalStorage:
    """``http(s)://HOST[:PORT]/BUCKET`` and credentials from the environment; ValueError if bad.

    Messages name the flag and the variable, never a value read from it.
    """
    url = url.strip()
    problem = base_url_problem(url, allow_insecure=False)
    parts = yarl.URL(url) if problem is None else None
    bucket = "" if parts is None else parts.path.strip("/")
    if parts is not None and (not bucket or "/" in bucket or parts.query_string):
        problem = f"expected http(s)://HOST[:PORT]/BUCKET (one bucket, path style), got {url!r}"
    if problem is not None or parts is None:
        raise ValueError(f"--storage-url: {problem}")
    values = {}
    for flag, name in (("--storage-key-env", key_env), ("--storage-secret-env", secret_env)):
        values[flag] = os.environ.get(name, "")
        if not values[flag]:
            raise ValueError(f"{flag}: environment variable {name} is empty or not set")
    return ExternalStorage(
        endpoint=str(parts.origin()),
        bucket=bucket,
        credentials=StorageCredentials(
            access_key=values["--storage-key-env"],
            secret=values["--storage-secret-env"],
            region=region,
        ),
    )


class ExternalStoreError(Exception):
    """The external store could not be asked (unreachable, refused, an unexpected answer)."""


@dataclass(frozen=True, slots=True)
class RemoteObject:
    """An object the external store holds, as a HEAD (or a GET, with `body`) saw it."""

    size: int
    content_type: str | None
    sha256: str = ""  # known only when the body was read
    body: bytes | None = None


class ExternalStore:
    """Signing for, and asking, one bucket of an S3-compatible server."""

    def __init__(self, where: ExternalStorage, now: Callable[[], float]) -> None:
        self.where = where
        self._now = now
        url = yarl.URL(where.endpoint)
        # The Host header a client sends (and the URL signs): no port when it is the default.
        port, default = url.explicit_port, {"http": 80, "https": 443}.get(url.scheme)
        self.host = str(url.raw_host) if port in (None, default) else f"{url.raw_host}:{port}"
        self._origin = f"{url.scheme}://{self.host}"
        self._session: aiohttp.ClientSession | None = None

    def presign(
        self, method: str, key: str, *, lifetime: int, content_type: str | None = None
    ) -> str:
        """A pre-signed URL for `method` on object `key` ("" for the bucket itself)."""
        signed = {"host": self.host}
        if content_type is not None:
            signed["content-type"] = content_type
        creds = self.where.credentials
        return sigv4.presign(
            method,
            self._origin,
            f"/{self.where.bucket}/{key}" if key else f"/{self.where.bucket}",
            access_key=creds.access_key,
            secret=creds.secret,
            region=creds.region,
            now=datetime.fromtimestamp(self._now(), tz=UTC),
            expires=lifetime,
            signed_headers=signed,
            extra_query=[("x-id", "PutObject")] if method == "PUT" else [],
        )

    async def check(self) -> None:
        """Raise `ExternalStoreError` unless the bucket answers (HeadBucket)."""
        status, _ = await self._ask("HEAD", "")
        if status == 404:
            raise ExternalStoreError(f"{self._where()}: no such bucket (404)")
        if status in (401, 403):
            raise ExternalStoreError(
                f"{self._where()}: access denied ({status}); check the access key and secret"
            )
        if status != 200:
            raise ExternalStoreError(f"{self._where()}: answered {status} to HeadBucket")

    async def head(self, key: str) -> RemoteObject | None:
        """The object at `key`, or None if the store has none."""
        return await self._object("HEAD", key)

    async def get(self, key: str) -> RemoteObject | None:
        """The object at `key` with its body and SHA-256, or None if the store has none."""
        return await self._object("GET", key)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- requests ------------------------------------------------------------

    async def _object(self, method: str, key: str) -> RemoteObject | None:
        status, response = await self._ask(method, key)
        if status == 404:
            return None
        if status != 200 or response is None:
            raise ExternalStoreError(f"{self._where()}: answered {status} to {method} of {key}")
        size, content_type, body = response
        if body is None:
            return RemoteObject(size=size, content_type=content_type)
        digest = hashlib.sha256(body).hexdigest()
        return RemoteObject(len(body), content_type, sha256=digest, body=body)

    async def _ask(
        self, method: str, key: str
    ) -> tuple[int, tuple[int, str | None, bytes | None] | None]:
        """(status, (size, Content-Type, body or None)) of one pre-signed request."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=60, sock_connect=10)
            )
        url = yarl.URL(self.presign(method, key, lifetime=_CHECK_LIFETIME), encoded=True)
        try:
            async with self._session.request(method, url, allow_redirects=False) as resp:
                body = await resp.read() if method == "GET" and resp.status == 200 else None
                if resp.status != 200:
                    return resp.status, None
                length = resp.headers.get("Content-Length")
                size = len(body) if body is not None else int(length or 0)
                return 200, (size, resp.headers.get("Content-Type"), body)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            why = type(exc).__name__ if isinstance(exc, TimeoutError) else _why(exc)
            raise ExternalStoreError(f"cannot reach {self._where()}: {why}") from None

    def _where(self) -> str:
        return f"external storage {self._origin}/{self.where.bucket}"


def _why(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        return (cause.strerror or str(cause) or type(cause).__name__).lower()
    return type(exc).__name__
