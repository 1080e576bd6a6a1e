from __future__ import annotations

from openbatch.cli.main import app

app()
