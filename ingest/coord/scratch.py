"""A worker's scratch folder: its chunks' journals, and the folders dead workers left.

Owns where a coordinated worker keeps the local journal of the chunk in hand
(its write-ahead log; what matters is shipped to Redis). `scratch_folder`
makes ``$TMPDIR/ingest-worker-*`` and holds an exclusive `flock` on a
``.owner`` file inside it for as long as the worker lives; first it sweeps
the folders of workers that died without removing theirs (a SIGKILL, a lost
machine's restart): a folder whose ``.owner`` lock can be taken has no live
owner, and its journals are worth nothing since their outcomes were shipped
or will be redone from the run's record.

Invariant: a folder is removed only while its lock is held by the remover,
and a folder shows the prefix only once its owner holds the lock, so a live
worker's folder is never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

PREFIX = "ingest-worker-"
OWNER = ".owner"


def _held(folder: Path, *, create: bool = False) -> int | None:
    """An fd holding `folder`'s owner lock, or None if a live process holds it (or it has none)."""
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(folder / OWNER, flags, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def sweep(base: Path) -> int:
    """Remove the scratch folders under `base` that no live worker holds; how many."""
    removed = 0
    with contextlib.suppress(OSError):
        for folder in base.glob(f"{PREFIX}*"):
            if not folder.is_dir() or folder.is_symlink():
                continue
            fd = _held(folder)
            if fd is None:
                continue
            try:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
            finally:
                os.close(fd)
    return removed


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    """A new scratch folder, locked for this worker's life, after sweeping dead ones."""
    base = Path(tempfile.gettempdir())
    sweep(base)
    # Locked before it is visible under PREFIX, so no sweep can take a new folder for a dead one's.
    new = Path(tempfile.mkdtemp(prefix=f".{PREFIX}new-", dir=base))
    fd = _held(new, create=True)
    folder = base / (PREFIX + new.name.removeprefix(f".{PREFIX}new-"))
    os.rename(new, folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if fd is not None:
            os.close(fd)
