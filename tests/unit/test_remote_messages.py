"""A source's transport error is one readable line: no URL, no quoted image bytes."""

from __future__ import annotations

from ingest.remote import _without_urls


def test_quoted_image_bytes_are_cut_and_the_url_never_shown() -> None:
    # Newcomer finding: a source that sent more than its Content-Length left image bytes
    # on the connection; the next fetch failed with aiohttp's "Bad status line" quoting them.
    raw = (
        "400, message=\"Bad status line 'Invalid method encountered:\n\n  b'\\x89PNG\\r\\n"
        "\\x1a\\n'\n    ^'\", url='http://127.0.0.1:1/x?X-Amz-Signature=abc'"
    )
    shown = _without_urls(raw)
    assert shown == "400, message=\"Bad status line 'Invalid method encountered: ... (binary data)"
    assert "\n" not in _without_urls("a\nb") and "sig" not in _without_urls(
        "failed for https://h/x?sig=1 now"
    )


def test_a_plain_error_is_kept_as_it_is() -> None:
    text = "Cannot connect to host 127.0.0.1:9 ssl:default [Connect call failed]"
    assert _without_urls(text) == text
