"""Redaction of secrets in anything that may be printed, logged or journaled.

Owns one rule: a signed URL's query values that authorise a request
(`X-Amz-Signature`, `X-Amz-Credential`, `X-Amz-Security-Token`, `Signature`,
`sig`, `token`) and any registered secret value never leave the process.
"""

from __future__ import annotations

import re

_SIGNED_PARAM = re.compile(
    r"(?i)((?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|sig|token|"
    r"GoogleAccessId|Key-Pair-Id|Policy)=)[^&\s\"'<>]+"
)

_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Remember a secret (an API key) so that `redact` masks it everywhere."""
    if len(value) >= 4:
        _secrets.add(value)


def redact(text: str) -> str:
    """Return `text` with signed query values and registered secrets masked."""
    if "=" in text:  # every pattern needs one: most texts skip the regex
        text = _SIGNED_PARAM.sub(r"\1REDACTED", text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text
