"""Virtual environments for the older SDK generations, built once and cached.

``azure-batch`` 1.0.0 / 14.x and the legacy ``azure-storage`` 0.33 cannot share an
environment with azure-batch 15 / azure-storage-blob 12, so tests run small scripts in
their own venvs.  They live under ``$OPENBATCH_TEST_VENVS`` (default ``~/.cache/openbatch/venvs``)
and are rebuilt only when their requirement list changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path
from typing import Any

VENVS: dict[str, list[str]] = {
    # The generation the original Azure Batch tutorials use.
    "legacy": ["azure-batch==1.0.0", "azure-storage==0.33.0"],
    "batch14": ["azure-batch==14.2.0"],
    # The Azure CLI (its `az batch` commands; azure-batch 15.0.0b1 inside): ~730 MB, about a minute to
    # install, so it is kept in the checkout's own .cache/ (gitignored) and reused across runs.
    "azure-cli": ["azure-cli==2.91.0"],
}
REPO = Path(__file__).resolve().parents[2]
ROOTS: dict[str, Path] = {"azure-cli": REPO / ".cache" / "venvs"}


def venv_root(name: str = "") -> Path:
    if name in ROOTS:
        return ROOTS[name]
    return Path(os.environ.get("OPENBATCH_TEST_VENVS", Path.home() / ".cache" / "openbatch" / "venvs"))


def ensure_venv(name: str) -> Path:
    """Path of the venv's python, building the venv first if needed (safe across processes)."""
    reqs = VENVS[name]
    stamp_value = hashlib.sha256(json.dumps([sys.version_info[:2], reqs]).encode()).hexdigest()
    root = venv_root(name)
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    python = target / "bin" / "python"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = target / "openbatch-stamp"
        if python.exists() and stamp.exists() and stamp.read_text() == stamp_value:
            return python
        venv.EnvBuilder(clear=True, with_pip=True).create(target)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *reqs],
            check=True,
        )
        stamp.write_text(stamp_value)
    return python


def run_script(name: str, script: str, env: dict[str, str] | None = None, timeout: float = 300) -> Any:
    """Run ``script`` in venv ``name``; the script prints one JSON document on its last line.

    Raises AssertionError with the script's output when it exits non-zero.
    """
    python = ensure_venv(name)
    proc = subprocess.run(
        [str(python), "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {}), "PYTHONWARNINGS": "ignore"},
    )
    if proc.returncode != 0:
        raise AssertionError(f"script in venv {name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else None
