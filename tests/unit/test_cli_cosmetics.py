"""Placeholders and repetitions the CLI printed (K2, K4, K5 of the newcomer's findings).

K2: status lines said ``paused 0s`` for a pause under half a second, and
`ingest status` said ``(? entries)`` for a manifest no run had read to its end.
K4: a folder's (or path list's) key is its file's path, so problem lines printed
the path twice. K5: `retry-failed --help` offered a ``--retry-failed`` flag. A refused signature was
hinted as expiry (the review of issue 12).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ingest.cli.main import main
from ingest.cli.report import HINTS, Reporter, hint_for, problem_where
from ingest.cli.status import failure_line
from ingest.engine import Snapshot
from ingest.engine.outcomes import Counters
from ingest.errors import EXPIRED, Action, ManifestError, TransferError
from ingest.journal import Header, Journal
from ingest.journal.records import acquired, run_started
from ingest.journal.report import Failure
from ingest.pacing import PacerStats


def _snapshot(paused_for: float) -> Snapshot:
    return Snapshot(
        counters=Counters(done=3),
        total=None,
        elapsed_s=1.0,
        api_pacer=PacerStats(rate=2.0, throttles=1, paused_for=paused_for),
        reading_done=False,
    )


def test_a_short_pause_is_not_shown_as_zero_seconds() -> None:
    reporter = Reporter("plain", err=io.StringIO())
    assert reporter.status_line(_snapshot(0.3)).endswith(" paced 2.0/s paused 1s")
    assert reporter.status_line(_snapshot(4.2)).endswith(" paused 5s")
    assert "paused" not in reporter.status_line(_snapshot(0.0))


def test_status_of_a_manifest_never_read_to_its_end_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "m.jsonl.novita.journal"
    opened, _ = Journal.open(journal, Header(provider="novita", manifest=str(tmp_path / "m.jsonl")))
    with opened:
        opened.record(run_started(0.0, 1))
        opened.record(acquired("a", "id-a"))  # killed here: no manifest_end, so no total
    assert main(["status", str(journal)]) == 0
    out = capsys.readouterr().out
    assert f"manifest  {tmp_path / 'm.jsonl'}  (not counted yet)\n" in out
    assert "?" not in out


def test_a_problem_line_names_a_path_key_once(tmp_path: Path) -> None:
    path = tmp_path / "photos" / "sub" / "a.png"
    reason = f"empty file (0 bytes): {path}"
    assert problem_where(4, "sub/a.png", reason, "photos") == "line 4"
    assert problem_where(4, str(path), reason, "photos") == "line 4"
    assert problem_where(4, "id-7", reason, "m.jsonl") == "line 4 id-7"
    assert problem_where(None, None, "manifest is empty", "m.jsonl") == "m.jsonl"
    err = io.StringIO()
    Reporter("plain", err=err).item_rejected(
        "sub/a.png", ManifestError(reason, source=str(path), line=4)
    )
    assert err.getvalue() == f"rejected line 4: empty file (0 bytes): {path}\n"
    bad = Failure(key="sub/a.png", line=4, kind="bad", code="empty file", reason=reason)
    assert failure_line(bad) == f"line 4: rejected: empty file (0 bytes): {path}"


def test_validate_of_a_folder_prints_each_path_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "b.jpg").write_bytes(b"")
    (folder / "a.png").write_text("hello")
    assert main(["validate", str(folder), "--provider", "novita"]) == 1
    lines = capsys.readouterr().out.splitlines()
    # A folder's entries are named by their path in it, not by their place in the sorted walk.
    assert lines[:2] == [
        "a.png: not an image (content looks like text ('hello'))",
        "sub/b.jpg: empty file (0 bytes)",
    ]


def test_validate_each_names_a_metadata_row_s_problem_by_its_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Newcomer finding: `validate --each` printed '1: rejected: metadata.csv line 3: ...',
    # the row's place in the walk, a number that names nothing the user can find.
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "metadata.csv").write_bytes(b"file_name,caption\na.png,caf\xe9\n")
    assert main(["validate", str(folder), "--provider", "novita", "--each"]) in (1, 2)
    rejected = [line for line in capsys.readouterr().out.splitlines() if "rejected" in line]
    assert rejected == [
        f"{folder}: rejected: metadata.csv line 2: not valid UTF-8 (byte e9 at column 10): a.png,caf\\xe9"
    ]


def test_a_folder_entry_is_named_by_its_path_not_its_place_in_the_walk(tmp_path: Path) -> None:
    path = tmp_path / "photos" / "sub" / "a.png"
    reason = f"empty file (0 bytes): {path}"
    assert problem_where(4, "sub/a.png", reason, "photos", folder=True) == "sub/a.png"
    assert problem_where(None, None, "no images found", "photos", folder=True) == "photos"
    err = io.StringIO()
    reporter = Reporter("plain", err=err)
    reporter.folder = True
    reporter.item_rejected("sub/a.png", ManifestError(reason, source=str(path), line=4))
    failed = TransferError("boom", action=Action.FAIL_ITEM, code="x", provider="p", op="acquire")
    reporter.item_failed("sub/b.png", 5, failed)
    reporter.item_changed("sub/c.png", 6)
    assert err.getvalue().splitlines() == [
        "rejected sub/a.png: empty file (0 bytes)",
        "failed  sub/b.png: p acquire x: boom",
        "changed sub/c.png: the file changed since it was uploaded (kept the old upload)",
    ]
    bad = Failure(key="sub/a.png", line=4, kind="bad", code="empty file", reason=reason)
    assert failure_line(bad, folder=True) == "sub/a.png: rejected: empty file (0 bytes)"


def test_retry_failed_has_no_retry_failed_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as helped:
        main(["retry-failed", "--help"])
    assert helped.value.code == 0
    usage = capsys.readouterr().out
    assert "--reupload-changed" in usage
    assert "  --retry-failed" not in usage and "[--retry-failed]" not in usage
    with pytest.raises(SystemExit) as refused:
        main(["retry-failed", str(tmp_path / "j"), "--retry-failed"])
    assert refused.value.code == 2
    assert "unrecognized arguments: --retry-failed" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # `run` keeps it
        main(["run", "--help"])
    assert "  --retry-failed" in capsys.readouterr().out


def test_a_refused_signature_is_not_hinted_as_expiry() -> None:
    """A storage refusal a new URL did not cure (review of issue 12) was hinted
    "upload URLs kept expiring; lower put_concurrency", which sends the user the wrong way."""
    expired = hint_for("resign", EXPIRED)
    assert "expiring" in expired
    refused = hint_for("resign", "SignatureDoesNotMatch")
    assert "expiring" not in refused and "changes the request" in refused
    assert hint_for("stop", "unauthorized") == HINTS["stop"]


def test_the_convert_hint_names_every_limit_a_conversion_can_fail_by() -> None:
    # convert_timeout_s (convprio) is a fourth way a conversion fails: the hint names its flag.
    hint = hint_for("fail", "convert_failed")
    assert all(f in hint for f in ("--convert-memory-mib", "--convert-timeout-s", "--max-side"))


def test_the_summary_groups_rejections_by_cause_not_by_the_first_colon() -> None:
    # Newcomer finding: reason.split(":")[0] cut "path is a URL ('ftp://...')" at its colon,
    # and gave each position of a damaged member ("bytes 512-1024: ...") a row of its own.
    reporter = Reporter("plain", err=io.StringIO())
    for n, reason in enumerate(
        ("path is a URL ('ftp://a/x.png'); ingest reads http(s)://", "invalid JSON at column 3: x")
    ):
        reporter.item_rejected(None, ManifestError(reason, source="m.jsonl", line=n + 1))
    reporter.item_rejected(None, ManifestError("invalid JSON at column 9: x", source="m", line=3))
    assert dict(reporter.failures) == {
        ("rejected", "path is a URL ('…'); ingest reads http(s)://"): 1,
        ("rejected", "invalid JSON at column N: x"): 2,
    }


def test_a_url_source_that_failed_is_not_hinted_as_the_provider_s_refusal() -> None:
    assert "source server" in hint_for("fail_item", "source_failed")
    assert "provider rejected" in hint_for("fail_item", "too_large")
    # Newcomer finding: a damaged BMP that --convert could not decode was hinted as
    # "the provider rejected these items", though no request was made for it.
    assert "could not be converted" in hint_for("fail_item", "convert_failed")


def test_a_problem_group_keeps_the_field_name_it_is_about() -> None:
    """validate's table said `expected a JSON object with a '…' key` and `'…' is missing;
    each row names its image in '…'`: the field name, the same for every item, was masked
    as if it were a value. Values (single-quoted reprs, and a double-quoted repr) still are."""
    from ingest.reasons import group

    assert group('"path" must be a string, got a number') == '"path" must be a string, got a number'
    assert (
        group(
            'metadata.jsonl line 4: "file_name" is missing; each row names its image in "file_name"'
        )
        == 'metadata.jsonl line N: "file_name" is missing; each row names its image in "file_name"'
    )
    assert (
        group("unknown key 'nopath' (did you mean 'path'?)")
        == "unknown key '…' (did you mean '…'?)"
    )
    assert group('duplicate id "it\'s" (first at line 3)') == "duplicate id '…' (first at line N)"


def test_a_damaged_parquet_row_group_is_two_problem_groups_not_one_per_row() -> None:
    """Newcomer7: a Parquet file with one damaged page header made validate's table and
    `ingest status` list 1,000 groups, `row 1 not read: …`, `row 2 not read: …`, one a row."""
    from ingest.manifest import WalkStats
    from ingest.manifest.packed.parquet import _damaged
    from ingest.reasons import group

    path = Path("/data/train.parquet")
    where = (2, 7, 500)  # row group 2 from row 7, 500 rows
    rows = _damaged(
        path, "train.parquet", "train.parquet", WalkStats(), where, "a bad page header at byte 9"
    )
    assert {group(problem.reason) for problem in rows} == {
        "row N cannot be read: row group N is damaged (a bad page header at byte N)",
        "row N not read: row group N is damaged from row N on",
    }


def test_status_of_a_manifest_names_its_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Newcomer7: `ingest status photos.jsonl` (the manifest, not its journal) said only
    `not an ingest journal (bad header)`."""
    manifest = tmp_path / "photos.jsonl"
    manifest.write_text('{"path": "a.png"}\n')
    assert main(["status", str(manifest)]) == 2
    assert "a manifest? a run writes its journal beside it" in capsys.readouterr().err
    journal = tmp_path / "photos.jsonl.novita.journal"
    opened, _ = Journal.open(journal, Header(provider="novita", manifest=str(manifest)))
    opened.close()
    assert main(["status", str(manifest)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"a manifest? its journal: {journal}")
    (tmp_path / "other.journal").write_text("[1]\n")
    assert main(["status", str(tmp_path / "other.journal")]) == 2
    assert capsys.readouterr().err.strip().endswith("not an ingest journal (bad header)")


def test_validate_each_names_a_keyless_problem_by_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Newcomer7: `validate --each` printed `3: rejected: invalid JSON …` (a bare number)
    where the table without --each says `line 3: …`."""
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": "missing.png"}\n{broken\n')
    assert main(["validate", str(manifest), "--provider", "novita", "--each"]) == 1
    rejected = [line for line in capsys.readouterr().out.splitlines() if "rejected" in line]
    assert rejected[1].startswith("line 2: rejected: invalid JSON at column 2")


def test_a_position_before_a_word_of_hex_letters_stays_a_position() -> None:
    # Newcomer8: validate's table said "damaged tar header at byte …ter member '…'": the hex
    # byte rule took the "af" of "after" for a byte value.
    from ingest.reasons import group

    assert group("damaged tar header at byte 2048 after member 's/0.txt'; the rest is lost") == (
        "damaged tar header at byte N after member '…'; the rest is lost"
    )
    assert group("not valid UTF-8 (byte e9 at column 49): caf\\xe9") == (
        "not valid UTF-8 (byte … at column N)"
    )


def test_caption_files_not_utf8_are_one_group_whatever_their_bad_byte() -> None:
    # Newcomer9: validate's table had a row per bad byte value ("(byte N is 0xe9)",
    # "(byte N is 0xff)", "(byte N is 0x81)") for one cause.
    from ingest.reasons import group

    groups = {
        group(f"caption file is not UTF-8 (byte {n} is 0x{b:02x}); save it as UTF-8: /d/{n}.txt")
        for n, b in ((3, 0xE9), (0, 0xFF), (7, 0x81))
    }
    assert groups == {"caption file is not UTF-8 (byte N is 0x…); save it as UTF-8"}


def test_a_number_with_thousands_separators_and_a_list_of_schemes_survive_grouping() -> None:
    # Newcomer16: validate's table said "its image data ends at byte N,151" (the digits before
    # the separator taken for the position) and "ingest fetches only: download it" (the list
    # of schemes taken for a URL running to the next ": ").
    from ingest.reasons import group

    cut = (
        "cannot convert heic: damaged or truncated: its image data ends at byte {}, the file at {}"
    )
    assert {
        group(cut.format(a, b) + ": /d/v0.heic") for a, b in (("16,151", "8,075"), (900, 12))
    } == {cut.format("N", "N")}
    scheme = (
        "path is a URL ('gs://bucket/a.png'); ingest fetches only http://, https:// and s3:// "
        "URLs: download it and list the local path"
    )
    assert group(scheme) == scheme.replace("'gs://bucket/a.png'", "'…'")
    assert group("source body cut short: 60 of 5000 bytes: https://host/a.png") == (
        "source body cut short: 60 of 5000 bytes"
    )
