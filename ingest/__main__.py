"""`python -m ingest` runs the command line."""

from ingest.cli.main import entry

entry()
