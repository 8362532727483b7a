"""The one-line verdict of `ingest bench`: which resource set the pace.

Rules, first match wins (thresholds are shares of the run's wall time):

1. the emulator itself: it used ≥ 85 % of a core (it is single-threaded), or
   client and emulator together filled the machine and the emulator used more;
2. provider rate limit: ≥ 5 answers of 429 per 1,000 files;
3. client CPU: the client's event loop was busy ≥ 70 % of the run, or the
   client process used ≥ 90 % of the machine's cores;
4. storage bandwidth: a PUT takes longer than an API call (the data plane is
   the slow stage), provider API latency the other way round; none when their
   medians are within `SAME_LATENCY` of each other (28.2 ms against 28.1 on a
   loaded machine named storage bandwidth: both were its queues).
"""

from __future__ import annotations

from typing import Any, Literal

Bottleneck = Literal[
    "the emulator itself",
    "provider rate limit",
    "client CPU",
    "storage bandwidth",
    "provider API latency",
]

EMULATOR_CORE = 0.85
THROTTLES_PER_1000 = 5.0
LOOP_BUSY = 0.70
MACHINE_FULL = 0.90
SAME_LATENCY = 0.10  # PUT and API medians this close (of the larger) are one figure: invented


def verdict(report: dict[str, Any], *, cores: int) -> tuple[Bottleneck | None, str]:
    """The bottleneck of a run and why (None: no stage stands out), from a report built by
    `runner.build_report`."""
    client = report["client"]
    wall = max(client["process_wall_s"], 1e-9)
    client_cores = client["cpu_s"] / wall
    emulator = report.get("emulator")
    if emulator is not None:
        emu_cores = emulator["cpu_cores"]
        if emu_cores >= EMULATOR_CORE:
            return (
                "the emulator itself",
                f"the emulator used {emu_cores:.2f} of its one core; "
                "ingest could go faster than this emulator answers",
            )
        if client_cores + emu_cores >= MACHINE_FULL * cores and emu_cores > client_cores:
            return (
                "the emulator itself",
                f"client ({client_cores:.2f} cores) and emulator ({emu_cores:.2f}) filled the "
                f"{cores}-core machine and the emulator took more",
            )
    throttling = report["throttling"]
    if throttling["per_1000_files"] >= THROTTLES_PER_1000:
        return (
            "provider rate limit",
            f"{throttling['per_1000_files']:.0f} answers of 429 per 1,000 files; "
            "the engine paced itself to the provider's allowance",
        )
    if client["loop_busy"] >= LOOP_BUSY or client_cores >= MACHINE_FULL * cores:
        return (
            "client CPU",
            f"the client's event loop was busy {client['loop_busy']:.0%} of the run "
            f"({client['cpu_ms_per_file']:.2f} ms CPU per file)",
        )
    api, put = report["latency_ms"]["api"]["p50"], report["latency_ms"]["put"]["p50"]
    if api is not None and put is not None and abs(put - api) <= SAME_LATENCY * max(put, api):
        return (
            None,
            f"no stage stands out: a PUT takes {put:.1f} ms at the median and an API call "
            f"{api:.1f} ms, the same within {SAME_LATENCY:.0%}, and the client had CPU to spare",
        )
    if put is not None and (api is None or put >= api):
        return (
            "storage bandwidth",
            f"a PUT takes {put:.1f} ms at the median against {api or 0:.1f} ms for an API call, "
            "and the client had CPU to spare",
        )
    return (
        "provider API latency",
        f"an API call takes {api or 0:.1f} ms at the median against {put or 0:.1f} ms for a "
        "PUT; more --api-concurrency may help",
    )
