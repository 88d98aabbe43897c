#!/usr/bin/env bash
# From nothing to a running workbench, on a fresh Debian or Ubuntu machine, in one command:
#
#     bash install.sh [PROJECT_DIR]
#
# Installs torchrig into ~/.local/share/torchrig/venv (Python 3.11+ from the distribution),
# writes a torchrig.toml chosen from this machine if the project has none, then runs
# `torchrig up --install-engine`, which installs Docker from the distribution when no
# container engine is present, locks, builds and starts the workbench.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
project=${1:-$PWD}
venv=${TORCHRIG_VENV:-$HOME/.local/share/torchrig/venv}

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]} (apt-get)"
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${need_apt[@]}"
fi
python3 - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"torchrig needs Python 3.11 or newer; this is {sys.version.split()[0]}")
PY

if [ ! -x "$venv/bin/torchrig" ]; then
  echo "== installing torchrig into $venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$here"
fi

mkdir -p "$project"
cd "$project"
if [ ! -f torchrig.toml ]; then
  "$venv/bin/torchrig" init
fi
exec "$venv/bin/torchrig" up --install-engine
