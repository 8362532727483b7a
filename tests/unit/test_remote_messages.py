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


def test_an_s3_source_without_credentials_fails_at_once_saying_what_to_set() -> None:
    # Newcomer finding: boto3's NoCredentialsError was retried as a transport error, 15 tries
    # and ~2 minutes per item ('cannot fetch the source … (after 15 tries)'); no retry finds
    # credentials. A dropped connection is still retried.
    from pathlib import Path

    from botocore.exceptions import EndpointConnectionError, NoCredentialsError

    from ingest.errors import Action
    from ingest.http import Timeouts
    from ingest.item import Item
    from ingest.remote import Fetcher
    from ingest.retry import RetryPolicy

    policy = RetryPolicy(
        max_attempts=8, window_s=90.0, base_s=0.5, cap_s=8.0, max_resigns=8, max_wait_s=60.0
    )
    fetcher = Fetcher(
        provider="novita",
        formats=frozenset(),
        policy=policy,
        timeouts=Timeouts(),
        concurrency=1,
        max_size=None,
    )
    item = Item(key="s3://b/a.png", path=Path("s3://b/a.png"), line=1, url="s3://b/a.png")
    err = fetcher._s3_error(item, NoCredentialsError())
    assert err.action is Action.FAIL_ITEM
    assert err.message == (
        "cannot fetch the source (NoCredentialsError: Unable to locate credentials; set "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE): s3://b/a.png"
    )
    dropped = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert fetcher._s3_error(item, dropped).action is Action.RETRY
