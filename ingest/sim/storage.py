"""The S3-like storage route every provider's upload URLs point at.

Owns ``PUT /s3/{bucket}/{key}``: admission checks in S3's order, S3's XML
error bodies, injected storage faults, and streaming the body into a SHA-256.

Admission, at request start and before any body byte is read (also from the
``Expect: 100-continue`` handler, so a refused client never sends its body):

1. an ``Authorization`` header together with a pre-signed query → 400 InvalidArgument
   (alone → 400 InvalidArgument "Unsupported Authorization Type"; neither → 403);
2. malformed ``X-Amz-*`` parameters → 400 AuthorizationQueryParametersError;
   unknown access key → 403 InvalidAccessKeyId;
3. signature over the raw request target (`ingest.sim.sigv4`) → 403 SignatureDoesNotMatch;
4. expiry: emulator clock > X-Amz-Date + X-Amz-Expires → 403 AccessDenied "Request has expired"
   (R2's 403 ExpiredRequest for a bucket in `SimContext.r2_buckets`);
5. a key that was never issued → 403 AccessDenied;
6. ``Transfer-Encoding: chunked`` → 501 NotImplemented;
7. no ``Content-Length`` → 411 MissingContentLength.

Then the fault plan may delay, stall or reset the request; the body is read
in large chunks and hashed; an injected 429/500/503 is answered only after
the whole body arrived. An object is recorded only when the full
Content-Length arrived and the answer is 200. Redirects are never issued.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

import anyio
from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError

from ingest.sim import sigv4
from ingest.sim.context import STORAGE_PREFIX, SimContext, abort_connection
from ingest.sim.faults import retry_after_header

ROUTE = STORAGE_PREFIX + "/{bucket}/{key:.+}"
_CHUNK = 256 * 1024
# Per request: the admission outcome (an error response, or None to go on), once decided.
_ADMISSION: web.RequestKey[web.Response | None] = web.RequestKey("ingest.sim.admission")
_request_ids = itertools.count(1)

# Source: S3's error-code list (docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html):
# 500 InternalError and 503 SlowDown are S3's; 429 TooManyRequests is invented (S3 throttles
# with 503 SlowDown; some S3-compatible stores answer 429), so clients meet both.
_INJECTED = {
    429: ("TooManyRequests", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("SlowDown", "Please reduce your request rate."),
}


def s3_error(status: int, code: str, message: str, **extra: str) -> web.Response:
    """An S3-shaped XML error: Code, Message, `extra` fields, RequestId, HostId."""
    # Source: S3 REST error responses (ErrorResponses.html, "REST error responses"): the
    # <Error> body, application/xml, and the x-amz-request-id / x-amz-id-2 headers.
    fields = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in extra.items())
    request_id = f"{next(_request_ids):016X}"
    host_id = base64.b64encode(os.urandom(48)).decode()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>{fields}"
        f"<RequestId>{request_id}</RequestId><HostId>{host_id}</HostId></Error>"
    )
    return web.Response(
        status=status,
        body=body.encode(),
        headers={
            "Content-Type": "application/xml",
            "x-amz-request-id": request_id,
            "x-amz-id-2": host_id,
        },
    )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def add_routes(ctx: SimContext, *, discard_bodies: bool = False) -> None:
    """Register the storage route on the emulator's app.

    With `discard_bodies` (the benchmark emulator's fast path) a body is
    counted and dropped instead of hashed and kept: every admission check,
    fault and counter stays the same, and objects are recorded with their
    size and an empty ``sha256``.
    """

    def admit(request: web.Request) -> web.Response | None:
        """The admission outcome (an error response or None), decided once per request."""
        if _ADMISSION in request:
            return request[_ADMISSION]
        state = ctx.state
        names = {name.lower() for name in request.headers}
        state.observe_storage_headers(names)
        response = _check(ctx, request, names)
        if response is not None:
            response.headers["Date"] = ctx.http_date()
            state.count_put(response.status)
        request[_ADMISSION] = response
        return response

    async def expect(request: web.Request) -> web.StreamResponse | None:
        # RFC 9110 §10.1.1: an expectation other than 100-continue may be answered 417.
        if request.headers.get("Expect", "").lower() != "100-continue":
            return s3_error(417, "ExpectationFailed", "Cannot match the Expect header.")
        refused = admit(request)
        if refused is not None:
            return refused
        if request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        return None

    async def put(request: web.Request) -> web.StreamResponse:
        refused = admit(request)
        if refused is not None:
            return refused
        state = ctx.state
        injector = ctx.injector
        decision = injector.decide_put()
        if decision.delay:
            await anyio.sleep(decision.delay)
        if decision.stall:
            state.count("storage_stalls")
            await ctx.hold(request)
            return web.Response()
        if decision.reset:
            # Take part of the body so the client is mid-send, then cut the connection.
            await request.content.readany()
            state.count("resets")
            abort_connection(request)
            return web.Response()

        key = f"{request.match_info['bucket']}/{request.match_info['key']}"
        expected = request.content_length or 0
        keep_body = not discard_bodies and state.assets_by_key[key].keep_body
        stored = not discard_bodies and ctx.settings.store_dir is not None
        keep: list[bytes] | None = [] if stored or keep_body else None
        digest = None if discard_bodies else hashlib.sha256()
        size = 0
        content = request.content
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                if digest is not None:
                    digest.update(chunk)
                size += len(chunk)
                if keep is not None:
                    keep.append(chunk)
        except (OSError, ClientPayloadError, HttpProcessingError):
            # Connection lost or the body ended before Content-Length.
            size = -1
        if size != expected:
            # The body ended early: the client is gone, nothing is recorded.
            state.count("incomplete_bodies")
            abort_connection(request)
            return web.Response()

        if decision.status is not None:
            code, message = _INJECTED[decision.status]
            response = s3_error(decision.status, code, message)
            retry_after = retry_after_header(injector.plan.put_retry_after)
            if retry_after is not None and decision.status in (429, 503):
                response.headers["Retry-After"] = retry_after
        else:
            sha256 = "" if digest is None else digest.hexdigest()
            if keep is not None and stored and ctx.settings.store_dir is not None:
                await _write(ctx.settings.store_dir / key, keep)
            state.store(
                key,
                size=size,
                sha256=sha256,
                content_type=request.headers.get("Content-Type"),
                body=b"".join(keep) if keep is not None and keep_body else None,
            )
            # Invented: S3's ETag of a single PUT is the body's MD5; a SHA-256 prefix stands in.
            response = web.Response(headers={"ETag": f'"{sha256[:32] or "0" * 32}"'})
        response.headers["Date"] = ctx.http_date()
        state.count_put(response.status)
        return response

    ctx.app.router.add_route("PUT", ROUTE, put, expect_handler=expect)


def _check(ctx: SimContext, request: web.Request, names: set[str]) -> web.Response | None:
    """S3's admission checks, in S3's order; None when the request may send its body."""
    raw_path, pairs = sigv4.split_target(request.raw_path)
    presigned = sigv4.is_presigned(pairs)
    # Source: ErrorResponses.html (InvalidArgument); the wording follows S3's answer to two
    # auth mechanisms at once (not checked against a stored copy of such an answer).
    if "authorization" in names:
        if presigned:
            return s3_error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                "Signature query string parameter or the Authorization header should be specified",
                ArgumentName="Authorization",
            )
        return s3_error(
            400,
            "InvalidArgument",
            "Unsupported Authorization Type",
            ArgumentName="Authorization",
        )
    if not presigned:  # an anonymous PUT to a private bucket (S3: 403 AccessDenied)
        return s3_error(403, "AccessDenied", "Access Denied")
    try:
        auth = sigv4.parse_query_auth(pairs)
    except sigv4.PresignFormatError as exc:
        return s3_error(400, "AuthorizationQueryParametersError", str(exc))
    creds = ctx.settings.credentials
    # Source: ErrorResponses.html (InvalidAccessKeyId; AuthorizationQueryParametersError with
    # S3's wording for a wrong region in X-Amz-Credential).
    if auth.access_key != creds.access_key:
        return s3_error(
            403,
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
            AWSAccessKeyId=auth.access_key,
        )
    if auth.region != creds.region or auth.service != "s3":
        return s3_error(
            400,
            "AuthorizationQueryParametersError",
            f"Error parsing the X-Amz-Credential parameter; the region '{auth.region}' "
            f"is wrong; expecting '{creds.region}'",
        )
    # Source: SigV4 query-string auth (docs.aws.amazon.com/AmazonS3/latest/API/
    # sigv4-query-string-auth.html) over the raw target (`ingest.sim.sigv4`); the 403 carries
    # S3's StringToSign and CanonicalRequest fields, as S3 does.
    headers = {name: request.headers.get(name, "") for name in auth.signed_headers}
    result = sigv4.verify(request.method, raw_path, pairs, headers, auth, secret=creds.secret)
    if not result.ok:
        ctx.state.count("signature_mismatch")
        return s3_error(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
            AWSAccessKeyId=auth.access_key,
            StringToSign=result.string_to_sign,
            SignatureProvided=result.provided,
            CanonicalRequest=result.canonical_request,
        )
    # Source: S3's "Request has expired" body with X-Amz-Expires, Expires and ServerTime
    # (aws-sdk-js#2306, aws-sdk-php#1333); R2's 403 ExpiredRequest (cloudflare-docs#32436).
    now = ctx.now()
    expires_at = auth.amz_date.timestamp() + auth.expires
    if now > expires_at:
        ctx.state.count("expired")
        if request.match_info["bucket"] in ctx.r2_buckets:
            return s3_error(
                403, "ExpiredRequest", "Presigned URL or request signature has expired."
            )
        return s3_error(
            403,
            "AccessDenied",
            "Request has expired",
            **{
                "X-Amz-Expires": str(auth.expires),
                "Expires": _iso(expires_at),
                "ServerTime": _iso(now),
            },
        )
    key = f"{request.match_info['bucket']}/{request.match_info['key']}"
    # Invented: S3 would take a PUT to any key the signature covers; the emulator refuses a
    # key no provider route issued, so a client cannot land bytes nobody asked for.
    if key not in ctx.state.assets_by_key:
        return s3_error(403, "AccessDenied", "Access Denied")
    # Source: S3's 501 NotImplemented naming Transfer-Encoding (knox#43, e2b#1243) and its
    # 411 MissingContentLength (arrow-rs-object-store#155, versitygw#1248).
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        ctx.state.count("chunked_rejected")
        return s3_error(
            501,
            "NotImplemented",
            "A header you provided implies functionality that is not implemented",
            Header="Transfer-Encoding",
        )
    if request.content_length is None:
        ctx.state.count("length_rejected")
        return s3_error(
            411, "MissingContentLength", "You must provide the Content-Length HTTP header."
        )
    return None


async def _write(path: Path, chunks: list[bytes]) -> None:
    """Write a body atomically under `store_dir`, off the event loop."""

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        with partial.open("wb") as f:
            f.writelines(chunks)
        partial.replace(path)

    await anyio.to_thread.run_sync(write)
