"""SigV4 query presigning against AWS's published example, and strict verification."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ingest.sim import sigv4
from ingest.sim.testing import request_target

AWS_HOST = "examplebucket.s3.amazonaws.com"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_EXAMPLE_URL = (
    "https://examplebucket.s3.amazonaws.com/test.txt"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
)
NOW = datetime(2023, 11, 2, 6, 5, 19, tzinfo=UTC)


def _aws_example() -> str:
    return sigv4.presign(
        "GET",
        f"https://{AWS_HOST}",
        "/test.txt",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret=AWS_SECRET,
        region="us-east-1",
        now=datetime(2013, 5, 24, tzinfo=UTC),
        expires=86400,
        signed_headers={"host": AWS_HOST},
    )


def _verify(url: str, method: str, headers: dict[str, str]) -> sigv4.Verification:
    return sigv4.verify_target(method, request_target(url), headers, secret="s3cr3t/KEY+x")


def _novita_like(**overrides: object) -> str:
    args: dict[str, Any] = {  # presign's keyword arguments, of several types
        "access_key": "AKIASIM",
        "secret": "s3cr3t/KEY+x",
        "region": "ap-southeast-1",
        "now": NOW,
        "expires": 120,
        "signed_headers": {"host": "127.0.0.1:8080"},
        "extra_query": [("x-id", "PutObject")],
    }
    args.update(overrides)
    return sigv4.presign(
        "PUT",
        "http://127.0.0.1:8080",
        "/s3/faas-training-dataset/sim/0123abcd.png",
        **args,
    )


def test_aws_documentation_vector() -> None:
    assert _aws_example() == AWS_EXAMPLE_URL


def test_aws_documentation_vector_verifies() -> None:
    raw_path, pairs = sigv4.split_target(request_target(AWS_EXAMPLE_URL))
    auth = sigv4.parse_query_auth(pairs)
    result = sigv4.verify("GET", raw_path, pairs, {"host": AWS_HOST}, auth, secret=AWS_SECRET)
    assert result.ok
    assert auth.access_key == "AKIAIOSFODNN7EXAMPLE"
    assert auth.expires_at == datetime(2013, 5, 25, tzinfo=UTC)


def test_query_order_and_encoding() -> None:
    url = _novita_like()
    query = url.split("?", 1)[1]
    names = [pair.split("=")[0] for pair in query.split("&")]
    assert names == [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "x-id",
        "X-Amz-Signature",
    ]
    assert "X-Amz-Credential=AKIASIM%2F20231102%2Fap-southeast-1%2Fs3%2Faws4_request" in query
    assert "X-Amz-Date=20231102T060519Z&X-Amz-Expires=120&X-Amz-SignedHeaders=host" in query
    with_type = _novita_like(signed_headers={"host": "h", "content-type": "image/png"})
    assert "X-Amz-SignedHeaders=content-type%3Bhost" in with_type


def test_round_trip() -> None:
    assert _verify(_novita_like(), "PUT", {"host": "127.0.0.1:8080"}).ok


def test_path_is_encoded_per_aws_rules() -> None:
    url = sigv4.presign(
        "PUT",
        "http://h",
        "/b/a b(1)~é+.png",
        access_key="AKIASIM",
        secret="s3cr3t/KEY+x",
        region="r",
        now=NOW,
        expires=60,
        signed_headers={"host": "h"},
    )
    assert url.startswith("http://h/b/a%20b%281%29~%C3%A9%2B.png?")
    assert _verify(url, "PUT", {"host": "h"}).ok


def test_slash_rewrite_is_a_mismatch() -> None:
    url = _novita_like()
    result = _verify(url.replace("%2F", "/"), "PUT", {"host": "127.0.0.1:8080"})
    assert not result.ok
    assert "AKIASIM/20231102/ap-southeast-1" in result.canonical_request


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GET", {"host": "127.0.0.1:8080"}),  # another method
        ("PUT", {"host": "127.0.0.1"}),  # port dropped from Host
        ("PUT", {"host": "localhost:8080"}),  # another name
    ],
)
def test_changed_request_is_a_mismatch(method: str, headers: dict[str, str]) -> None:
    assert not _verify(_novita_like(), method, headers).ok


def test_signed_content_type_must_match() -> None:
    url = _novita_like(signed_headers={"host": "h", "content-type": "image/png"})
    assert _verify(url, "PUT", {"host": "h", "content-type": "image/png"}).ok
    assert not _verify(url, "PUT", {"host": "h", "content-type": "image/jpeg"}).ok
    assert not _verify(url, "PUT", {"host": "h"}).ok


def test_tampered_query_is_a_mismatch() -> None:
    url = _novita_like().replace("X-Amz-Expires=120", "X-Amz-Expires=600")
    assert not _verify(url, "PUT", {"host": "127.0.0.1:8080"}).ok


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("X-Amz-Algorithm=AWS4-HMAC-SHA256", "requires"),
        (
            "X-Amz-Algorithm=AWS4-HMAC-SHA1&X-Amz-Credential=a%2F20231102%2Fr%2Fs3%2Faws4_request"
            "&X-Amz-Date=20231102T060519Z&X-Amz-Expires=1&X-Amz-SignedHeaders=host"
            "&X-Amz-Signature=00",
            "AWS4-HMAC-SHA256",
        ),
        (
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a%2Fr%2Fs3"
            "&X-Amz-Date=20231102T060519Z&X-Amz-Expires=1&X-Amz-SignedHeaders=host"
            "&X-Amz-Signature=00",
            "X-Amz-Credential",
        ),
        (
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a%2F20231102%2Fr%2Fs3%2Faws4_request"
            "&X-Amz-Date=yesterday&X-Amz-Expires=1&X-Amz-SignedHeaders=host&X-Amz-Signature=00",
            "ISO8601",
        ),
        (
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a%2F20231102%2Fr%2Fs3%2Faws4_request"
            "&X-Amz-Date=20231102T060519Z&X-Amz-Expires=604801&X-Amz-SignedHeaders=host"
            "&X-Amz-Signature=00",
            "604800",
        ),
    ],
)
def test_malformed_query_auth(query: str, message: str) -> None:
    _, pairs = sigv4.split_target("/b/k?" + query)
    assert sigv4.is_presigned(pairs)
    with pytest.raises(sigv4.PresignFormatError, match=message):
        sigv4.parse_query_auth(pairs)


def test_presign_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="host"):
        _novita_like(signed_headers={"content-type": "image/png"})
    with pytest.raises(ValueError, match="expires"):
        _novita_like(expires=0)
