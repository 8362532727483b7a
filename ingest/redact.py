"""Redaction of secrets in anything that may be printed, logged or journaled.

Owns two rules:

- a signed URL's query values that authorise a request (`X-Amz-Signature`,
  `X-Amz-Credential`, `X-Amz-Security-Token`, `Signature`, `sig`, `token`)
  and any registered secret value never leave the process;
- a key pasted where the *name* of its environment variable belongs
  (``api_key_env = "sk-live-…"``) is an error that shows only its first
  characters (`key_variable_problem`), and is registered as a secret; so is
  one that is a valid variable name but, unset, looks like a key (`keyish`:
  ``a8f3k2m9x7q1w5e6r4t0``, ``sk_live_4eC39…``).

How a registered secret is found: one of `WHOLE_TOKEN_BELOW` (8) characters
or more is masked wherever it appears, even inside a longer word or path (a
string that long does not occur by chance, and a path that contains the key
prints the key). A shorter one (a test key such as ``badkey``) is masked only
as a whole token, not touching a letter, digit, ``_`` or ``-``, so
``/data/badkey_novita.journal`` stays readable while ``Bearer badkey`` or
``key=badkey&`` is still masked. Values under `MIN_SECRET` (4) characters are
not registered: no provider issues keys that short, and masking them as words
would garble counts and names.
"""

from __future__ import annotations

import re

_SIGNED_PARAM = re.compile(
    r"(?i)((?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|sig|token|"
    r"GoogleAccessId|Key-Pair-Id|Policy)=)[^&\s\"'<>]+"
)
MASK = "***"
MIN_SECRET = 4
WHOLE_TOKEN_BELOW = 8
_TOKEN_CHAR = "A-Za-z0-9_-"
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_anywhere: set[str] = set()  # long secrets: masked as substrings
_short: set[str] = set()  # short secrets: masked as whole tokens only
_short_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Remember a secret (an API key) so that `redact` masks it everywhere (see the rule above)."""
    global _short_pattern
    if len(value) < MIN_SECRET:
        return
    if len(value) >= WHOLE_TOKEN_BELOW:
        _anywhere.add(value)
        return
    if value not in _short:
        _short.add(value)
        alternatives = "|".join(re.escape(s) for s in sorted(_short, key=len, reverse=True))
        _short_pattern = re.compile(rf"(?<![{_TOKEN_CHAR}])(?:{alternatives})(?![{_TOKEN_CHAR}])")


def redact(text: str) -> str:
    """Return `text` with signed query values and registered secrets masked."""
    if "=" in text:  # every pattern needs one: most texts skip the regex
        text = _SIGNED_PARAM.sub(r"\1REDACTED", text)
    for secret in _anywhere:
        if secret in text:
            text = text.replace(secret, MASK)
    if _short_pattern is not None and any(secret in text for secret in _short):
        text = _short_pattern.sub(MASK, text)
    return text


def shown_url(url: str) -> str:
    """A URL as messages show it: without userinfo, each query value masked (a signed URL's)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:  # a bad port: nothing of it is trusted
        return "<a URL that cannot be parsed>"
    query = "&".join(
        f"{pair.split('=', 1)[0]}=REDACTED" if "=" in pair else pair
        for pair in parts.query.split("&")
        if pair
    )
    return redact(urlunsplit((parts.scheme, host, parts.path, query, "")))


def url_key(url: str) -> str:
    """The journal key of a URL given without an id: no userinfo, the query as a digest."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    key = f"{parts.scheme.lower()}://{host}{parts.path}"
    if parts.query:
        import hashlib  # here: ~2-7 ms of every command's start-up for URL entries only

        key += "?" + hashlib.sha256(parts.query.encode()).hexdigest()[:16]
    return key


def preview(secret: str) -> str:
    """The first characters of a secret, enough to recognise it: at most 4, at most a quarter."""
    return secret[: min(4, len(secret) // 4)] + "…"


_KEYISH_RUN = re.compile(r"[A-Za-z0-9]{16,}")  # 16+ characters without a word break


def keyish(variable: str) -> bool:
    """Whether `variable`, a valid variable name that is not set, looks like a key itself
    (16+ letters and digits mixed without a `_`: `a8f3k2m9x7q1w5e6r4t0`,
    `sk_live_4eC39HqLyjWDarjtT1zdp7dc`); then it is registered as a secret."""
    for run in _KEYISH_RUN.findall(variable):
        if any(c.isdigit() for c in run) and any(c.isalpha() for c in run):
            register_secret(variable)
            return True
    return False


def key_variable_problem(field: str, variable: str) -> str | None:
    """Why `variable`, the value of a key-variable setting (`api_key_env`), names no variable.

    None when it is a variable name (or empty, which the caller reports as
    unset). Anything else is most likely the key itself, pasted in the wrong
    place: it is registered as a secret and the message shows only `preview`.
    """
    if not variable or _VARIABLE.fullmatch(variable):
        return None
    register_secret(variable)
    return (
        f"{field} must name an environment variable (it looks like a key: {preview(variable)}); "
        "put the key in the environment and name the variable here"
    )
