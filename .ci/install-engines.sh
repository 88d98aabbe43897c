#!/bin/sh
# Install and start the container engines the container tests run against: Docker and
# Podman, plus debootstrap for base images made without a registry. Idempotent: run it
# as often as you like. Needs root (or passwordless sudo) and a Debian/Ubuntu host.
#
#   .ci/install-engines.sh
#
# Afterwards: TORCHRIG_PODMAN_RUNTIME=runc pytest -m container tests/container
set -eu

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

DOCKER_SOCK=/var/run/docker.sock
DOCKERD_LOG=/var/log/dockerd.log
CONTAINERS_CONF=/etc/containers/containers.conf
WAIT_S=60

log() {
    printf '== %s\n' "$*"
}

have_package() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

install_packages() {
    # catatonit: `podman run --init`; runc: crun cannot start containers on hosts with
    # hybrid cgroups; uidmap: rootless Podman.
    # openssh-client: the container tests log in with a real ssh client; openssh-server:
    # the unit tests check the rendered sshd config with the real sshd -t.
    # fonts-noto-cjk, fonts-symbola: the recipes' plots draw Chinese/Japanese/Korean and
    # emoji class names (tests/train check for missing glyphs), as in the image.
    # docker-registry: the tests serve a base image from a registry on 127.0.0.1 (no
    # Docker Hub), started by the test itself with its own config and storage.
    # slirp4netns: each Podman workbench's own network stack (no bridge address a
    # neighbouring container could reach).
    # acl: getfacl/setfacl, the reference the tests of a root-owned workspace check
    # torchrig's own ACL xattr writing against (torchrig itself needs no package for it).
    # prometheus: the monitoring test starts the real server, scraping a workbench's metrics
    # service; chromium: the run report is rendered in a real headless browser.
    # slurmctld, slurmd, slurm-client, munge: the two-node Slurm cluster of the cluster
    # test (tests/container/slurmlab.py), started by the test with its own config, munge
    # key and network namespaces; the packages' own services stay off.
    wanted="slurmctld slurmd slurm-client munge acl docker.io podman runc catatonit uidmap slirp4netns debootstrap debian-archive-keyring openssh-client openssh-server fonts-noto-cjk fonts-symbola docker-registry prometheus chromium"
    if apt-cache policy ubuntu-keyring 2>/dev/null | grep -q 'Candidate: [^(]'; then
        wanted="$wanted ubuntu-keyring"
    else
        # torchrig ships the Ubuntu archive keyring (src/torchrig/image/data) for such hosts.
        log "ubuntu-keyring is not packaged here: Ubuntu bases are checked with torchrig's copy of its keyring"
    fi
    missing=""
    for package in $wanted; do
        if ! have_package "$package"; then
            missing="$missing $package"
        fi
    done
    if [ -z "$missing" ]; then
        log "packages already installed"
        return
    fi
    log "installing:$missing"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
}

configure_podman() {
    # Podman raises nofile/nproc to its defaults for every container; without
    # CAP_SYS_RESOURCE (CI sandboxes, nested containers) runc then fails with
    # "error setting rlimit type 7: operation not permitted". An empty list keeps the host's.
    $SUDO mkdir -p "$(dirname "$CONTAINERS_CONF")"
    if [ ! -f "$CONTAINERS_CONF" ]; then
        printf '[containers]\ndefault_ulimits = []\n' | $SUDO tee "$CONTAINERS_CONF" >/dev/null
        log "wrote $CONTAINERS_CONF"
    elif grep -q '^[[:space:]]*default_ulimits[[:space:]]*=' "$CONTAINERS_CONF"; then
        log "$CONTAINERS_CONF already sets default_ulimits"
    elif grep -q '^\[containers\]' "$CONTAINERS_CONF"; then
        $SUDO sed -i 's/^\[containers\]$/[containers]\ndefault_ulimits = []/' "$CONTAINERS_CONF"
        log "added default_ulimits to $CONTAINERS_CONF"
    else
        printf '\n[containers]\ndefault_ulimits = []\n' | $SUDO tee -a "$CONTAINERS_CONF" >/dev/null
        log "added [containers] default_ulimits to $CONTAINERS_CONF"
    fi
}

docker_answers() {
    $SUDO docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

start_dockerd() {
    if docker_answers; then
        log "dockerd is running"
        return
    fi
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        log "starting docker with systemd"
        $SUDO systemctl start docker
    else
        log "starting dockerd in the background (log: $DOCKERD_LOG)"
        # No systemd (containers, CI sandboxes): run the daemon detached from this shell, in
        # a session of its own (setsid), so that ending the caller's process group (a CI
        # step, a terminal closing) does not take the daemon with it.
        $SUDO sh -c "setsid nohup dockerd >'$DOCKERD_LOG' 2>&1 </dev/null &"
    fi
    waited=0
    until [ -S "$DOCKER_SOCK" ] && docker_answers; do
        if [ "$waited" -ge "$WAIT_S" ]; then
            log "dockerd did not answer on $DOCKER_SOCK within ${WAIT_S}s; last lines of its log:"
            $SUDO tail -n 20 "$DOCKERD_LOG" 2>/dev/null || true
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "dockerd answered after ${waited}s"
}

install_proxy() {
    # configurable-http-proxy: JupyterHub's proxy for `torchrig lab` (npm, pinned; the
    # Node.js it needs comes from the distribution). npm's cache sits with CI's other
    # downloads, so a second run installs nothing and a fresh machine reuses the tarballs.
    want=5.3.0
    if [ "$(configurable-http-proxy --version 2>/dev/null)" = "$want" ]; then
        log "configurable-http-proxy $want already installed"
        return
    fi
    if ! command -v npm >/dev/null 2>&1; then
        log "installing nodejs and npm (for configurable-http-proxy)"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
    fi
    log "installing configurable-http-proxy $want"
    $SUDO npm install -g --no-fund --no-audit --cache "${NPM_CACHE:-/var/cache/torchrig-ci/npm}" \
        "configurable-http-proxy@$want"
}

print_versions() {
    log "versions"
    printf 'docker client: %s\n' "$(docker version --format '{{.Client.Version}}' 2>/dev/null || echo '?')"
    printf 'docker server: %s\n' "$($SUDO docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')"
    if docker buildx version >/dev/null 2>&1; then
        echo "docker buildx: $(docker buildx version)"
    else
        echo "docker buildx: absent (builds use the classic builder)"
    fi
    printf 'podman: %s\n' "$(podman version --format '{{.Client.Version}}' 2>/dev/null || echo '?')"
    printf 'runc: %s\n' "$(runc --version 2>/dev/null | head -n 1 || echo '?')"
    printf 'configurable-http-proxy: %s\n' "$(configurable-http-proxy --version 2>/dev/null || echo '?')"
    printf 'debootstrap: %s\n' "$(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null || echo '?')"
}

install_packages
install_proxy
configure_podman
start_dockerd
print_versions
