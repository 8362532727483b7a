"""AWS Signature Version 4 for pre-signed query URLs: signing and strict verification.

Owns the canonical request, the string to sign and the signing-key chain of
SigV4 query authentication (`X-Amz-Algorithm=AWS4-HMAC-SHA256`, payload hash
`UNSIGNED-PAYLOAD`), as S3 uses them for pre-signed PUT URLs.

`presign` percent-encodes per AWS rules (only ``A-Z a-z 0-9 - _ . ~`` kept,
everything else ``%XX`` in upper case; ``/`` kept in the path), so a client
that sends the URL byte for byte round-trips.

`verify` is deliberately stricter than S3: it works over the raw request
target exactly as received. The canonical URI is the raw path and the
canonical query is the raw ``name=value`` pairs (still percent-encoded as they
arrived, never decoded and re-encoded) minus ``X-Amz-Signature``, sorted. A
client that rewrites ``%2F`` to ``/`` (aiohttp without
``yarl.URL(url, encoded=True)``) therefore fails with a signature mismatch,
which is what the emulator's tests want to catch.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_EXPIRES = 604800  # one week, S3's ceiling for X-Amz-Expires
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_UNRESERVED = "-_.~"  # plus ASCII letters and digits, which `quote` always keeps
_ALL_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
_AMZ_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")
_REQUIRED = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)


class PresignFormatError(ValueError):
    """The query claims SigV4 query auth but a parameter is missing or malformed.

    S3 answers these with 400 ``AuthorizationQueryParametersError``.
    """


@dataclass(frozen=True, slots=True)
class QueryAuth:
    """The SigV4 parameters of a pre-signed request, decoded."""

    access_key: str
    date_stamp: str  # yyyymmdd from the credential scope
    region: str
    service: str
    amz_date: datetime  # aware, UTC
    amz_date_text: str  # X-Amz-Date as sent, e.g. 20130524T000000Z
    expires: int  # seconds
    signed_headers: tuple[str, ...]  # lower case, as listed
    signature: str

    @property
    def expires_at(self) -> datetime:
        """The instant after which the URL is refused."""
        return datetime.fromtimestamp(self.amz_date.timestamp() + self.expires, tz=UTC)


@dataclass(frozen=True, slots=True)
class Verification:
    """Outcome of checking a signature: what was expected and what was provided."""

    ok: bool
    canonical_request: str
    string_to_sign: str
    expected: str
    provided: str


def uri_encode(text: str, *, keep_slash: bool = False) -> str:
    """Percent-encode `text` (UTF-8) the AWS way: unreserved kept, the rest ``%XX``."""
    if _ALL_UNRESERVED.fullmatch(text):  # the common case, and much cheaper than `quote`
        return text
    return quote(text, safe=_UNRESERVED + ("/" if keep_slash else ""))


def _decode(text: str) -> str:
    return unquote(text) if "%" in text else text


def amz_date(now: datetime) -> str:
    """`now` as SigV4's basic ISO-8601 form, e.g. ``20130524T000000Z``."""
    return now.astimezone(UTC).strftime(_AMZ_DATE_FORMAT)


@lru_cache(maxsize=64)
def signing_key(secret: str, date_stamp: str, region: str, service: str) -> bytes:
    """The derived key for one day, region and service (cached: it changes daily)."""
    k_date = _hmac(("AWS4" + secret).encode(), date_stamp)
    k_region = _hmac(k_date, region)
    k_service = _hmac(k_region, service)
    return _hmac(k_service, "aws4_request")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _canonical_headers(signed: Sequence[str], headers: Mapping[str, str]) -> str:
    # Values trimmed and inner runs of spaces collapsed, as AWS specifies.
    return "".join(f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed)


def _string_to_sign(
    canonical_request: str, stamp: str, date_stamp: str, region: str, service: str
) -> str:
    scope = f"{date_stamp}/{region}/{service}/aws4_request"
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    return f"{ALGORITHM}\n{stamp}\n{scope}\n{digest}"


def presign(
    method: str,
    scheme_host: str,
    path: str,
    *,
    access_key: str,
    secret: str,
    region: str,
    service: str = "s3",
    now: datetime,
    expires: int,
    signed_headers: Mapping[str, str],
    extra_query: Sequence[tuple[str, str]] = (),
) -> str:
    """Return a pre-signed URL for `method` on `scheme_host` + `path`.

    `path` is the decoded object path (``/bucket/key.png``); it is encoded here.
    `signed_headers` maps lower-case header names to the exact values the
    client must send, and must include ``host``. The query is emitted in the
    order S3's SDKs use, with `extra_query` (e.g. ``[("x-id", "PutObject")]``)
    before ``X-Amz-Signature``, which is always last.
    """
    if "host" not in signed_headers:
        raise ValueError("signed_headers must include 'host'")
    if not 1 <= expires <= MAX_EXPIRES:
        raise ValueError(f"expires must be 1..{MAX_EXPIRES} seconds, got {expires}")
    stamp = amz_date(now)
    date_stamp = stamp[:8]
    names = sorted(signed_headers)
    pairs = [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{access_key}/{date_stamp}/{region}/{service}/aws4_request"),
        ("X-Amz-Date", stamp),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", ";".join(names)),
        *extra_query,
    ]
    encoded = [(uri_encode(name), uri_encode(value)) for name, value in pairs]
    canonical_uri = uri_encode(path, keep_slash=True)
    canonical_request = "\n".join(
        (
            method.upper(),
            canonical_uri,
            "&".join(f"{n}={v}" for n, v in sorted(encoded)),
            _canonical_headers(names, signed_headers),
            ";".join(names),
            UNSIGNED_PAYLOAD,
        )
    )
    to_sign = _string_to_sign(canonical_request, stamp, date_stamp, region, service)
    key = signing_key(secret, date_stamp, region, service)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    query = "&".join(f"{n}={v}" for n, v in encoded)
    return f"{scheme_host}{canonical_uri}?{query}&X-Amz-Signature={signature}"


def split_target(raw_target: str) -> tuple[str, list[tuple[str, str]]]:
    """Split a raw request target into its raw path and raw ``(name, value)`` pairs."""
    path, _, query = raw_target.partition("?")
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((name, value))
    return path, pairs


def is_presigned(pairs: Sequence[tuple[str, str]]) -> bool:
    """Whether the query claims SigV4 query auth (S3 keys this on X-Amz-Algorithm)."""
    return any(_decode(name) == "X-Amz-Algorithm" for name, _ in pairs)


def parse_query_auth(pairs: Sequence[tuple[str, str]]) -> QueryAuth:
    """Decode the ``X-Amz-*`` parameters, or raise `PresignFormatError`."""
    found: dict[str, str] = {}
    for name, value in pairs:
        decoded = _decode(name)
        if decoded in _REQUIRED:
            found[decoded] = _decode(value)
    missing = [name for name in _REQUIRED if name not in found]
    if missing:
        raise PresignFormatError(
            "Query-string authentication requires the " + ", ".join(missing) + " parameter(s)"
        )
    if found["X-Amz-Algorithm"] != ALGORITHM:
        raise PresignFormatError('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    parts = found["X-Amz-Credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not all(parts):
        raise PresignFormatError("Error parsing the X-Amz-Credential parameter")
    stamp_text = found["X-Amz-Date"]
    match = _AMZ_DATE.fullmatch(stamp_text)
    try:
        if match is None:
            raise ValueError(stamp_text)
        year, month, day, hour, minute, second = (int(group) for group in match.groups())
        stamp = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise PresignFormatError("X-Amz-Date must be in the ISO8601 Long Format") from None
    if stamp_text[:8] != parts[1]:
        raise PresignFormatError("Error parsing the X-Amz-Credential parameter; the date is wrong")
    try:
        expires = int(found["X-Amz-Expires"])
    except ValueError:
        raise PresignFormatError("X-Amz-Expires should be a number") from None
    if expires < 0:
        raise PresignFormatError("X-Amz-Expires must be non-negative")
    if expires > MAX_EXPIRES:
        raise PresignFormatError(
            f"X-Amz-Expires must be less than a week (in seconds) that is {MAX_EXPIRES}"
        )
    signed = tuple(found["X-Amz-SignedHeaders"].split(";"))
    if "host" not in signed:
        raise PresignFormatError("X-Amz-SignedHeaders must include host")
    return QueryAuth(
        access_key=parts[0],
        date_stamp=parts[1],
        region=parts[2],
        service=parts[3],
        amz_date=stamp,
        amz_date_text=stamp_text,
        expires=expires,
        signed_headers=signed,
        signature=found["X-Amz-Signature"],
    )


def verify(
    method: str,
    raw_path: str,
    pairs: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    auth: QueryAuth,
    *,
    secret: str,
) -> Verification:
    """Check `auth.signature` against the raw request target and received headers.

    `raw_path` and `pairs` come from `split_target` of the target as received;
    `headers` maps lower-case names to received values (at least those in
    ``auth.signed_headers``; a signed header that is absent counts as empty).
    """
    canonical_query = "&".join(
        f"{name}={value}" for name, value in sorted(pairs) if unquote(name) != "X-Amz-Signature"
    )
    canonical_request = "\n".join(
        (
            method.upper(),
            raw_path,
            canonical_query,
            _canonical_headers(auth.signed_headers, headers),
            ";".join(auth.signed_headers),
            UNSIGNED_PAYLOAD,
        )
    )
    to_sign = _string_to_sign(
        canonical_request, auth.amz_date_text, auth.date_stamp, auth.region, auth.service
    )
    key = signing_key(secret, auth.date_stamp, auth.region, auth.service)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return Verification(
        ok=hmac.compare_digest(expected, auth.signature),
        canonical_request=canonical_request,
        string_to_sign=to_sign,
        expected=expected,
        provided=auth.signature,
    )


def verify_target(
    method: str, raw_target: str, headers: Mapping[str, str], *, secret: str
) -> Verification:
    """`verify` a raw request target (``request.raw_path``) in one call.

    Raises `PresignFormatError` when the query is not a well-formed SigV4 query.
    """
    raw_path, pairs = split_target(raw_target)
    auth = parse_query_auth(pairs)
    return verify(method, raw_path, pairs, headers, auth, secret=secret)
