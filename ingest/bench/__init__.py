"""Benchmarks of the whole ingest loop: `ingest bench` and the pieces of `benchmarks/`.

`runner.run_bench` generates images (`dataset`), starts the emulator in its own
process with a storage fast path (`emulator`), runs the engine in another
process with a timing wrapper around the provider (`client`, `timing`), and
reports throughput, latencies, lease use, throttling, client CPU and memory,
and the bottleneck (`verdict`). `reference.run_reference` (``--reference``)
replaces the emulator with the free-running reference: an nginx PUT sink
(`sink`), a minimal signer speaking each provider's API (`signer`), and the
bare loop (`bare`) run beside the engine as the ceiling; `procs` starts and
stops those child processes. Nothing here is imported by `ingest run`.
"""

from __future__ import annotations
