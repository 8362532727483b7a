"""Packed sources and --convert against the free-running reference: issue 15's speed and memory bars.

    python benchmarks/sources.py                         # all three parts (~25 min loaded)
    python benchmarks/sources.py --part speed --count 10000 --rounds 5
    python benchmarks/sources.py --part memory --run-sizes 2000,20000 --validate-sizes 2000,20000,100000
    python benchmarks/sources.py --part memory --member-size 65536 --kinds parquet --validate-sizes 2000
    python benchmarks/sources.py --part memory --parquet-layouts 65536:100,65536:500,1048576:100 \
        --run-sizes 1000 --validate-sizes 1000
    python benchmarks/sources.py --part convert --convert-count 200
    python benchmarks/sources.py --part convert --convert-count 1000 --rounds 3 \
        --convert-extra "1 process=--convert-workers 1" --other-ingest /path/to/old/bin/ingest

Every measured client is `ingest run --provider novita` (the `ingest` script
beside this Python) uploading to the reference's nginx sink through its
signer (`ingest.bench.sink`, `ingest.bench.signer`, as `reference.py`), so
neither server sets the pace; their CPU is recorded with every run.

- **speed**: COUNT × 64 KiB images (the reference's data set) as loose files
  (a JSON lines manifest), one uncompressed WebDataset tar shard, one stored
  zip and one Parquet file (`{bytes, path}` image column, row groups of 500);
  each round runs loose, X, X, loose, Y, Y, loose, ... (ABBA pairs: the
  machine's drift falls on both sides of each ratio; the order of X, Y, Z
  rotates by round), 5 rounds by default; files/s and CPU per file are
  medians of the runs, the ratios against loose files (bar: ≥ 0.9× files/s)
  medians of the pairs' ratios, each pair against the loose runs either side.
- **memory**: tar shards and Parquet files of growing size (4 KiB members, or
  ``--member-size``):
  peak RSS of `ingest run` (uploading all of them) and of `ingest validate`
  (bar: under 150 MiB at any size); ``--parquet-layouts`` runs Parquet files
  of several image sizes and row-group sizes (issue 15's: 64 KiB images in
  row groups of 100, as `datasets` writes, and of 500, one page a group;
  1 MiB images in groups of 100), each saved as its own result.
- **convert**: a mixed folder (70 % JPEG/PNG, 30 % TIFF/BMP/HEIC, real
  Pillow-made images) with and without ``--convert`` (and any ``--convert-extra``
  flags or ``--other-ingest`` install), in a rotating order: files/s of all,
  files/s of the JPEG/PNG alone (from the ``--json`` events' times: the uploads
  must not be starved by the conversions), per round against the run without
  ``--convert``, the client's cores, and, sampled from /proc (`procstat`), the
  Pillow cores over the conversion span: the converter processes' CPU (or,
  for an install converting in threads, the client's threads but the event
  loop's) over the time it went from 1 % to 99 % of its total, with the
  event loop's cores over the same span and the peak RSS of the client and
  its converters together.
  ``--idle-spinners N`` and ``--idle-pillow N`` add control runs without
  ``--convert`` beside N SCHED_IDLE busy loops, or N loops doing the
  converters' Pillow work with no ingest code.

Every run is checked: the sink must hold one object per uploaded file and
the summary must count them done. The load average before each run is
recorded (the machine is shared). Results: `$TMPDIR/ingest-sources-PART.json`
(``--save``: the tracked `benchmarks/results/sources-PART.json`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness import DATA, SAVE_HELP, dataset, ingest_summary, median, record
from procstat import Sampler, span
from reference import KEY, compile_ingest, ingest_command, terminate_cleanly, tool_versions

from ingest.bench.dataset import KINDS, SUFFIXES, image_bytes
from ingest.bench.procs import ensure_tool
from ingest.bench.runner import run_measured
from ingest.bench.signer import SignerProcess
from ingest.bench.sink import NGINX_PACKAGE, NginxSink

SIZE = 64 * 1024
SOURCES = ("loose", "tar", "zip", "parquet")
ROW_GROUP = 500
BAR_SPEED, BAR_RSS_MIB = 0.9, 150.0
MIXED_SIZE = (1600, 1200)  # pixels: 2 MP, a conversion costs tens of ms
FORMATS = {"heic": "HEIF"}  # Pillow format names (pillow-heif saves HEIC as "HEIF")


@dataclass
class Run:
    """One measured `ingest` process."""

    what: str
    round: int
    wall_s: float
    cpu_s: float
    rss_mib: float
    sink_cores: float
    signer_cores: float
    load_1m: float
    done: int
    ok: bool
    kept_files_per_s: float | None = None  # convert: the JPEG/PNG alone
    note: str = ""
    # convert, sampled (procstat): the Pillow side over its span, the event loop over it
    pillow_cores: float | None = None
    pillow_span_s: float | None = None
    pillow_cpu_s: float | None = None
    pillow_in: str = ""  # "processes" or "threads"
    loop_cores: float | None = None
    tree_rss_mib: float | None = None  # the client and its converter processes together
    # from the start event to the last JPEG/PNG done: the Pillow side's cores, the loop's, and
    # the loop's time runnable but waiting for a CPU (per second)
    kept_pillow_cores: float | None = None
    kept_loop_cores: float | None = None
    kept_loop_wait: float | None = None
    vs_plain_kept: float | None = None  # this round's JPEG/PNG files/s × the plain run's
    # the JPEG/PNG pace between the 10th and the 90th percentile of their done times (no
    # start-up, no tail), against the plain run's; when the first of them was done (s)
    kept_mid_per_s: float | None = None
    vs_plain_mid: float | None = None
    kept_first_s: float | None = None


# -- data ---------------------------------------------------------------------------------


def _cached(path: Path, build: Any) -> Path:
    """`path`, built by `build(tmp_path)` once and renamed into place."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        build(partial)
        partial.rename(path)
    return path


def _members(paths: Sequence[Path]) -> Any:
    for path in paths:
        yield f"s/{path.stem}{path.suffix}", path.read_bytes()


def write_tar(target: Path, members: Any) -> None:
    with tarfile.open(target, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
            tar.addfile(info, io.BytesIO(data))


def write_zip(target: Path, members: Any) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members:
            zf.writestr(name, data)


def write_parquet(target: Path, members: Any, row_group: int = ROW_GROUP) -> None:
    """`datasets`' Image feature layout: an ``image`` struct column ``{bytes, path}``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())]))])
    struct = schema.field("image").type

    def flush(writer: Any, batch: list[dict[str, Any]]) -> None:
        writer.write_table(pa.table({"image": pa.array(batch, type=struct)}), row_group)
        batch.clear()

    with pq.ParquetWriter(target, schema) as writer:
        batch: list[dict[str, Any]] = []
        for name, data in members:
            batch.append({"bytes": data, "path": name.rsplit("/", 1)[-1]})
            if len(batch) == row_group:
                flush(writer, batch)
        if batch:
            flush(writer, batch)


WRITERS = {"tar": write_tar, "zip": write_zip, "parquet": write_parquet}


def packed(paths: Sequence[Path], root: Path) -> dict[str, Path]:
    """The same images as one tar, one stored zip and one Parquet file (made once)."""
    return {
        kind: _cached(root / f"shard.{kind}", lambda p, k=kind: WRITERS[k](p, _members(paths)))
        for kind in WRITERS
    }


def small_members(count: int, size: int = 4096) -> Any:
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        yield f"s/{index:07d}{SUFFIXES[kind]}", image_bytes(kind, size, index)


def mixed_folder(count: int) -> tuple[Path, int]:
    """`count` real images: 70 % JPEG/PNG, 30 % TIFF/BMP/HEIC; the folder and its kept count."""
    from PIL import Image

    root = DATA / f"mixed-{count}-v2"
    kinds = ["jpeg", "png"] * 35 + ["tiff", "bmp", "heic"] * 10
    random.Random(15).shuffle(kinds)  # mixed through the folder, as a camera roll is
    if not (root / ".complete").exists():
        import pillow_heif

        pillow_heif.register_heif_opener()
        root.mkdir(parents=True, exist_ok=True)
        rng = random.Random(15)
        base = Image.effect_noise(MIXED_SIZE, 48).convert("RGB")
        for index in range(count):
            kind = kinds[index % len(kinds)]
            tint = Image.new("RGB", base.size, tuple(rng.randrange(256) for _ in range(3)))
            image = Image.blend(base, tint, 0.5)
            ext = {"jpeg": "jpg"}.get(kind, kind)
            image.save(root / f"img-{index:05d}.{ext}", format=FORMATS.get(kind, kind.upper()))
        (root / ".complete").touch()
    kept = sum(1 for i in range(count) if kinds[i % len(kinds)] in ("jpeg", "png"))
    return root, kept


# -- measuring ----------------------------------------------------------------------------


class Client:
    """`ingest run` / `ingest validate` measured against one sink and signer."""

    def __init__(self, sink: NginxSink, signer: SignerProcess, tmp: Path) -> None:
        self.sink, self.signer, self.tmp = sink, signer, tmp
        self.env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        self.env["NOVITA_API_KEY"] = KEY

    def run(
        self,
        what: str,
        round_: int,
        source: Path,
        expect: int,
        *extra: str,
        script: str | None = None,
        sample: bool = False,
        beside: Sequence[list[str]] = (),
    ) -> Run:
        """`beside`: commands run beside the client (`spinners`: SCHED_IDLE controls)."""
        journal = self.tmp / "run.journal"
        for leftover in self.tmp.glob("run.journal*"):
            leftover.unlink()
        self.sink.clear()
        args = [*ingest_command(script), "run", str(source), "--provider", "novita",
                "--base-url", self.signer.base_url, "--journal", str(journal), "--json",
                *extra]  # fmt: skip
        load = os.getloadavg()[0]
        sink0, signer0 = self.sink.cpu_s(), self.signer.cpu_s()
        samplers: list[Sampler] = []
        started = (lambda pid: samplers.append(Sampler(pid))) if sample else None
        with spinners(beside):
            out, err, usage = run_measured(args, env=self.env, started=started)
        sink_s, signer_s = self.sink.cpu_s() - sink0, self.signer.cpu_s() - signer0
        done = int(ingest_summary(out).get("done") or 0)
        stored = self.sink.stored()
        ok = usage.status in (0, 1) and done == expect == stored  # 1: rejected items (convert)
        note = "" if ok else f"exit {usage.status}, {done} done, {stored} stored: {err[-300:]}"
        wall = usage.wall_s
        run = Run(what, round_, wall, usage.cpu_s, usage.peak_rss_bytes / 2**20, sink_s / wall,
                  signer_s / wall, load, done, ok, _kept_rate(out), note)  # fmt: skip
        for sampler in samplers:
            _pillow_share(run, sampler, _kept_phase(out))
        if (found := _kept_events(out)) is not None and len(found[1]) >= 10:
            times = sorted(found[1])
            low, high = len(times) // 10, len(times) * 9 // 10
            run.kept_first_s = times[0] - found[0]
            run.kept_mid_per_s = (high - low) / max(times[high] - times[low], 1e-6)
        return run

    def validate(self, what: str, source: Path) -> Run:
        args = [*ingest_command(), "validate", str(source), "--provider", "novita"]
        load = os.getloadavg()[0]
        _, err, usage = run_measured(args, env=self.env)
        ok = usage.status == 0
        return Run(what, 1, usage.wall_s, usage.cpu_s, usage.peak_rss_bytes / 2**20, 0.0, 0.0,
                   load, 0, ok, note="" if ok else err[-300:])  # fmt: skip


# Controls for --convert: what a busy core costs the uploads when no ingest code runs on it (the
# processes are not the client's children: the sampler does not see them). `--idle-spinners`: a
# busy loop; `--idle-pillow`: the converters' own work (the folder's TIFF, BMP and HEIC images
# decoded, turned upright and encoded as JPEG at quality 90 by Pillow, over and over) with no
# ingest code, so that what a conversion costs the uploads beyond Pillow's work shows apart.
_IDLE = "import os; os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
_SPIN = _IDLE + "while True: pass"
_PILLOW = (
    _IDLE
    + """
import io, itertools, sys
from pathlib import Path
import pillow_heif
from PIL import Image, ImageOps
pillow_heif.register_heif_opener()
files = sorted(p for p in Path(sys.argv[1]).iterdir() if p.suffix in (".tiff", ".bmp", ".heic"))
for path in itertools.cycle(files):
    with Image.open(path) as image:
        ImageOps.exif_transpose(image).convert("RGB").save(io.BytesIO(), "JPEG", quality=90)
"""
)


@contextlib.contextmanager
def spinners(commands: Sequence[list[str]]) -> Any:
    """`commands` running while within (SCHED_IDLE, as a converter process would run)."""
    procs = [subprocess.Popen(command) for command in commands]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _pillow_share(run: Run, sampler: Sampler, kept: tuple[float, float] | None) -> None:
    """`run`'s Pillow cores over the conversion span and the uploads' phase, from `sampler`."""
    samples = sampler.stop()
    if not samples:
        return
    run.tree_rss_mib = max(s.rss_bytes for s in samples) / 2**20
    series, run.pillow_in = (
        ("children_s", "processes") if sampler.converters else ("threads_s", "threads")
    )
    found = span(samples, series)
    if found is not None:
        run.pillow_cores, run.pillow_span_s = found["cores"], found["span_s"]
        run.pillow_cpu_s, run.loop_cores = found["cpu_s"], found["loop_cores"]
    within = [s for s in samples if kept and kept[0] <= s.t <= kept[1]]
    if len(within) >= 2 and (length := within[-1].t - within[0].t) > 0:
        first, last = within[0], within[-1]
        run.kept_pillow_cores = (getattr(last, series) - getattr(first, series)) / length
        run.kept_loop_cores = (last.main_s - first.main_s) / length
        run.kept_loop_wait = (last.main_wait_s - first.main_wait_s) / length


def _kept_events(out: str) -> tuple[float, list[float]] | None:
    """The run's ``start`` time and its JPEG/PNG ``item_done`` times (the ``--json`` events)."""
    start, kept = None, []
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if event.get("event") == "start":
            start = event["t"]
        elif event.get("event") == "item_done" and event["key"].endswith((".jpg", ".png")):
            kept.append(event["t"])
    return None if start is None or not kept else (start, kept)


def _kept_phase(out: str) -> tuple[float, float] | None:
    """From the run's start to its last JPEG/PNG done."""
    found = _kept_events(out)
    return None if found is None else (found[0], max(found[1]))


def _kept_rate(out: str) -> float | None:
    """JPEG/PNG items done per second from the run's start."""
    found = _kept_events(out)
    if found is None:
        return None
    start, kept = found
    return len(kept) / max(max(kept) - start, 1e-6)


def _show(run: Run, files: int) -> None:
    print(
        f"  {run.what:24s} round {run.round} {files / run.wall_s:8.1f} files/s "
        f"{run.cpu_s * 1000 / files:7.3f} ms CPU/file {run.rss_mib:5.0f} MiB "
        f"sink {run.sink_cores:.2f} signer {run.signer_cores:.2f} load {run.load_1m:.1f}"
        + ("" if run.kept_files_per_s is None else f" JPEG/PNG {run.kept_files_per_s:.1f}/s")
        + (
            ""
            if run.pillow_cores is None
            else f" Pillow {run.pillow_cores:.2f} cores ({run.pillow_in}) over {run.pillow_span_s:.1f} s,"
            f" loop {run.loop_cores:.2f}, client+converters {run.tree_rss_mib:.0f} MiB"
        )
        + (
            ""
            if run.kept_loop_cores is None
            else f"; while JPEG/PNG: Pillow {run.kept_pillow_cores:.2f} loop {run.kept_loop_cores:.2f}"
            f" (waiting for a CPU {run.kept_loop_wait:.2f})"
        )
        + ("" if run.ok else f"  FAILED {run.note}"),
        file=sys.stderr,
    )


def _medians(samples: Sequence[Run]) -> dict[str, Any]:
    """Medians of a client's good runs (files: those it uploaded)."""
    good = [r for r in samples if r.ok]
    row: dict[str, Any] = {"runs": len(samples), "ok": len(good)}
    if good:
        kept = [r.kept_files_per_s for r in good if r.kept_files_per_s is not None]
        row |= {
            "done": good[0].done,
            "files_per_s": median([r.done / r.wall_s for r in good]),
            "cpu_ms_per_file": median([r.cpu_s * 1000 / r.done for r in good]),
            "client_cores": median([r.cpu_s / r.wall_s for r in good]),
            "peak_rss_mib": max(r.rss_mib for r in good),
            "sink_cores": median([r.sink_cores for r in good]),
            "signer_cores": median([r.signer_cores for r in good]),
            "load_1m": median([r.load_1m for r in good]),
            "kept_files_per_s": median(kept) if kept else None,
        }
        for key in ("pillow_cores", "pillow_span_s", "loop_cores", "vs_plain_kept",
                    "kept_pillow_cores", "kept_loop_cores", "kept_loop_wait", "vs_plain_mid",
                    "kept_first_s"):  # fmt: skip
            found = [getattr(r, key) for r in good if getattr(r, key) is not None]
            row[key] = median(found) if found else None
        rss = [r.tree_rss_mib for r in good if r.tree_rss_mib is not None]
        row["tree_rss_mib"] = max(rss) if rss else None
        row["per_round_vs_plain"] = ", ".join(
            f"{r.vs_plain_kept:.2f}" for r in good if r.vs_plain_kept is not None
        )
    return row


Column = tuple[str, str, str]  # header, row key, format
SPEED_COLUMNS: list[Column] = [
    ("files/s", "files_per_s", ",.0f"), ("CPU ms/file", "cpu_ms_per_file", ".3f"),
    ("peak RSS MiB", "peak_rss_mib", ".0f"), ("sink cores", "sink_cores", ".2f"),
    ("signer cores", "signer_cores", ".2f"), ("load 1m", "load_1m", ".1f"),
    ("× loose files/s", "vs_loose_files_per_s", ".2f"),
    ("× loose CPU/file", "vs_loose_cpu_per_file", ".2f"),
]  # fmt: skip
PAIRED_COLUMNS: list[Column] = [
    *SPEED_COLUMNS[:6],
    ("× loose files/s (median of pairs)", "vs_loose_files_per_s", ".2f"),
    ("× loose CPU/file", "vs_loose_cpu_per_file", ".2f"),
    ("per pair × loose files/s", "pairs", "s"),
]
CONVERT_COLUMNS: list[Column] = [
    ("files done", "done", "d"), ("files/s", "files_per_s", ",.1f"),
    ("JPEG/PNG files/s", "kept_files_per_s", ",.1f"),
    ("× plain JPEG/PNG (median of rounds)", "vs_plain_kept", ".2f"),
    ("per round", "per_round_vs_plain", "s"),
    ("× plain, 10–90 % of them", "vs_plain_mid", ".2f"), ("first JPEG/PNG s", "kept_first_s", ".2f"),
    ("Pillow cores over the span", "pillow_cores", ".2f"), ("span s", "pillow_span_s", ".1f"),
    ("loop cores over it", "loop_cores", ".2f"),
    ("while JPEG/PNG upload: Pillow cores", "kept_pillow_cores", ".2f"),
    ("loop cores", "kept_loop_cores", ".2f"), ("loop waiting for a CPU", "kept_loop_wait", ".2f"),
    ("client cores", "client_cores", ".2f"),
    ("CPU ms/file", "cpu_ms_per_file", ".1f"), ("client+converters peak MiB", "tree_rss_mib", ".0f"),
    ("load 1m", "load_1m", ".1f"),
]  # fmt: skip


def _table(first: str, rows: dict[str, dict[str, Any]], columns: Sequence[Column]) -> None:
    """A Markdown table: one row per client, failed ones marked."""
    print(f"| {first} | " + " | ".join(c[0] for c in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, row in rows.items():
        cells = [
            "failed" if not row["ok"] else "—" if row.get(key) is None else format(row[key], spec)
            for _, key, spec in columns
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


def rotating(names: Sequence[str], rounds: int) -> Any:
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in [*names[shift:], *names[:shift]]:
            yield round_ + 1, name


# -- the three parts ----------------------------------------------------------------------


def paired_order(others: Sequence[str], round_: int, base: str = "loose") -> list[str]:
    """One round's runs: base, X, X, base, Y, Y, base, ... (the others rotated by round).

    Each source's two runs sit between two runs of `base` (ABBA): a drift of the
    machine's speed over those four runs, linear in time, falls on both sides of
    the pair's ratio, where a rotating order of single runs put it on one side.
    """
    shift = round_ % len(others)
    order = [base]
    for name in [*others[shift:], *others[:shift]]:
        order += [name, name, base]
    return order


def pair_ratios(runs: Sequence[Run]) -> dict[str, tuple[float, float]]:
    """Of one round's runs in `paired_order`: for each source, its pair against the two base
    runs around it, as (× base files/s, × base CPU/file); a pair with a failed run is left out."""
    ratios = {}
    for at in range(1, len(runs) - 2, 3):
        before, first, second, after = runs[at - 1 : at + 3]
        if all(r.ok for r in (before, first, second, after)):
            ratios[first.what] = (
                (before.wall_s + after.wall_s) / (first.wall_s + second.wall_s),
                (first.cpu_s + second.cpu_s) / (before.cpu_s + after.cpu_s),
            )
    return ratios


def warm(sources: dict[str, Path], paths: Sequence[Path]) -> None:
    """Read every source's bytes once (the page cache), so no round's first run pays for it."""
    for path in [*paths, *(p for name, p in sources.items() if name != "loose")]:
        with path.open("rb") as fh:
            while fh.read(1 << 20):
                pass


def speed(client: Client, count: int, rounds: int) -> dict[str, Any]:
    paths, manifest, _ = dataset(count, SIZE)
    sources = {"loose": manifest, **packed(paths, manifest.parent / "packed")}
    warm(sources, paths)
    others = [s for s in SOURCES if s != "loose"]
    runs: dict[str, list[Run]] = {s: [] for s in SOURCES}
    per_round: list[dict[str, tuple[float, float]]] = []
    for round_ in range(1, rounds + 1):
        done: list[Run] = []
        for name in paired_order(others, round_ - 1):
            done.append(run := client.run(name, round_, sources[name], count))
            runs[name].append(run)
            _show(run, count)
        per_round.append(pair_ratios(done))
        print("  round " + str(round_) + ": " + ", ".join(
            f"{n} {r[0]:.2f}x files/s {r[1]:.2f}x CPU" for n, r in per_round[-1].items()),
            file=sys.stderr)  # fmt: skip
    rows = {name: _medians(samples) for name, samples in runs.items()}
    rows["loose"] |= {"vs_loose_files_per_s": 1.0, "vs_loose_cpu_per_file": 1.0, "pairs": ""}
    for name in others:
        found = [r[name] for r in per_round if name in r]
        if found:  # the median of the pairs' ratios: the reported figure
            rows[name]["vs_loose_files_per_s"] = median([f for f, _ in found])
            rows[name]["vs_loose_cpu_per_file"] = median([c for _, c in found])
            rows[name]["pairs"] = ", ".join(f"{f:.2f}" for f, _ in found)
            rows[name]["pair_ratios"] = found
    print(f"\nspeed: {count:,} × 64 KiB, {rounds} rounds of ABBA pairs (loose, X, X, loose); "
          "files/s etc. medians of runs, ratios medians of pairs\n")  # fmt: skip
    _table("source", rows, PAIRED_COLUMNS)
    return {"files": count, "file_size": SIZE, "rounds": rounds, "bar": BAR_SPEED, "rows": rows,
            "order": "paired (ABBA)", "per_round": per_round,
            "runs": [asdict(r) for rs in runs.values() for r in rs]}  # fmt: skip


def memory(
    client: Client,
    run_sizes: Sequence[int],
    validate_sizes: Sequence[int],
    size: int = 4096,
    kinds: Sequence[str] = ("tar", "parquet"),
    row_group: int = ROW_GROUP,
) -> dict[str, Any]:
    runs: list[Run] = []
    for members in sorted({*run_sizes, *validate_sizes}):
        for kind in kinds:
            named = f"{members}" if size == 4096 else f"{members}x{size}"
            named += f"-rg{row_group}" if row_group != ROW_GROUP and kind == "parquet" else ""
            shard = DATA / "sources-rss" / f"{named}.{kind}"
            write = write_parquet if kind == "parquet" else WRITERS[kind]
            extra = {"row_group": row_group} if kind == "parquet" else {}
            _cached(shard, lambda p, w=write, n=members, e=extra: w(p, small_members(n, size), **e))
            if members in validate_sizes:
                runs.append(run := client.validate(f"validate {kind} {members:,}", shard))
                _show(run, members)
            if members in run_sizes:
                runs.append(run := client.run(f"run {kind} {members:,}", 1, shard, members))
                _show(run, members)
    print(f"\nmemory: {size:,}-byte members, row groups of {row_group}, one run each\n")
    print("| command | members | wall s | CPU s | peak RSS MiB | load 1m | ok |\n"
          "|---|---:|---:|---:|---:|---:|---|")  # fmt: skip
    for r in runs:
        command, kind, shown = r.what.split(" ")
        print(f"| `ingest {command}` {kind} | {shown} | {r.wall_s:.1f} | {r.cpu_s:.1f} | "
              f"{r.rss_mib:.0f} | {r.load_1m:.1f} | {'yes' if r.ok else 'NO'} |")  # fmt: skip
    worst = max((r.rss_mib for r in runs if r.ok), default=float("nan"))
    print(f"\nlargest peak RSS {worst:.0f} MiB (bar: under {BAR_RSS_MIB:.0f} MiB)")
    return {"bar_mib": BAR_RSS_MIB, "peak_rss_mib": worst, "member_size": size,
            "row_group": row_group, "runs": [asdict(r) for r in runs]}  # fmt: skip


def convert(
    client: Client,
    count: int,
    rounds: int,
    extras: Sequence[str] = (),
    other: str | None = None,
    idle_spinners: int = 0,
    idle_pillow: int = 0,
) -> dict[str, Any]:
    """`extras`: "NAME=FLAGS" runs of this install with --convert and FLAGS; `other`: another
    install's ``bin/ingest``, run with --convert as "--convert (other install)";
    `idle_spinners`, `idle_pillow`: also a run without --convert beside that many SCHED_IDLE
    busy loops, or Pillow loops doing the converters' work (`_PILLOW`)."""
    folder, kept = mixed_folder(count)
    Variant = tuple[list[str], str | None, list[list[str]]]  # flags, an install's script, beside
    variants: dict[str, Variant] = {"plain": ([], None, []), "--convert": (["--convert"], None, [])}
    for extra in extras:
        name, _, given = extra.partition("=")
        variants[f"--convert ({name})"] = (["--convert", *given.split()], None, [])
    if other:
        variants["--convert (other install)"] = (["--convert"], other, [])
    if idle_spinners:
        spin = [[sys.executable, "-c", _SPIN]] * idle_spinners
        variants[f"plain beside {idle_spinners} SCHED_IDLE spinner(s)"] = ([], None, spin)
    if idle_pillow:
        loops = [[sys.executable, "-c", _PILLOW, str(folder)]] * idle_pillow
        variants[f"plain beside {idle_pillow} SCHED_IDLE Pillow loop(s)"] = ([], None, loops)
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    for round_, name in rotating(list(runs), rounds):
        flags, script, beside = variants[name]
        expect = count if flags else kept
        run = client.run(
            name, round_, folder, expect, *flags, script=script, sample=True, beside=beside
        )
        runs[name].append(run)
        _show(run, expect)
    for round_ in range(1, rounds + 1):  # each run's JPEG/PNG pace against its round's plain run
        plain = [r for r in runs["plain"] if r.round == round_ and r.ok and r.kept_files_per_s]
        for samples in runs.values():
            for r in samples:
                if plain and r.round == round_ and r.kept_files_per_s is not None:
                    r.vs_plain_kept = r.kept_files_per_s / (plain[0].kept_files_per_s or 1)
                if plain and r.round == round_ and r.kept_mid_per_s and plain[0].kept_mid_per_s:
                    r.vs_plain_mid = r.kept_mid_per_s / plain[0].kept_mid_per_s
    rows = {name: _medians(samples) for name, samples in runs.items()}
    print(f"\nconvert: {count} images ({kept} JPEG/PNG, {count - kept} TIFF/BMP/HEIC), "
          f"medians of {rounds} rounds (rotating order)\n")  # fmt: skip
    _table("run", rows, CONVERT_COLUMNS)
    return {"files": count, "kept": kept, "rounds": rounds, "rows": rows,
            "variants": {name: {"flags": f, "ingest": ingest_command(s), "beside": b}
                         for name, (f, s, b) in variants.items()},
            "runs": [asdict(r) for rs in runs.values() for r in rs]}  # fmt: skip


def _sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


ISSUE_LAYOUTS = "65536:100,65536:500,1048576:100"  # issue 15's: datasets' groups, one-page, large


def _layouts(text: str) -> list[tuple[int, int]]:
    pairs = [part.split(":") for part in text.split(",") if part.strip()]
    return [(int(size), int(rows)) for size, rows in pairs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["speed", "memory", "convert", "all"], default="all")
    parser.add_argument("--rounds", type=int, help="speed: 5 rounds of pairs; convert: 3")
    parser.add_argument("--count", type=int, default=10_000, help="speed: files (64 KiB)")
    parser.add_argument("--run-sizes", type=_sizes, default=[2000, 20_000])
    parser.add_argument("--validate-sizes", type=_sizes, default=[2000, 20_000, 100_000])
    parser.add_argument("--member-size", type=int, default=4096, help="memory: bytes a member")
    parser.add_argument("--kinds", default="tar,parquet", help="memory: tar, parquet or both")
    parser.add_argument("--row-group", type=int, default=ROW_GROUP, help="memory: Parquet rows")
    parser.add_argument("--parquet-layouts", type=_layouts, default=[],
                        help="memory: Parquet files only, SIZE:ROWS,... (images of SIZE bytes in "
                        "row groups of ROWS), one result each; e.g. " + ISSUE_LAYOUTS)  # fmt: skip
    parser.add_argument(
        "--convert-count",
        type=int,
        default=200,
        help="convert: images in the mixed folder (1000 for a span of ~10 s)",
    )
    parser.add_argument(
        "--convert-extra",
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="convert: also run --convert with these flags (repeatable)",
    )
    parser.add_argument(
        "--idle-spinners",
        type=int,
        default=0,
        metavar="N",
        help="convert: also run without --convert beside N SCHED_IDLE busy loops (a control)",
    )
    parser.add_argument(
        "--idle-pillow",
        type=int,
        default=0,
        metavar="N",
        help="convert: also run without --convert beside N SCHED_IDLE Pillow loops doing the "
        "converters' work without ingest (a control)",
    )
    parser.add_argument(
        "--other-ingest",
        metavar="SCRIPT",
        help="convert: also run --convert with this install's bin/ingest",
    )
    parser.add_argument("--save", action="store_true", help=SAVE_HELP)
    args = parser.parse_args()
    if ensure_tool("nginx", NGINX_PACKAGE) is None:
        print(f"sources: nginx is needed (apt-get install {NGINX_PACKAGE})", file=sys.stderr)
        return 2
    parts = ["speed", "memory", "convert"] if args.part == "all" else [args.part]
    compile_ingest(None)  # as a user's first run does: no run recompiles ingest's modules
    with (
        terminate_cleanly(),
        NginxSink.start() as sink,
        SignerProcess.start(sink.base_url) as signer,
        tempfile.TemporaryDirectory(prefix="ingest-sources-") as tmp,
    ):
        client = Client(sink, signer, Path(tmp))
        for part in parts:
            load = os.getloadavg()
            if part == "speed":
                result = speed(client, args.count, args.rounds or 5)
            elif part == "memory" and args.parquet_layouts:
                for size, rows in args.parquet_layouts:
                    result = memory(client, args.run_sizes, args.validate_sizes, size,
                                    ["parquet"], rows)  # fmt: skip
                    result |= {"load_before": load, "tools": tool_versions()}
                    print(record(f"sources-memory-{size}-rg{rows}", result, args.save) + "\n")
                continue
            elif part == "memory":
                kinds = [k for k in args.kinds.split(",") if k]
                result = memory(client, args.run_sizes, args.validate_sizes, args.member_size,
                                kinds, args.row_group)  # fmt: skip
            else:
                result = convert(client, args.convert_count, args.rounds or 3,
                                 args.convert_extra, args.other_ingest, args.idle_spinners,
                                 args.idle_pillow)  # fmt: skip
            result |= {"load_before": load, "tools": tool_versions(), "ingest": ingest_command()}
            sized = part == "memory" and args.member_size != 4096
            name = f"sources-{part}" + (f"-{args.member_size}" if sized else "")
            name += (
                f"-rg{args.row_group}" if part == "memory" and args.row_group != ROW_GROUP else ""
            )
            print(record(name, result, args.save) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
