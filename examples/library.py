"""Upload the sample images from Python, then read back what the journal recorded.

    python examples/library.py [JOURNAL]

The run `ingest run examples/manifest.jsonl --provider novita --sim` does,
through the library: `ingest.open_upload` to watch the run as it goes,
`ingest.status` and `ingest.export` to read its journal afterwards. It uploads
to the built-in emulator (`sim=True`): no key, nothing leaves the machine.
Drop `sim=True` and export NOVITA_API_KEY to upload for real.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import ingest
from ingest.errors import TransferError

MANIFEST = Path(__file__).with_name("manifest.jsonl")


class Progress(ingest.Observer):
    """Prints each item as it lands or fails (the other events keep their no-op default)."""

    def item_done(self, done: ingest.ItemDone) -> None:
        print(f"done    {done.key:<10} {done.size:>7} bytes  -> {done.landed.remote_id}")

    def item_failed(self, key: str, line: int, err: TransferError) -> None:
        print(f"failed  {key} (line {line}): {err}")


async def main(journal: Path) -> int:
    async with ingest.open_upload(
        MANIFEST,
        provider="novita",
        sim=True,
        journal=journal,
        observer=Progress(),
        put_concurrency=4,  # any [run] or [providers.novita] key
    ) as run:
        result = await run.wait()  # or run.drain(), run.abort(), run.snapshot()
    print(f"{result.done} of {result.total} done, stop reason {result.stop_reason}")

    status = ingest.status(result.journal)  # what `ingest status` prints
    print(f"journal {status.journal}: {status.done} done over {status.runs} run(s)")
    for row in ingest.export(result.journal):  # what `ingest export` prints
        print(f"  {row['key']}  {row['remote_id']}  {row.get('caption', '')}")
    return 0 if result.complete else 1


if __name__ == "__main__":
    where = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "novita.journal"
    sys.exit(asyncio.run(main(where)))
