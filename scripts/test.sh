#!/usr/bin/env bash
# The one test command: makes .venv if needed, installs torchrig with its test tools, then
# runs lint, types and the test suite. Extra arguments go to pytest (e.g. -m "not container").
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# The training tests need torch. A CPU build is small: use the local CPU wheel where this
# machine has one (pip's find-links), else PyPI's torch (a CUDA build; runs on a CPU too).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  "${PIP[@]}" "${TORCHRIG_TEST_TORCH:-torch==2.13.0+cpu}" || "${PIP[@]}" torch
fi
"${PIP[@]}" -e '.[test,train,export]'

echo "== ruff"
.venv/bin/ruff check src tests scripts benchmarks
.venv/bin/ruff format --check src tests scripts benchmarks
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest "$@"
