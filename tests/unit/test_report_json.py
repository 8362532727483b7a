"""`--json` item lines: redacted where a URL can appear (an error's reason, a landed url), not
line by line; a signed query string in a reason still never reaches stdout."""

from __future__ import annotations

import io
import json

import pytest

from ingest.cli import report
from ingest.cli.report import Reporter
from ingest.engine import ItemDone
from ingest.errors import Action, ManifestError, TransferError
from ingest.providers.base import Landed

SIGNED = "https://bucket.s3.amazonaws.com/a.png?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=f00d"


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_signed_query_string_in_an_error_reason_is_redacted_in_json() -> None:
    out = io.StringIO()
    reporter = Reporter("json", out=out, err=io.StringIO())
    err = TransferError(
        f"PUT {SIGNED} refused", action=Action.FAIL_ITEM, code="403", provider="novita", op="put"
    )
    reporter.item_failed("a.png", 3, err)
    reporter.item_rejected("b.png", ManifestError(f"cannot fetch {SIGNED}", source="m", line=4))
    reporter.item_done(ItemDone("c.png", 5, 10, Landed("id-1", SIGNED), uploaded=True))
    reporter.flush()
    text = out.getvalue()
    assert "f00d" not in text and "AKIAEXAMPLE" not in text
    failed, rejected, done = _lines(out)
    assert failed["reason"] == (
        "PUT https://bucket.s3.amazonaws.com/a.png?X-Amz-Credential=REDACTED"
        "&X-Amz-Signature=REDACTED refused"
    )
    assert "X-Amz-Signature=REDACTED" in str(rejected["reason"])
    assert "X-Amz-Signature=REDACTED" in str(done["url"]) and done["key"] == "c.png"


def test_an_item_line_is_redacted_by_its_url_fields_not_as_a_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    def counted(text: str) -> str:
        seen.append(text)
        return text

    monkeypatch.setattr(report, "redact", counted)
    reporter = Reporter("json", out=io.StringIO(), err=io.StringIO())
    reporter.item_done(ItemDone("c.png", 5, 10, Landed("id-1"), uploaded=True))
    reporter.item_changed("d.png", 6)
    assert seen == ["c.png", "d.png"]  # the keys only (the old code redacted each whole line)
    reporter.item_done(ItemDone("e.png", 7, 10, Landed("id-2", "https://cdn/e.png"), True))
    assert seen[2:] == ["e.png", "https://cdn/e.png"]


def test_a_signed_query_string_in_a_key_is_redacted_in_json() -> None:
    """A path key holds what its file's name holds: `wget` of a signed URL names the file
    `a.png?X-Amz-Credential=…&X-Amz-Signature=…`, and a manifest lists it as it is."""
    out = io.StringIO()
    reporter = Reporter("json", out=out, err=io.StringIO())
    key = "a.png?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=f00d"
    err = TransferError("refused", action=Action.FAIL_ITEM, code="403", provider="novita", op="put")
    reporter.item_done(ItemDone(key, 5, 10, Landed("id-1"), uploaded=True))
    reporter.item_failed(key, 6, err)
    reporter.item_rejected(key, ManifestError("not an image", source="m", line=7))
    reporter.item_changed(key, 8)
    reporter.flush()
    assert "f00d" not in out.getvalue() and "AKIAEXAMPLE" not in out.getvalue()
    shown = "a.png?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED"
    assert [line["key"] for line in _lines(out)] == [shown] * 4
