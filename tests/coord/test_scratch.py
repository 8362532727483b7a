"""A worker's scratch folder: removed at exit, and a dead worker's swept by the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ingest.coord import scratch


@pytest.fixture
def tmpdir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_a_folder_is_removed_at_exit(tmpdir_env: Path) -> None:
    with scratch.scratch_folder() as folder:
        (folder / "chunk-1.journal").write_text("x")
        assert folder.parent == tmpdir_env and folder.name.startswith(scratch.PREFIX)
    assert list(tmpdir_env.iterdir()) == []


def test_a_killed_worker_s_folder_is_swept_and_a_live_one_s_kept(tmpdir_env: Path) -> None:
    code = (
        "import sys, tempfile; tempfile.tempdir = sys.argv[1]\n"
        "from ingest.coord.scratch import scratch_folder\n"
        "with scratch_folder() as f:\n"
        "    (f / 'chunk-7.journal').write_text('x'); print(f, flush=True); sys.stdin.read()\n"
    )
    args = [sys.executable, "-c", code, str(tmpdir_env)]
    dead = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    live = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert dead.stdout is not None and live.stdout is not None
        dead_folder, live_folder = (
            Path(dead.stdout.readline().strip()),
            Path(live.stdout.readline().strip()),
        )
        os.kill(dead.pid, signal.SIGKILL)
        dead.wait(timeout=30)
        assert dead_folder.is_dir()  # a SIGKILL leaves it behind
        assert scratch.sweep(tmpdir_env) == 1
        assert not dead_folder.exists() and (live_folder / "chunk-7.journal").is_file()
    finally:
        for proc in (dead, live):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
