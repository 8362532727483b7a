"""Which event loop the processes ingest starts run on.

Owns the one choice every entry point makes (`ingest run`, `ingest sim`, the
bench client and the benchmark emulator): uvloop when it is installed (a
dependency wherever it has wheels, so `pip install -e .` brings it), else
asyncio's own loop. Library callers of ingest keep
whatever loop they already run; only code that calls `anyio.run` asks here.

How it works: `backend_options()` is passed to `anyio.run(...,
backend="asyncio", backend_options=...)`; uvloop is imported, not merely
looked up, so a broken install falls back instead of failing the run.
"""

from __future__ import annotations


def backend_options() -> dict[str, bool]:
    """anyio's asyncio backend options: ``{"use_uvloop": True}`` if uvloop imports, else none."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}
