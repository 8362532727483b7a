"""Small files: 5,000 × 64 KiB through the Novita flow, against bare, curl and rclone.

Bar: ingest files/s ≥ 0.9 × bare, client CPU per file ≤ 1.3 × bare.

    python benchmarks/small.py [--rounds 3] [--no-tools]
"""

from __future__ import annotations

import sys

from throughput import main

if __name__ == "__main__":
    sys.exit(main("small", 5000, 64 * 1024))
