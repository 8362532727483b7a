"""Progress events of a run, for displays, logs and callers of the library.

`Observer` and `ItemDone` are the engine's own (`ingest.engine.outcomes`),
re-exported here and from `ingest`: one definition, so the engine, the CLI's
display and a library caller's observer cannot drift apart. An exception
raised in an event stops the run as `abort` does and is raised, as itself,
by `Upload.wait` and `upload`.
"""

from __future__ import annotations

from ingest.engine.outcomes import ItemDone, Observer

__all__ = ["ItemDone", "Observer"]
