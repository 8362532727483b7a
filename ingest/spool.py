"""Spool files a killed run cannot leave behind: each has no name from the moment it exists.

Owns `Spool`, the one-file-per-item-in-flight store of `ingest.remote` (a
fetched body of unknown length) and `ingest.convert` (a converted image):
`create` makes a file for an item's key, `forget` lets it go once the item is
journaled, `close` lets every one go at the end of the run.

How it works: a file is opened with ``O_TMPFILE`` in the temporary folder
(`tempfile.gettempdir()`, so ``TMPDIR``), which makes it without a name,
where the OS and file system have it (Linux ≥ 3.11: tmpfs, ext4, xfs,
btrfs); elsewhere `mkstemp` makes it and it is unlinked at once. The
descriptor is kept, and the file is read through its ``/proc/self/fd/N``
path: opening that path opens the same file afresh (its own offset), so
every reader of the data path (`storage._stream`'s ``pread``, a multipart
range, Scenario's base64 body, Pillow) reads it as it reads a local file.
The kernel frees the bytes when the last descriptor closes, which a SIGKILL
does too: no ``/tmp/ingest-*`` stays behind. Where there is no
``/proc/self/fd`` (macOS, BSD) files are named in a private folder as
before, deleted by `forget`, `close` and the interpreter's exit, but not by a
SIGKILL.

Invariants: a path `create` returned is valid until `forget` of its key or
`close` (after that its descriptor number may name another file: only the
in-flight item's readers hold it); descriptors are close-on-exec; thread-safe.
"""

from __future__ import annotations

import errno
import os
import tempfile
import threading
from pathlib import Path

_PROC_FD = Path("/proc/self/fd")
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT})


class Spool:
    """Anonymous files by item key, for one run (see the module)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix  # of a named file's folder, where files must have names
        self.anonymous = _PROC_FD.is_dir()
        self._fds: dict[str, int] = {}
        self._paths: dict[str, Path] = {}
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._tmpfile = hasattr(os, "O_TMPFILE")
        self._lock = threading.Lock()

    def create(self, key: str) -> tuple[int, Path]:
        """A new empty file for `key` (any earlier one let go): a read-write descriptor and the
        path its readers open."""
        self.forget(key)
        fd = self._anonymous() if self.anonymous else None
        if fd is not None:
            path = _PROC_FD / str(fd)
        else:
            with self._lock:
                if self._folder is None:
                    self._folder = tempfile.TemporaryDirectory(prefix=self.prefix)
                folder = self._folder.name
            fd, name = tempfile.mkstemp(dir=folder)
            path = Path(name)
        with self._lock:
            self._fds[key], self._paths[key] = fd, path
        return fd, path

    def write(self, key: str, data: bytes) -> Path:
        """A file for `key` holding `data`: the path its readers open."""
        fd, path = self.create(key)
        write_all(fd, data)
        return path

    def _anonymous(self) -> int:
        """A file without a name in the temporary folder: ``O_TMPFILE``, else made and unlinked."""
        folder = tempfile.gettempdir()
        if self._tmpfile:
            try:
                return os.open(folder, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                if exc.errno not in _NO_TMPFILE:
                    raise
                self._tmpfile = False  # this file system has none: unlink at once instead
        fd, name = tempfile.mkstemp(dir=folder, prefix=self.prefix)
        os.unlink(name)
        return fd

    def forget(self, key: str) -> None:
        """`key`'s file goes (its item is journaled done or failed)."""
        with self._lock:
            fd = self._fds.pop(key, None)
            path = self._paths.pop(key, None)
        if fd is None:
            return
        os.close(fd)
        if not self.anonymous and path is not None:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Every file goes (the end of the run)."""
        with self._lock:
            keys = list(self._fds)
        for key in keys:
            self.forget(key)
        with self._lock:
            folder, self._folder = self._folder, None
        if folder is not None:
            folder.cleanup()

    def __len__(self) -> int:
        """Files held now."""
        return len(self._fds)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """All of `data` to `fd` (a write may take less than it was given)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
