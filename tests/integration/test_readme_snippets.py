"""Every Python snippet of the README runs as shown, saved as a file.

A new user pasted the library snippet into a file: it mixed a top-level
`await` with `upload_sync`, a SyntaxError outside a notebook. Each snippet is
compiled as a module, then run in its own process from a copy of the
repository's `examples/` (the snippets upload to the built-in emulator).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.simproc import ingest_env

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def snippets() -> list[str]:
    return SNIPPET.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_has_snippets() -> None:
    assert len(snippets()) >= 3


@pytest.mark.parametrize("index", range(len(snippets())))
def test_a_readme_snippet_is_a_program(index: int) -> None:
    compile(snippets()[index], f"README.md snippet {index + 1}", "exec")  # no top-level await


@pytest.mark.parametrize("index", range(len(snippets())))
def test_a_readme_snippet_runs_as_shown(tmp_path: Path, index: int) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    program = tmp_path / "snippet.py"
    program.write_text(snippets()[index], encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(program)],
        cwd=tmp_path,
        env=ingest_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
