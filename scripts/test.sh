#!/usr/bin/env bash
# The one test command: installs and starts what the tests need (as root: Docker, Podman and
# the tools in .ci/install-engines.sh), makes .venv if needed, installs torchrig with its test
# tools, then runs lint, types and the test suite. Extra arguments go to pytest
# (e.g. -m "not container", which needs no engine). A normal user runs the same command.
set -euo pipefail
cd "$(dirname "$0")/.."

# The container tests run real engines and need root (throwaway accounts, chown to the
# workbench UID, debootstrap): as root the engine script installs and starts what they need
# (idempotent, a few seconds when all is there). A normal user's run skips them and the root
# tests, each listed with its reason (tests/conftest.py), so it needs neither sudo nor engines.
if [ "$(id -u)" -eq 0 ]; then
  case " $* " in
    *"not container"*) ;;  # nothing needs an engine
    *) sh .ci/install-engines.sh ;;
  esac
else
  echo "test.sh: not root (uid $(id -u)): the container and root tests are skipped, each" \
    "listed with its reason at the end; sudo bash scripts/test.sh runs them all"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# The training tests need torch. A CPU build is small: use the local CPU wheel where this
# machine has one (in TORCHRIG_TEST_WHEELS, /opt/wheels by default: named here because only
# root's environment sets PIP_FIND_LINKS), else PyPI's torch (a CUDA build; runs on a CPU too).
WHEELS=${TORCHRIG_TEST_WHEELS:-/opt/wheels}
FIND_LINKS=()
[ -d "$WHEELS" ] && FIND_LINKS=(--find-links "$WHEELS")
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  "${PIP[@]}" "${FIND_LINKS[@]}" "${TORCHRIG_TEST_TORCH:-torch==2.13.0+cpu}" || "${PIP[@]}" torch
fi
"${PIP[@]}" -e '.[test,train,export,serve,lab]'

echo "== ruff"
.venv/bin/ruff check src tests scripts benchmarks
.venv/bin/ruff format --check src tests scripts benchmarks
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest "$@"
