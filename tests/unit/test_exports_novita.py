"""Novita's `export --format provider`: training documents of at most 50 images (issue 12, item 5).

Subject and style training take at most 50 ``image_dataset_items`` a task
(create-subject-training: "Each task supports uploading up to 50 images");
style requires a caption of 1-1024 characters and types ``assets_id`` as an
integer (create-style-training). The export writes one document a line,
split as evenly as it goes, and names the items no valid document can hold
instead of cutting or dropping them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

import ingest
from ingest.cli.main import main
from ingest.errors import ConfigError, ExportError
from ingest.journal import Journal
from ingest.journal.header import Header
from ingest.journal.records import completed, manifest_end, run_started
from ingest.providers.novita import NovitaProvider, _even


def journal_of(tmp_path: Path, captions: list[str | None], *, ids: list[str] | None = None) -> Path:
    """A Novita journal whose manifest lists these items, all done (assets ids 100001...)."""
    manifest = tmp_path / "m.jsonl"
    entries = []
    for index, caption in enumerate(captions):
        entry: dict[str, Any] = {"path": f"img{index:03d}.png", "id": f"img{index:03d}"}
        if caption is not None:
            entry["caption"] = caption
        entries.append(orjson.dumps(entry) + b"\n")
    manifest.write_bytes(b"".join(entries))
    journal = tmp_path / "m.jsonl.novita.journal"
    opened, _ = Journal.open(journal, Header(provider="novita", manifest=str(manifest)))
    with opened:
        opened.record(run_started(1.0, 1))
        for index in range(len(captions)):
            remote = ids[index] if ids else str(100001 + index)
            opened.record(completed(f"img{index:03d}", remote, 10, 1))
        opened.record(manifest_end(len(captions)))
    return journal


def items_of(documents: list[Any]) -> list[list[dict[str, Any]]]:
    return [orjson.loads(orjson.dumps(doc))["image_dataset_items"] for doc in documents]


def test_a_60_image_export_is_two_documents_of_at_most_50(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's check: one JSON document a line, each a task's image_dataset_items."""
    journal = journal_of(tmp_path, [f"photo {i}" if i % 2 else None for i in range(60)])
    assert main(["export", str(journal), "--format", "provider"]) == 0
    lines = capsys.readouterr().out.splitlines()
    documents = [orjson.loads(line) for line in lines]
    assert [len(doc["image_dataset_items"]) for doc in documents] == [30, 30]
    exported = [item for doc in documents for item in doc["image_dataset_items"]]
    assert [item["assets_id"] for item in exported] == [str(100001 + i) for i in range(60)]
    assert exported[:2] == [{"assets_id": "100001"}, {"assets_id": "100002", "caption": "photo 1"}]


@pytest.mark.parametrize(
    ("count", "sizes"),
    [(0, []), (1, [1]), (50, [50]), (51, [26, 25]), (60, [30, 30]), (101, [34, 34, 33])],
)
def test_documents_are_as_even_as_they_go(count: int, sizes: list[int]) -> None:
    assert (_even(count, 50) if count else []) == sizes
    rows = [{"key": f"k{i}", "remote_id": str(i)} for i in range(count)]
    split = NovitaProvider.export_documents(rows, {}, None)
    assert [len(items) for items in items_of(list(split.documents))] == sizes
    assert split.problems == ()


def test_style_documents_carry_integer_ids_and_every_caption(tmp_path: Path) -> None:
    journal = journal_of(tmp_path, ["a cat", "a dog", "x" * 1024])
    [items] = items_of(ingest.export(journal, "provider", training="style"))
    assert items == [
        {"assets_id": 100001, "caption": "a cat"},
        {"assets_id": 100002, "caption": "a dog"},
        {"assets_id": 100003, "caption": "x" * 1024},
    ]
    [subject] = items_of(ingest.export(journal, "provider", training="subject"))
    assert subject[0] == {"assets_id": "100001", "caption": "a cat"}


def test_style_without_a_caption_is_a_problem_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = journal_of(tmp_path, ["fine", None, "", "y" * 1025])
    with pytest.raises(ExportError) as info:
        ingest.export(journal, "provider", training="style")
    assert len(info.value.problems) == 3
    out = tmp_path / "dataset.jsonl"
    args = ["export", str(journal), "--format", "provider", "--training", "style", "-o", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[:3] == [
        f"ingest: problem: img001 ({tmp_path / 'img001.png'}): style training needs a caption "
        "(1-1024 characters); it has none",
        f"ingest: problem: img002 ({tmp_path / 'img002.png'}): style training needs a caption "
        "(1-1024 characters); it has none",
        f"ingest: problem: img003 ({tmp_path / 'img003.png'}): its caption has 1025 characters, "
        "over the 1024 allowed",
    ]
    assert err[3].startswith("ingest: error: 3 done items cannot go into a style training")
    assert "nothing was written" in err[3] and len(err) == 4
    assert not out.exists()
    # Subject training: captions are optional, but one over 1024 is still named, never cut.
    with pytest.raises(ExportError) as info:
        ingest.export(journal, "provider")
    assert [p.split(": ", 1)[1] for p in info.value.problems] == [
        "its caption has 1025 characters, over the 1024 allowed"
    ]


def test_style_refuses_string_assets_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The guide's 32-hex ids cannot be the integer style training types assets_id as.

    The advice said "Fix the captions in the manifest", which cannot help here.
    """
    journal = journal_of(tmp_path, ["a cat"], ids=["34558688e2f42a0137ca2d5274a8cf43"])
    with pytest.raises(ExportError) as info:
        ingest.export(journal, "provider", training="style")
    [problem] = info.value.problems
    assert "integer assets_id" in problem and "34558688e2f42a0137ca2d5274a8cf43" in problem
    assert "--training subject" in problem
    assert main(["export", str(journal), "--format", "provider", "--training", "style"]) == 1
    assert "Fix the captions" not in capsys.readouterr().err


def test_training_is_novitas_and_the_provider_formats_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = journal_of(tmp_path, ["a"])
    assert main(["export", str(journal), "--training", "style"]) == 2
    assert capsys.readouterr().err == "ingest: error: --training goes with --format provider\n"
    with pytest.raises(ConfigError, match="training applies to the provider format"):
        ingest.export(journal, training="style")  # type: ignore[call-overload]  # a caller's mistake
    other = tmp_path / "mh.journal"
    opened, _ = Journal.open(other, Header(provider="modelhunter", manifest=str(tmp_path / "m")))
    with opened:
        opened.record(run_started(1.0, 1))
    args = ["export", str(other), "--format", "provider", "--training", "subject"]
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("ingest: error: training: training kinds are")
