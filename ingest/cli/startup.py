"""The cyclic garbage collector paused over an upload command's start-up.

Owns `pause` (called by `entry` before `ingest run` imports and wires anything)
and `resume` (called where the start-up ends, before the long part of every
path: the engine's loop and the journal's replay, a dry run's preview, a
coordinated worker).

How it works: a run's start-up makes ~30,000 objects that live as long as the
process (modules, classes, functions, the run's wiring). CPython's collector,
started every 700 net allocations, walked them ~60 times in a 1-file run,
~27 ms of its ~450 ms of CPU, and found next to nothing (import creates few
cycles that die). `pause` disables it; `resume` moves every object alive by then
to the permanent generation (`gc.freeze`), which no later collection walks,
and enables it again, so the upload's collections see only the upload's
objects.

Invariants: `resume` is idempotent and a no-op unless `pause` ran; a library
caller of `ingest.open_upload` is never paused (only the `ingest` command
pauses). What start-up leaves as cyclic garbage (a few classes that
`dataclass(slots=True)` replaced) stays frozen, bounded by the start-up.
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
