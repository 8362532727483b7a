"""Benchmarks of the whole ingest loop: `ingest bench` and the pieces of `benchmarks/`.

`runner.run_bench` generates images (`dataset`), starts the emulator in its own
process with a storage fast path (`emulator`), runs the engine in another
process with a timing wrapper around the provider (`client`, `timing`), and
reports throughput, latencies, lease use, throttling, client CPU and memory,
and the bottleneck (`verdict`). Nothing here is imported by `ingest run`.
"""

from __future__ import annotations
