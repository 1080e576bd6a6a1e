#!/usr/bin/env bash
# Install openbatch with its test extras into .venv and run the default test suite.
# Slow suites are opt-in:  bash scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
.venv/bin/python -m ruff check openbatch tests bench examples
.venv/bin/python -m pytest -q "$@"
