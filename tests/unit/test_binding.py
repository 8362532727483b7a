"""The journal's binding: what a header records, and which runs may use a journal.

`check_binding` against headers built by hand (every field, forced or not),
`endpoint_of` keeping secrets out of the header, and the library front door
refusing a run whose endpoint or mode differs from its journal's before any
request is sent.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import ingest
from ingest.api.wiring import binding, endpoint_of, prepare
from ingest.errors import JournalMismatch
from ingest.journal import EMULATOR, Header, check_binding, unrecorded
from tests.images import make_dataset, write_jsonl_manifest

PATH = Path("/data/j")
MADE = Header(
    provider="scenario",
    manifest="/data/m.jsonl",
    bind={"model_id": "model_a", "mode": "inline", "preset": "default"},
    endpoint=EMULATOR,
)


def _replace(**changes: Any) -> Header:
    return dataclasses.replace(MADE, **changes)


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize(
    ("changes", "said"),
    [
        (
            {"provider": "novita", "bind": {}},
            "made for provider 'scenario'; this run is for 'novita'",
        ),
        (
            {"endpoint": "https://api.cloud.scenario.com/v1"},
            "made against the built-in emulator; this run targets https://api.cloud.scenario.com/v1",
        ),
        (
            {"bind": {**MADE.bind, "mode": "assets"}},
            "made with mode 'inline'; this run uses mode 'assets'",
        ),
        (
            {"bind": {**MADE.bind, "model_id": "model_b"}},
            "made with model_id 'model_a'; this run uses model_id 'model_b'",
        ),
    ],
)
def test_what_decides_where_items_go_is_never_forced(
    changes: dict[str, Any], said: str, force: bool
) -> None:
    with pytest.raises(JournalMismatch) as info:
        check_binding(PATH, MADE, _replace(**changes), force)
    message = str(info.value)
    assert message == (
        f"journal {PATH} was {said}: use another --journal (or journal=) to keep them apart"
    )
    assert "--force" not in message


def test_force_overrides_a_moved_manifest_only() -> None:
    moved = _replace(manifest="/new/m.jsonl")
    with pytest.raises(JournalMismatch, match=r"or --force if only the manifest moved\)$"):
        check_binding(PATH, MADE, moved, False)
    assert check_binding(PATH, MADE, moved, True) == moved  # the header to rewrite
    both = _replace(manifest="/new/m.jsonl", endpoint="http://127.0.0.1:8700/v1")
    with pytest.raises(JournalMismatch) as info:
        check_binding(PATH, MADE, both, True)
    assert "--force" not in str(info.value)
    assert "for manifest /data/m.jsonl" in str(info.value)
    assert check_binding(PATH, MADE, MADE, False) is MADE


def test_fields_an_older_journal_lacks_are_unknown_not_different() -> None:
    old = Header(provider="scenario", manifest=MADE.manifest, bind={"model_id": "model_a"})
    now = _replace(endpoint="https://api.cloud.scenario.com/v1")
    assert check_binding(PATH, old, now, False) is old
    assert unrecorded(old, now) == ("endpoint", "mode", "preset")
    assert unrecorded(MADE, MADE) == ()


@pytest.mark.parametrize(
    ("base_url", "endpoint"),
    [
        ("https://api.novita.ai", "https://api.novita.ai"),
        ("HTTPS://API.Novita.AI/", "https://api.novita.ai"),
        ("http://user:s3cret@127.0.0.1:8700/v1/?token=abc#frag", "http://127.0.0.1:8700/v1"),
        ("http://[::1]:8700/v1", "http://[::1]:8700/v1"),
    ],
)
def test_the_endpoint_holds_no_secret(base_url: str, endpoint: str) -> None:
    assert endpoint_of(base_url) == endpoint


def test_a_header_never_holds_a_key_or_a_signed_query(tmp_path: Path) -> None:
    manifest = write_jsonl_manifest(make_dataset(tmp_path / "i", 2), tmp_path / "m.jsonl")
    base = "http://ak:sk-live-secret@127.0.0.1:1/?X-Amz-Signature=deadbeef"
    plan = prepare(manifest, provider="novita", settings={"base_url": base}, keys="none")
    header = binding(plan, emulator=False)
    text = json.dumps(header.to_record())
    assert header.endpoint == "http://127.0.0.1:1"
    assert "secret" not in text and "Signature" not in text and "ak:" not in text
    assert binding(plan, emulator=True).endpoint == EMULATOR


@pytest.mark.anyio
async def test_the_library_refuses_another_endpoint_or_mode_before_any_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = write_jsonl_manifest(make_dataset(tmp_path / "i", 3), tmp_path / "m.jsonl")
    journal = tmp_path / "m.journal"
    tried = await ingest.upload(manifest, provider="novita", sim=True, journal=journal)
    assert tried.complete
    written = journal.read_bytes()
    monkeypatch.setenv("NOVITA_API_KEY", "anything")
    # A closed port: had the run been let through, it would fail (not be refused).
    with pytest.raises(JournalMismatch, match="built-in emulator; this run targets http://127"):
        await ingest.upload(
            manifest, provider="novita", journal=journal, base_url="http://127.0.0.1:9"
        )
    assert journal.read_bytes() == written
    scenario = tmp_path / "s.journal"
    inline = await ingest.upload(
        manifest, provider="scenario", sim=True, journal=scenario, model_id="m", mode="inline"
    )
    assert inline.complete
    with pytest.raises(JournalMismatch, match="mode 'inline'; this run uses mode 'assets'"):
        await ingest.upload(manifest, provider="scenario", sim=True, journal=scenario, force=True)
