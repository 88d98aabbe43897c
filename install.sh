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
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
      echo "install.sh: installing $* needs root and this account has no sudo; ask an" \
        "administrator to run: apt-get install -y $*; then run this again" >&2
      exit 2
    fi
    sudo_=sudo
  fi
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
# `torchrig` on the PATH for the README's next steps (down, logs, shell): ~/.local/bin is on
# it on Debian and Ubuntu once it exists (at the next login). Someone else's file stays.
if [ ! -e "$HOME/.local/bin/torchrig" ] || [ -L "$HOME/.local/bin/torchrig" ]; then
  mkdir -p "$HOME/.local/bin"
  ln -sfn "$venv/bin/torchrig" "$HOME/.local/bin/torchrig"
fi

mkdir -p "$project"
cd "$project"
if [ ! -f torchrig.toml ]; then
  "$venv/bin/torchrig" init
fi
# The base image is bootstrapped from the distribution's mirror unless the spec names a
# registry image: only then is debootstrap (and the archive keyring that verifies it) needed,
# and only root can bootstrap: a normal user's base comes from a registry or the shared
# cache an administrator fills (`torchrig up` names the command where neither has it).
base=$("$venv/bin/torchrig" plan --json | "$venv/bin/python" -c \
  'import json, sys; print(json.load(sys.stdin)["resolution"]["base"]["distribution"])')
if [ "$base" != image ] && [ "$(id -u)" -eq 0 ] \
  && ! command -v debootstrap >/dev/null && [ ! -x /usr/sbin/debootstrap ]; then
  keyring=debian-archive-keyring
  case "$base" in ubuntu:*) keyring=ubuntu-keyring ;; esac
  apt-cache show "$keyring" >/dev/null 2>&1 || keyring=""
  # shellcheck disable=SC2086 # an empty keyring is no word
  apt_install "the $base base image is bootstrapped from its mirror" debootstrap $keyring
fi
exec "$venv/bin/torchrig" up --install-engine
