"""`python -m ingest` runs the command line."""

import sys

from ingest.cli.main import main

sys.exit(main())
