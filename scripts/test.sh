#!/usr/bin/env bash
# Install openbatch with its test extras into .venv and run the default test suite.
# Slow suites are opt-in:  bash scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
# What some suites need from Debian, installed when missing (as root with apt; without them those
# suites skip, saying why): iproute2's `ip` makes the hosts of tests/multihost, chromium is the
# browser tests/ui drives with Playwright (Playwright's own browser download is not used), sshd
# starts the Dask workers of the SSHCluster in tests/multihost, Open MPI (mpirun, mpicc) runs the
# MPI hello-world of tests/sdk/test_batch_mpi.py across nodes, podman (and runc, for hosts where
# podman's default runtime cannot start a container) runs tests/sdk/test_batch_containers.py.
missing=()
command -v ip >/dev/null || missing+=(iproute2)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v mpirun >/dev/null || missing+=(openmpi-bin)
command -v mpicc >/dev/null || missing+=(libopenmpi-dev)
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
.venv/bin/python -m ruff check openbatch tests bench examples
.venv/bin/python -m pytest -q "$@"
