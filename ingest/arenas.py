"""The C allocator's arenas: at most `ARENAS` for the whole process (glibc only).

Owns `limit`, called once by the `ingest` command before it starts a thread.

How it works: glibc's malloc gives each thread that allocates while another
holds an arena a new arena of its own, up to eight per core, and each keeps
the memory its thread freed for that thread (a 64 MiB heap reserved, the
pages touched kept). ingest's threads are the manifest reader, the loop's
reader threads (`offloop`) and the converter feeders: each allocates image
bytes of its own (a Parquet row, a file's chunk), so each arena grows to the
largest burst it served and keeps it. `mallopt(M_ARENA_MAX, 2)` (the glibc
manual, "Memory Allocation Tunables": ``glibc.malloc.arena_max``; the same
limit as ``MALLOC_ARENA_MAX=2``) makes the threads share two arenas. Measured
on a run of 1,000 x 1 MiB Parquet rows (`benchmarks/README.md`, the streamed
Parquet reader): peak RSS 193-195 MiB -> 164-167 with the variable; threads
wait on an arena's lock a little more, which the same benchmark does not show
in CPU a file.

Invariants: a no-op where the C library is not glibc (musl, macOS, Windows)
or where the user set ``MALLOC_ARENA_MAX`` or ``GLIBC_TUNABLES`` themselves
(theirs wins); never raises.
"""

from __future__ import annotations

import os

ARENAS = 2
M_ARENA_MAX = -8  # glibc's malloc.h


def limit(arenas: int = ARENAS) -> bool:
    """Cap glibc's arenas at `arenas`; True if set (False: not glibc, or the user's own)."""
    if "MALLOC_ARENA_MAX" in os.environ or "GLIBC_TUNABLES" in os.environ:
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):  # type: ignore[union-attr]
            return False
    except (ValueError, OSError, AttributeError):  # not a glibc system (no such name)
        return False
    import ctypes  # here: ~5 ms of start-up that only the commands calling this pay

    try:
        return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas))  # the process's own libc
    except (OSError, AttributeError):
        return False
