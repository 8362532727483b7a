"""Large files: 40 × 16 MiB through the Novita flow, against bare, curl and rclone.

Bar: ingest MB/s ≥ 0.9 × bare, peak RSS < 100 MiB.

    python benchmarks/large.py [--rounds 3] [--no-tools]
"""

from __future__ import annotations

import sys

from throughput import main

if __name__ == "__main__":
    sys.exit(main("large", 40, 16 * 2**20))
