"""Scale-out: N workers share one manifest, one rate budget and one record, on Redis.

Owns the coordinated run (`ingest run --coordinator redis://HOST:PORT/DB`),
one concept per module: `connection` (the client, its checks, calls that
survive cancellation), `names` (every key of a run and of a budget), `plan`
(chunks of manifest lines in a stream, planned once, and the run's binding),
`lease` (taking, renewing, reclaiming and acknowledging chunks), `record`
(what is done or failed, by manifest line), `exporting` (a run's export from
its record and the current manifest), `budget` (the shared GCRA and
Retry-After pause, and the pacer that uses them), `pushed` (the pause
pushed to every worker by pub/sub when no rate is set), `entries` (the manifest
read chunk by chunk) and `worker` (one worker's loop around the unchanged
engine). The design, and the Redis pitfalls it avoids, are in README.md ("Scaling out").

Importing this package imports nothing of redis; `connection` does. Its
defaults live here, so the CLI's flags can name them without importing more.
"""

LEASE_S = 30.0  # a chunk's lease, seconds (renewed every third of it)
# Entries a chunk holds (the design's "about 1,000 lines"): each chunk costs ~30-60 ms of CPU
# to start (a lease, the record read, a scratch journal, a new engine; benchmarks/README.md),
# so 200 cost a worker 10-25 % more CPU per file than one process without a coordinator.
CHUNK_LINES = 1000
