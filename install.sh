#!/usr/bin/env bash
# From nothing to a running workbench, on a fresh Debian or Ubuntu machine, in one command:
#
#     bash install.sh [PROJECT_DIR]
#
# Installs torchrig into ~/.local/share/torchrig/venv (Python 3.11+ from the distribution),
# writes a torchrig.toml chosen from this machine if the project has none, installs
# debootstrap when the plan makes its base image from the distribution's mirror, then runs
# `torchrig up --install-engine`, which installs Docker from the distribution when no
# container engine is present, locks, builds and starts the workbench. Every package it
# installs is named before it is installed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
project=${1:-$PWD}
venv=${TORCHRIG_VENV:-$HOME/.local/share/torchrig/venv}

apt_install() {  # apt_install WHY PACKAGE...
  local why=$1
  shift
  echo "== installing $* (apt-get): $why"
  local sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "$@"
}

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt_install "torchrig runs on Python 3.11+" "${need_apt[@]}"
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
# The base image is bootstrapped from the distribution's mirror unless the spec names a
# registry image: only then is debootstrap (and the archive keyring that verifies it) needed.
base=$("$venv/bin/torchrig" plan --json | "$venv/bin/python" -c \
  'import json, sys; print(json.load(sys.stdin)["resolution"]["base"]["distribution"])')
if [ "$base" != image ] && ! command -v debootstrap >/dev/null; then
  keyring=debian-archive-keyring
  case "$base" in ubuntu:*) keyring=ubuntu-keyring ;; esac
  apt-cache show "$keyring" >/dev/null 2>&1 || keyring=""
  # shellcheck disable=SC2086 # an empty keyring is no word
  apt_install "the $base base image is bootstrapped from its mirror" debootstrap $keyring
fi
exec "$venv/bin/torchrig" up --install-engine
