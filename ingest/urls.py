"""Which URLs `ingest` talks to: http(s) with a host; plain http only to this machine.

Owns the one rule that both a provider's `base_url` (checked before a run)
and every pre-signed upload URL (checked before its PUT, in `http.py`) obey:
the scheme is http or https and there is a host; plain http goes only to a
loopback host unless `allow_insecure_http` is set.

Invariants: standard library only (imported before any run, so a bad
`--base-url` costs no aiohttp import); `refusal` says what is wrong, callers
word the error for where the URL came from.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Literal
from urllib.parse import urlsplit

Refusal = Literal["not_http", "insecure"]


def refusal(scheme: str, host: str | None, *, allow_insecure: bool) -> Refusal | None:
    """Why a URL of `scheme` to `host` is refused, or None when it may be used."""
    if scheme.lower() not in ("http", "https") or not host:
        return "not_http"
    if scheme.lower() == "http" and not allow_insecure and not is_loopback(host):
        return "insecure"
    return None


def base_url_problem(url: str, *, allow_insecure: bool) -> str | None:
    """What is wrong with `url` as an API base URL, in words, or None."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError as exc:
        return f"not a valid URL ({exc}): {url!r}"
    why = refusal(parts.scheme, parts.hostname, allow_insecure=allow_insecure)
    if why == "not_http":
        return f"expected an absolute http:// or https:// URL, got {url!r}"
    if why == "insecure":
        return (
            f"plain http is allowed only to this machine (loopback), not to {parts.hostname}; "
            "use https, or set allow_insecure_http to permit it"
        )
    return None


@functools.lru_cache(maxsize=256)
def is_loopback(host: str) -> bool:
    """Whether `host` names this machine (cached: every PUT of a run asks about the same hosts)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
