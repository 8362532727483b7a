"""Autoenhance's wire rules that need no session: error words, the name count, whose URL.

Owns how an Autoenhance answer or URL is read where no source fixes it
(docs/fidelity/autoenhance.md): `is_same_name_429` (the identical-file-name
429 by its words), `NameUses` (the adapter's own count of creates per name in
the hour, which tells that 429 apart whatever its body), `needs_api_key`
(fidelity gap 11: which upload URLs get the key), `NAME_RULE_WAIT_S` (a 429 that
long is the name rule too) and `flatten` (an
``HTTPError``/``ValidationError`` ``detail`` object in words). The adapter,
`ingest.providers.autoenhance`, re-exports the public names.
"""

from __future__ import annotations

import bisect
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

SAME_NAME_LIMIT = 30  # identical file names per hour
SAME_NAME_WINDOW_S = 3600.0
# The request-rate 429 "resolves instantly" (docs.autoenhance.ai/rate-limits: 300/s per IP);
# the only documented limit that lasts is the name rule's hour. A 429 asking for at least
# this long is that rule, whoever used the name (an earlier run, another process).
NAME_RULE_WAIT_S = 60.0
_NAME_RULE_WORDS = re.compile(r"(?is)\b(?:same|duplicated?|identical)\b.*name")
_SIGNATURES = frozenset({"x-amz-signature", "signature", "x-goog-signature", "sig"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def flatten(detail: Any) -> str:
    """``{location: {field: [msgs]}}`` as ``location.field: msg; ...``."""
    if not isinstance(detail, dict):
        return str(detail) if detail else ""
    parts = []
    for location, fields in detail.items():
        if not isinstance(fields, dict):
            parts.append(f"{location}: {fields}")
            continue
        for name, messages in fields.items():
            text = "; ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
            parts.append(f"{location}.{name}: {text}")
    return "; ".join(parts)


def is_same_name_429(payload: Any) -> bool:
    """Whether a 429 body's words say it is the identical-file-name rule, not the request rate."""
    if isinstance(payload, dict):
        text = f"{payload.get('message') or ''} {flatten(payload.get('detail'))}"
    elif isinstance(payload, str):
        text = payload
    else:
        return False
    return _NAME_RULE_WORDS.search(text) is not None


class NameUses:
    """How many images this process created with each name within the last hour.

    The API's rule counts creates per exact ``image_name`` (re-signs included);
    this count is a lower bound of the API's (earlier runs, other clients), so
    reaching the limit proves a 429 is the name rule, whatever its body says.
    A name used once costs one float; only repeated names keep a list.
    """

    def __init__(self, window_s: float = SAME_NAME_WINDOW_S) -> None:
        self._window_s = window_s
        self._uses: dict[str, float | list[float]] = {}

    def add(self, name: str, now: float) -> None:
        seen = self._uses.get(name)
        if seen is None:
            self._uses[name] = now
        elif isinstance(seen, float):
            self._uses[name] = [seen, now]
        else:
            del seen[: bisect.bisect_right(seen, now - self._window_s)]
            seen.append(now)

    def count(self, name: str, now: float) -> int:
        seen = self._uses.get(name)
        if seen is None:
            return 0
        times = [seen] if isinstance(seen, float) else seen
        return len(times) - bisect.bisect_right(times, now - self._window_s)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def needs_api_key(upload_url: str, api_base_url: str) -> bool:
    """Whether a PUT to `upload_url` must carry the API key (fidelity gap 11).

    Only a URL on the API's own origin (scheme, host, port) that carries no
    signature of its own: a pre-signed URL authorises itself, and a key sent
    to any other host would be a leaked key.
    """
    if _origin(upload_url) != _origin(api_base_url):
        return False
    query = urlsplit(upload_url).query
    return not any(name.lower() in _SIGNATURES for name, _ in parse_qsl(query))
