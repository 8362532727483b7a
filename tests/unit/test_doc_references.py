"""Every document the code and the docs point to is in the repository.

Scans the package, the benchmarks and the top-level documents for names of
Markdown files (``providers.md §4``, ``../shared/design.md``) and checks that
each one exists, relative to the repository root or to the file that names it.
Facts from elsewhere are written down where they are used, or linked by URL.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = re.compile(r"(?<![\w/.:-])((?:\.\.?/)?[\w./-]*[\w-]+\.md)\b")


def scanned() -> list[Path]:
    files = [*ROOT.glob("*.md"), ROOT / "config.example.toml", ROOT / "pyproject.toml"]
    for folder in ("ingest", "benchmarks", "examples"):
        files += (p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".toml"))
    return sorted(p for p in files if p.is_file())


def missing_documents(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [
        f"{path.relative_to(ROOT)}: {name}"
        for name in DOC.findall(text)
        if not name.startswith("http")
        and not (ROOT / name).is_file()
        and not (path.parent / name).is_file()
    ]


def test_the_scan_finds_document_names_and_skips_urls() -> None:
    page = ROOT / "README.md"
    assert missing_documents(page) == []
    assert DOC.findall("as providers.md §4 says; see ../shared/design.md") == [
        "providers.md",
        "../shared/design.md",
    ]
    assert DOC.findall("https://example.invalid/a/notes.md and benchmarks/README.md") == [
        "benchmarks/README.md"
    ]


def test_every_named_document_is_in_the_repository() -> None:
    paths = scanned()
    assert any(p.name == "ARCHITECTURE.md" for p in paths)
    assert [m for p in paths for m in missing_documents(p)] == []
