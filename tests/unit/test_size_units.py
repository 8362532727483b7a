"""The two "MB" settings say exactly which unit they are (closing note 5: `--max-size-mb` is
MiB while `--max-mbps` is 10^6 bytes, and the help and README named neither by its bytes).

They keep the meanings they were documented with: a file size limit in MiB (binary, as sizes
are shown), a rate in decimal megabytes a second (as network rates are counted). curl's
``--limit-rate 1M``, rclone's ``--bwlimit 1M`` and aws-cli's ``max_bandwidth = 1MB/s`` are
1,048,576 bytes a second (curl docs/cmdline-opts/limit-rate.d; rclone docs, --bwlimit; the AWS
SDKs and Tools reference, s3 max_bandwidth), so the README gives the conversion."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ingest.bandwidth import bytes_per_s
from ingest.config import RunSettings
from ingest.providers.settings import ModelHunterSettings, NovitaSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _help(cls: type, name: str) -> str:
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return str(field.metadata["help"])


def test_each_mb_setting_names_its_bytes_and_keeps_its_meaning() -> None:
    assert NovitaSettings(max_size_mb=1.5).max_size == 1_572_864  # 1.5 MiB
    assert bytes_per_s(2.5) == 2_500_000
    for cls in (NovitaSettings, ModelHunterSettings):
        assert _help(cls, "max_size_mb").startswith("MiB (1 = 1,048,576 bytes)")
    assert _help(RunSettings, "max_mbps").startswith(
        "MB/s, decimal (1 = 1,000,000 bytes a second; curl's and rclone's 1M is 1,048,576)"
    )
    text = " ".join(README.split())
    assert "N decimal megabytes a second (N × 1,000,000 bytes" in text
    assert "files over N MiB (N × 1,048,576 bytes) are rejected" in text
    assert "the same cap here is `--max-mbps 10.49`" in text
