"""Uploads to an independent S3 server: moto's, on a free loopback port.

`ingest sim --storage-url` signs every provider's upload URLs (SigV4, the
same code as its own ``/s3`` route) for a bucket of another S3-compatible
server, so the bytes `ingest run` sends land in storage written by someone
else. The bucket is versioned: each PUT that landed is one version, so
"landed once" is counted by the store itself, not by the emulator.

For each provider whose uploads are pre-signed PUTs (Novita, ModelHunter,
Autoenhance, and Scenario's multipart parts), a run's objects, listed
through the S3 API (boto3) and read back for their SHA-256, equal the
journal's export and the emulator's record: every item's key has exactly one
version holding its bytes, and no other object was written. Where the
emulator records completion (ModelHunter's complete, Autoenhance's image
status, Scenario's multipart complete), it asked the store (HEAD, or GET for
Scenario's parts) as the real service must. These runs go through the
library's front door in this process (what `ingest run` calls; a process
each cost ~0.5 s of start-up); one SIGKILL of a real `ingest run` and the
same command again (ModelHunter) end with 0 lost, orphans printed.

What moto does not check: the signature and expiry of pre-signed URLs
(see `ingest.sim.external`); those stay covered by the emulator's own
``/s3`` route (tests/unit/test_sim_storage.py, tests/faults/test_expiry.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

import ingest
from ingest.cli.main import main
from ingest.sim.external import external_storage
from tests.images import make_dataset, make_image, write_jsonl_manifest
from tests.simproc import SimProcess, ingest_env, read_journal, run_ingest, sha256_file
from tests.simproc import sim_process as start_sim
from tests.torture import SENTINELS, done_records, in_flight_at_kill, popen_ingest, spec

BUCKET = "ingest-uploads"
KEY, SECRET = "AKIAEXTERNALTEST0001", "external-S3-secret-not-in-any-output/000"
ENV = {"EXT_S3_KEY": KEY, "EXT_S3_SECRET": SECRET}
FLAGS = ("--storage-key-env", "EXT_S3_KEY", "--storage-secret-env", "EXT_S3_SECRET")
# The emulator's bucket of each provider: the first part of its objects' keys.
PREFIX = {
    "novita": "faas-training-dataset/",
    "modelhunter": "modelhunter-uploads/",
    "autoenhance": "autoenhanceapi-prod/",
    "scenario": "scenario-uploads/",
}


@dataclass(frozen=True)
class S3:
    url: str
    client: Any  # a boto3 S3 client (boto3 ships no types)

    def versions(self, prefix: str) -> dict[str, int]:
        """Object key -> how many versions (landed PUTs) it has, under `prefix`."""
        found: dict[str, int] = {}
        pages = self.client.get_paginator("list_object_versions").paginate(
            Bucket=BUCKET, Prefix=prefix
        )
        for page in pages:
            for version in page.get("Versions", []):
                found[version["Key"]] = found.get(version["Key"], 0) + 1
        return found

    def sha256(self, key: str) -> str:
        body = self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        return hashlib.sha256(body).hexdigest()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield S3(url, client)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sim(s3: S3) -> Iterator[SimProcess]:
    flags = [*FLAGS, "--storage-url", f"{s3.url}/{BUCKET}"]
    for name in PREFIX:
        flags += spec(name).sim_flags
    with start_sim(*flags, env=ingest_env(**ENV)) as running:
        yield running


def exported(journal: Path) -> dict[str, str]:
    done = read_journal(["export", str(journal)])
    assert done.returncode == 0, done.stderr
    return {row["key"]: str(row["remote_id"]) for row in map(json.loads, done.stdout.splitlines())}


def dataset(tmp_path: Path, name: str, n: int) -> list[Path]:
    paths = make_dataset(tmp_path / "images", n, min_size=1024, max_size=24 * 1024, seed=n)
    if name == "scenario":  # above its base64 limit (3.5 MB): a multipart upload, S3 parts
        for i in range(2):
            big = tmp_path / "images" / f"big-{i}.png"
            make_image(big, "png", 3_600_000 + i * 1000, seed=90 + i)
            paths.append(big)
    return paths


def check_landed(name: str, sim: SimProcess, s3: S3, paths: list[Path], journal: Path) -> None:
    """The store holds each item once, byte-identical, where the journal and emulator say."""
    rows = exported(journal)
    assert len(rows) == len(paths), (len(rows), len(paths))
    assets = {str(a["remote_id"]): a["key"] for a in sim.get("/_sim/assets")["assets"]}
    versions = s3.versions(PREFIX[name])
    assert versions and set(versions.values()) == {1}, versions  # every key landed once
    digests = {path: sha256_file(path) for path in paths}
    if name == "scenario":
        # The journal names assets; the store holds their multipart parts (one part each).
        model = sim.get("/_sim/scenario/models")["models"]
        attached = {image["sha256"] for m in model for image in m["training_images"]}
        assert set(digests.values()) <= attached
        parts = {s3.sha256(key) for key in versions}
        assert parts == {d for p, d in digests.items() if p.name.startswith("big-")}
        return
    objects = {obj["key"]: obj for obj in sim.objects() if obj["provider"] == name}
    keys = set()
    for index, path in enumerate(paths):
        key = assets[rows[f"item-{index:06d}"]]
        keys.add(key)
        assert s3.sha256(key) == digests[path], key
        if name in ("modelhunter", "autoenhance"):  # completion asked the store (HEAD)
            assert objects[key]["size"] == path.stat().st_size
    assert set(versions) == keys  # nothing else was written
    status = read_journal(["status", str(journal), "--json"])
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["done"] == len(paths) == len(keys)


@pytest.mark.parametrize("name", list(PREFIX))
def test_every_presigned_upload_lands_once_in_the_independent_store(
    tmp_path: Path, sim: SimProcess, s3: S3, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = spec(name)
    paths = dataset(tmp_path, name, 8)
    manifest = write_jsonl_manifest(paths, tmp_path / "m.jsonl")
    # In process, through the front door `ingest run` calls (a process each cost ~0.5 s of
    # start-up); the SIGKILL test below runs the command line.
    for variable, value in s.keys.items():
        monkeypatch.setenv(variable, value)
    extra: dict[str, Any] = {"model_id": s.flags[1]} if "--model-id" in s.flags else {}
    done = ingest.upload_sync(manifest, provider=name, base_url=sim.base_url + s.base_path, **extra)
    assert done.complete, done
    journal = s.journal(manifest)
    if name == "autoenhance":  # the order's images are "processing": the store was asked
        order_id = json.loads(journal.read_text().splitlines()[0])["bind"]["order_id"]
        request = urllib.request.Request(
            f"{sim.base_url}/v3/orders/{order_id}",
            headers={"x-api-key": SENTINELS["AUTOENHANCE_API_KEY"]},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            images = json.loads(resp.read())["images"]
        assert [i["status"] for i in images] == ["processing"] * len(paths)
    check_landed(name, sim, s3, paths, journal)


def test_sigkill_then_resume_against_the_independent_store_loses_nothing(
    tmp_path: Path, sim: SimProcess, s3: S3
) -> None:
    s = spec("modelhunter")
    paths = make_dataset(tmp_path / "images", 40, min_size=1024, max_size=8 * 1024, seed=77)
    manifest = write_jsonl_manifest(paths, tmp_path / "m.jsonl")
    journal = s.journal(manifest)
    before = set(s3.versions(PREFIX["modelhunter"]))  # the other tests' objects
    sim.set_faults("seed=5,api.latency=0.03")  # slow enough to be caught mid-run
    try:
        run = popen_ingest(s.run_args(manifest, sim, "--quiet"), env=s.env())
        try:
            while done_records(journal) < 4:  # wait for observed progress, never a delay
                assert run.poll() is None, "the run ended before it could be killed"
                time.sleep(0.01)
            run.send_signal(signal.SIGKILL)
        finally:
            run.wait(timeout=60)
        _pid, in_flight = in_flight_at_kill(journal)
        assert done_records(journal) < len(paths)
    finally:
        sim.set_faults("")
    resumed = run_ingest(s.run_args(manifest, sim, "--plain"), env=s.env())
    assert resumed.returncode == 0, resumed.stderr
    rows = exported(journal)
    assets = {str(a["remote_id"]): a["key"] for a in sim.get("/_sim/assets")["assets"]}
    lost = [
        p for i, p in enumerate(paths) if s3.sha256(assets[rows[f"item-{i:06d}"]]) != sha256_file(p)
    ]
    assert lost == []
    files = {f["file_id"]: f for f in sim.get("/_sim/modelhunter/files")["files"]}
    assert all(files[rows[f"item-{i:06d}"]]["completed"] for i in range(len(paths)))
    versions = {k: n for k, n in s3.versions(PREFIX["modelhunter"]).items() if k not in before}
    named = {assets[remote_id] for remote_id in rows.values()}
    copies = sum(versions.values()) - len(paths)  # PUTs beyond one per item
    orphans = len(set(versions) - named)  # objects no done item names
    print(f"external S3, 1 SIGKILL, {len(paths)} items: {copies} extra PUTs, {orphans} orphans")
    assert named <= set(versions)
    assert 0 <= copies <= in_flight and orphans <= in_flight


def test_a_bad_storage_url_or_key_is_one_clear_line(
    s3: S3, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXT_S3_KEY", KEY)
    monkeypatch.delenv("EXT_S3_SECRET", raising=False)
    assert main(["sim", *FLAGS, "--storage-url", f"{s3.url}/{BUCKET}"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "ingest sim: --storage-secret-env: environment variable EXT_S3_SECRET is empty or not set\n"
    )
    monkeypatch.setenv("EXT_S3_SECRET", SECRET)
    assert main(["sim", *FLAGS, "--storage-url", f"{s3.url}/no-such-bucket"]) == 1
    err = capsys.readouterr().err
    assert err == f"ingest sim: external storage {s3.url}/no-such-bucket: no such bucket (404)\n"
    assert main(["sim", *FLAGS, "--storage-url", s3.url]) == 2
    assert "one bucket, path style" in capsys.readouterr().err
    where = external_storage(
        f"{s3.url}/{BUCKET}", key_env="EXT_S3_KEY", secret_env="EXT_S3_SECRET", region="x"
    )
    assert where.credentials.secret == SECRET and SECRET not in repr(where)
