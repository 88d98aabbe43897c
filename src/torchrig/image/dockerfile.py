"""Render the workbench Dockerfile from small steps, ordered by how rarely they change.

base → system packages → torch layer → stack → your packages → torchrig → config → labels.
A change to the spec's packages rebuilds from the layer it touches down, never the torch
layer above it; labels come last so new metadata never busts the cache.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

from torchrig import contract
from torchrig.image.wheelserver import HOST as WHEELS_HOST
from torchrig.image.wheelserver import PROXY_BUILD_ARG, UV_PATH, WHEELS_URL

# Packages every workbench needs. gcc/g++ and the Python headers are what torch.compile
# (Inductor's C++ and Triton launcher builds) needs at run time, so even "runtime" has them.
SYSTEM_PACKAGES = (
    "ca-certificates",
    "python3",
    "python3-venv",
    "python3-dev",
    "gcc",
    "g++",
    "libc6-dev",
    "openssh-server",
    "tini",
    "util-linux",
    "passwd",
    "procps",
    "less",
    "git",
    "curl",
    "fonts-noto-cjk",
    "fonts-symbola",  # recipe plots: CJK and emoji class names (91 + 3 MB)
)
# Files of the system layer's packages that a workbench never reads, left out of that one
# install (dpkg --path-exclude; a later `apt-get install` in the workbench is untouched):
# documentation but the licences, man pages (no man-db here), info pages and message
# catalogues (LANG is C.UTF-8), as Ubuntu's minimized images exclude them
# (/etc/dpkg/dpkg.cfg.d/excludes there); and the CJK faces the recipes never draw with:
# evaluate.py's fallback is NotoSansCJK-Regular, the Serif and Bold files are 73 MB more.
# With the .deb files apt keeps (apt-get clean), ~300 MB of the CPU image (issue 18: no
# larger than the naive Dockerfile's).
DPKG_EXCLUDE = (
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/groff/*",
    "/usr/share/lintian/*",
    "/usr/share/locale/*/LC_MESSAGES/*.mo",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK*",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
)
DPKG_INCLUDE = ("/usr/share/doc/*/copyright",)
VENV = contract.VENV
PORTS = contract.PORTS
PIP_INSTALL = (
    f"{VENV}/bin/python -m pip install --no-cache-dir --no-deps --require-hashes "
    "--no-index --disable-pip-version-check"
)
UV_INSTALL = (
    f"pip install --python {VENV}/bin/python --no-config --no-deps --require-hashes "
    "--no-index --no-cache --compile-bytecode"
)


@dataclass(frozen=True)
class ImageInputs:
    base_image: str
    distribution: str  # "debian:bookworm", "ubuntu:noble" or "image"
    mirror: str
    components: tuple[str, ...]
    python: str
    flavour: str
    cuda: str
    system_packages: tuple[str, ...]
    ca_certificates: tuple[str, ...]  # file names under ca-certificates/ in the context
    layers: tuple[tuple[str, str], ...]  # (layer name, requirements file in the context)
    labels: dict[str, str] = field(default_factory=dict)


def _run(*commands: str) -> str:
    return "RUN " + " \\\n && ".join(commands)


def _apt_sources(inputs: ImageInputs) -> list[str]:
    """Write our own sources list: the spec's mirror, not whatever the base shipped."""
    if inputs.distribution == "image" or not inputs.mirror:
        return []
    release = inputs.distribution.split(":", 1)[1]
    components = " ".join(inputs.components)
    suites = (release, f"{release}-updates")
    entries = " ".join(shlex.quote(f"deb {inputs.mirror} {s} {components}") for s in suites)
    return ["rm -f /etc/apt/sources.list.d/*", f"printf '%s\\n' {entries} > /etc/apt/sources.list"]


def _dpkg_option(option: str) -> str:
    """An option apt hands to dpkg, quoted (the patterns' `*` is dpkg's, not the shell's)."""
    return f"-o 'Dpkg::Options::={option}'"


def _system(inputs: ImageInputs) -> list[str]:
    packages = sorted(set(SYSTEM_PACKAGES) | set(inputs.system_packages))
    lines = []
    if inputs.ca_certificates:
        lines.append("COPY ca-certificates/ /usr/local/share/ca-certificates/")
    steps = [
        *_apt_sources(inputs),
        # No Translation-en lists (nothing reads them: LANG is C.UTF-8): `apt-get update`
        # took 2.9 s against 3.6-3.9 s with them (docs/workbench.md, 2026-12-07).
        "apt-get update -o Acquire::Languages=none",
        "apt-get install -y --no-install-recommends \\\n    "
        # No fsync per unpacked file: the engine commits a RUN only when it ends well, so a
        # build that dies leaves no half-written layer; dpkg's run took 17.0 s against
        # 20.7 s with the syncs beside the wheel download, 25.0 against 27.7 s at load 3
        # (docs/workbench.md, 2026-12-07).
        + _dpkg_option("--force-unsafe-io")
        + " \\\n    "
        + " \\\n    ".join(_dpkg_option(f"--path-exclude={p}") for p in DPKG_EXCLUDE)
        + " \\\n    "
        + " ".join(_dpkg_option(f"--path-include={p}") for p in DPKG_INCLUDE)
        + " \\\n    "
        + " ".join(packages),
        "update-ca-certificates",
        # Host keys are made per workbench at first start (kept in its state volume).
        "rm -f /etc/ssh/ssh_host_*",
        # The downloaded .deb files too (a bootstrapped base has no docker-clean hook).
        "apt-get clean",
        "rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log",
        f"python3 -m venv {VENV}",
    ]
    # Not pinned per package: the versions are those of the base's mirror on build day
    # (a snapshot mirror in sources.apt_mirror pins them all at once).
    lines += ["# hadolint ignore=DL3008", _run(*steps)]
    return lines


def _layer(name: str, requirements: str) -> list[str]:
    """The installer reaches the build's wheel server through the proxy whose address the
    engine gets as the FTP_PROXY build argument: no address or port is written here, so a
    taken port changes neither the tag nor the layer cache (see image/wheelserver.py).

    uv installs when the server hands out the host's uv (fetched, run and deleted in this
    RUN, so no layer keeps it): it unpacks and byte-compiles in parallel where pip does one
    file after another (the cold CUDA build took 318 s with pip against the naive
    Dockerfile's 258 s, 2026-12-02; benchmarks/build_image.py). pip stays the fallback for
    a host whose uv cannot run in the image (another OS or architecture). Both wait up to
    an hour for a file the host is still downloading, and both check every file against
    the lock's sha256 (--require-hashes)."""
    target = f"/tmp/torchrig/{requirements.rsplit('/', 1)[-1]}"
    uv = "/tmp/torchrig/uv"
    proxy = f'http_proxy="${PROXY_BUILD_ARG}"'
    fetch_uv = f'curl -fsS --proxy "${PROXY_BUILD_ARG}" -o {uv} {WHEELS_URL}{UV_PATH}'
    with_uv = (
        f"{proxy} UV_HTTP_TIMEOUT=3600 {uv} {UV_INSTALL} --find-links {WHEELS_URL} -r {target}"
    )
    # --trusted-host: pip ignores plain-http hosts other than localhost.
    with_pip = (
        f"{proxy} {PIP_INSTALL} --timeout 3600 --trusted-host {WHEELS_HOST} "
        f"--find-links {WHEELS_URL} -r {target}"
    )
    return [
        f"# {name}",
        f"COPY {requirements} {target}",
        _run(
            f"if {fetch_uv}; \\\n    then chmod 0755 {uv} && {with_uv}; \\\n"
            f"    else {with_pip}; fi",
            # uv leaves its lock file in the venv, writable by everyone (0666): no file
            # under the venv that root's Python uses may be the user's to change or hold.
            f"rm -f {uv} {target} {VENV}/.lock",
        ),
    ]


def _devel() -> list[str]:
    """nvcc came as NVIDIA's wheels in the torch layer: make it a normal CUDA_HOME."""
    return [
        "# devel: nvcc and the CUDA headers, from the locked NVIDIA wheels",
        _run(
            f"nvcc=$(find {VENV} -path '*/bin/nvcc' -type f | head -n 1)",
            'test -n "$nvcc"',
            'ln -s "$(dirname "$(dirname "$nvcc")")" /usr/local/cuda',
        ),
        "ENV CUDA_HOME=/usr/local/cuda PATH=/usr/local/cuda/bin:$PATH",
    ]


def _torchrig(inputs: ImageInputs) -> list[str]:
    site = f"{VENV}/lib/python{inputs.python}/site-packages"
    return [
        "# torchrig itself: doctor, verify, bench, recipes and the in-image workbench",
        "COPY torchrig/ /opt/torchrig/torchrig/",
        "COPY bin/torchrig /usr/local/bin/torchrig",
        _run(
            f"echo /opt/torchrig > {site}/torchrig.pth",
            f"{VENV}/bin/python -m compileall -q /opt/torchrig",
        ),
    ]


def _config() -> list[str]:
    # The entrypoint's services; a job's port (serve) is published by `up` all the same.
    ports = " ".join(str(PORTS[s]) for s in contract.SERVICES)
    return [
        f"COPY constraints.txt {contract.CONSTRAINTS}",
        f"COPY image.json {contract.IMAGE_INFO}",
        # A later `pip install` can add packages but never replace torch or the CUDA libraries.
        f"ENV PATH={VENV}/bin:$PATH \\",
        f"    PIP_CONSTRAINT={contract.CONSTRAINTS} \\",
        "    PIP_DISABLE_PIP_VERSION_CHECK=1 \\",
        "    PYTHONUNBUFFERED=1",
        f"EXPOSE {ports}",
        # Root runs these two, so: -I (no cwd, PYTHON* or user site on sys.path) and WORKDIR
        # / (never the user-writable /workspace). `torchrig up` replaces the health check
        # with one that runs as the workbench user (plan/run.py health_check).
        "HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \\",
        f'    CMD ["{VENV}/bin/python", "-I", "-m", "torchrig.workbench.health"]',
        "WORKDIR /",
        # Starts as root only so the entrypoint can create the user with the host's UID/GID;
        # it then drops privileges for good (see docs/workbench.md).
        "# hadolint ignore=DL3002",
        "USER 0",
        'ENTRYPOINT ["/usr/bin/tini", "-g", "--", '
        f'"{VENV}/bin/python", "-I", "-m", "torchrig.workbench.entrypoint"]',
    ]


def render_dockerfile(inputs: ImageInputs) -> str:
    lines = [
        "# Rendered by torchrig from torchrig.toml and torchrig.lock. Do not edit: change the",
        "# spec and run `torchrig build`.",
        f"FROM {inputs.base_image}",
        'SHELL ["/bin/bash", "-o", "pipefail", "-c"]',
        "ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 LC_ALL=C.UTF-8",
        "",
        "# system packages",
        *_system(inputs),
    ]
    for name, requirements in inputs.layers:
        lines += ["", *_layer(name, requirements)]
        if requirements.endswith("torch.txt") and inputs.flavour == "devel" and inputs.cuda:
            lines += ["", *_devel()]
    lines += ["", *_torchrig(inputs), "", *_config()]
    if inputs.labels:
        lines += ["", "LABEL \\"]
        items = sorted(inputs.labels.items())
        lines += [
            f"    {key}={json.dumps(value)}" + (" \\" if i < len(items) - 1 else "")
            for i, (key, value) in enumerate(items)
        ]
    return "\n".join(lines) + "\n"
