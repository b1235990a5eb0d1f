"""`python -m rillet` runs the `rillet` command."""

from __future__ import annotations

from rillet.cli import app

app()
