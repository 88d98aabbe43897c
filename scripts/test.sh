#!/usr/bin/env bash
# The one test command: installs and starts what the tests need (as root: Docker, Podman and
# the tools in .ci/install-engines.sh), makes .venv if needed, installs torchrig with its test
# tools, then runs lint, types and the test suite. Extra arguments go to pytest
# (e.g. -m "not container", which needs no engine).
set -euo pipefail
cd "$(dirname "$0")/.."

# The container tests run real engines. The engine script is idempotent (a few seconds when
# all is there); as a normal user it needs sudo, so it is run only when something is missing.
engines_ready() {
  command -v docker >/dev/null && command -v podman >/dev/null && command -v debootstrap >/dev/null \
    && command -v ssh >/dev/null && docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}
case " $* " in
  *"not container"*) ;;  # nothing needs an engine
  *)
    if [ "$(id -u)" -eq 0 ]; then
      sh .ci/install-engines.sh
    elif ! engines_ready; then
      if sudo -n true 2>/dev/null; then
        sh .ci/install-engines.sh
      else
        echo "test.sh: the container tests need Docker, Podman and debootstrap, installed and" \
          "running; run once: sudo sh .ci/install-engines.sh (or pass -m 'not container')" >&2
        exit 2
      fi
    fi
    ;;
esac

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
"${PIP[@]}" -e '.[test,train,export,serve,lab]'

echo "== ruff"
.venv/bin/ruff check src tests scripts benchmarks
.venv/bin/ruff format --check src tests scripts benchmarks
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest "$@"
