"""`ingest bench`: how fast the whole ingest loop goes here, and what holds it back.

In the spirit of ``azcopy bench``: generates synthetic images, starts the
built-in emulator in its own process (or targets a real endpoint with
``--base-url``), runs the engine in another process, and reports files/s,
MiB/s, API and PUT latency, URL queueing against lifetime, re-signs, 429s,
client CPU and memory, then a one-line verdict naming the bottleneck.
``--reference`` replaces the emulator with the free-running reference
(`ingest.bench.reference`: nginx, a minimal signer, a bare loop beside the
engine) and adds the engine's share of that ceiling.

Exit codes: 0 the run finished with every file done; 1 some files failed
(or, with ``--reference``, the reference could not run or its sink missed
objects); 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 10**6, "mb": 10**6}
_UNITS |= {"mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30}


def parse_size(text: str) -> int:
    """``65536``, ``64KiB``, ``16MiB``, ``1.5MB`` → bytes (KiB/MiB binary, KB/MB decimal)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 65536, 64KiB, 16MiB)")
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size < 64:
        raise argparse.ArgumentTypeError(f"file size must be at least 64 bytes, got {text!r}")
    return size


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip().lower() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in ("png", "jpeg", "webp")]
    if bad or not kinds:
        raise argparse.ArgumentTypeError("kinds: a comma-separated list of png, jpeg, webp")
    return kinds


def register(sub: Any) -> None:
    from ingest.cli.options import (
        add_provider_flags,
        fault_plan,
        positive_int,
        positive_seconds,
    )
    from ingest.providers import PROVIDER_NAMES

    p = sub.add_parser(
        "bench",
        help="benchmark the whole upload loop on this machine (emulator by default)",
        description=(
            "Generate synthetic images, upload them through the engine to the built-in "
            "emulator (in its own process) or to --base-url, and report throughput, "
            "latency, lease use, throttling, client CPU and memory, and the bottleneck."
        ),
        epilog="exit codes: 0 every file done, 1 some files failed (with --reference: or the "
        "reference could not run), 2 bad usage",
    )
    p.add_argument("--provider", default="novita", choices=PROVIDER_NAMES)
    p.add_argument("--count", type=positive_int, default=1000, help="files (default: 1000)")
    p.add_argument(
        "--size", type=parse_size, default=64 * 1024, help="bytes per file (default: 64KiB)"
    )
    p.add_argument("--kinds", type=_kinds, default=("png", "jpeg", "webp"), help="png,jpeg,webp")
    p.add_argument("--put-concurrency", type=positive_int, help="concurrent uploads")
    p.add_argument("--api-concurrency", type=positive_int, help="concurrent API calls")
    p.add_argument("--api-rate", type=float, help="API calls per second (0: until throttled)")
    p.add_argument(
        "--put-transport",
        choices=("lean", "aiohttp"),
        help="the engine's HTTP client of uploads and API calls (default: lean, as `ingest run`)",
    )
    p.add_argument(
        "--lifetime",
        type=positive_seconds,
        default=120.0,
        help="emulator URL lifetime, s (default: 120)",
    )
    p.add_argument(
        "--faults", type=fault_plan, default="", help="emulator fault plan, e.g. api.rate=200"
    )
    p.add_argument(
        "--stock-emulator",
        action="store_true",
        help="use the emulator's stock storage route (hashes every body) instead of the fast path",
    )
    p.add_argument(
        "--base-url",
        help="benchmark a real endpoint instead of the emulator (uploads real files there; "
        "the provider's API key variable must be set)",
    )
    p.add_argument(
        "--reference",
        action="store_true",
        help="instead of the emulator: nginx as the storage and a minimal signer as the "
        "provider's API, with a bare sign+PUT loop run beside the engine as the ceiling; "
        "reports the engine's share of it (needs nginx: installed with apt-get as root)",
    )
    p.add_argument(
        "--rounds",
        type=positive_int,
        help="with --reference: rounds of bare and engine, medians reported (default: 3)",
    )
    p.add_argument(
        "--dir", type=Path, help="generate the images here (default: a temporary folder)"
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_provider_flags(p, skip=("base_url",))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ingest.bench.runner import BenchOptions, bench_settings, render, run_bench
    from ingest.cli.options import provider_flags
    from ingest.errors import ConfigError

    if (args.base_url or args.reference) and (args.faults or args.stock_emulator):
        print("ingest bench: --faults and --stock-emulator need the emulator", file=sys.stderr)
        return 2
    if args.reference and args.base_url:
        print("ingest bench: --reference runs its own endpoint: drop --base-url", file=sys.stderr)
        return 2
    if args.rounds and not args.reference:
        print("ingest bench: --rounds applies to --reference runs", file=sys.stderr)
        return 2
    try:
        settings = bench_settings(
            args.provider, provider_flags(args, args.provider), emulator=not args.base_url
        )
    except ConfigError as exc:
        print(f"ingest bench: error: {exc}", file=sys.stderr)
        return 2
    options = BenchOptions(
        provider=args.provider,
        count=args.count,
        size=args.size,
        kinds=args.kinds,
        put_concurrency=args.put_concurrency,
        api_concurrency=args.api_concurrency,
        api_rate=args.api_rate,
        put_transport=args.put_transport,
        lifetime_s=args.lifetime,
        faults=args.faults,
        base_url=args.base_url,
        fast_emulator=not args.stock_emulator,
        workdir=args.dir,
        settings=settings,
    )
    if not args.json:
        where = args.base_url or "the built-in emulator (nothing leaves this machine)"
        if args.reference:
            where = "an nginx sink and a minimal signer on loopback, beside a bare loop"
        print(
            f"ingest bench: {args.count} synthetic images to {where}; {os.cpu_count()} cores",
            file=sys.stderr,
        )
    try:
        if args.reference:
            from ingest.bench.reference import DEFAULT_ROUNDS, run_reference

            report = run_reference(options, args.rounds or DEFAULT_ROUNDS)
        else:
            report = run_bench(options)
    except RuntimeError as exc:
        print(f"ingest bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        import orjson

        sys.stdout.write(orjson.dumps(report).decode() + "\n")
    else:
        print(render(report))
    problems = (report.get("reference") or {}).get("problems")
    return 0 if report["result"]["done"] == args.count and not problems else 1
