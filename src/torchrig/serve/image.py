"""`torchrig export serving`: a slim serving image, rendered from the workbench's Plan.

The serving image is the workbench image (the same lock, so the same torch, CUDA libraries
and packages, byte for byte) with what serving does not need taken out, then flattened:

    FROM <plan.image.tag> AS workbench      the built workbench (its tag from the Plan)
      apt-get purge   the compiler (gcc, g++, libc6-dev, python3-dev) and the SSH server
      pip uninstall   Jupyter (every locked jupyter*/notebook/ipykernel package) and, in a
                      devel image, nvcc's wheels
      a system user `serve` (uid 10001), no login, no home
    FROM scratch; COPY --from=workbench / /  one layer: the removed files are really gone
    COPY model/ /model/                      the run's final/ (or export/) folder
    USER 10001, EXPOSE 8000, HEALTHCHECK /healthz, ENTRYPOINT torchrig serve /model

Nothing here derives a name, tag or path: the image comes from `plan.image.tag`, the venv
and ports from torchrig.contract, the package names from the lock's requirement files in the
Plan. The server and the model loaders (NEEDED) must be in that lock ([services.serve] puts
them there); when they are not, the renderer says so (a serving image must not install
unlocked code).
"""

from __future__ import annotations

import re
from typing import Any

from torchrig import contract
from torchrig.errors import UsageError

SERVE_PORT = contract.PORTS["serve"]
SERVE_UID = 10001
TOKEN_FILE = "/run/secrets/serve-token"
NEEDED = ("fastapi", "uvicorn", "prometheus-client", "transformers", "safetensors")
PURGED_SYSTEM = ("gcc", "g++", "libc6-dev", "python3-dev", "openssh-server")
_JUPYTER = re.compile(r"^(jupyter.*|notebook|ipykernel|ipywidgets|widgetsnbextension|terminado)$")
_COMPILER = re.compile(r"^nvidia-cuda-nvcc.*$")
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", re.MULTILINE)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_names(plan: Any) -> list[str]:
    """Package names in the Plan's locked requirement files (requirements/*.txt)."""
    names: set[str] = set()
    for path, text in plan.image.texts.items():
        if path.startswith("requirements/") and path.endswith(".txt"):
            names.update(_normal(m) for m in _REQUIREMENT.findall(text))
    return sorted(names)


def render_serving_dockerfile(plan: Any) -> str:
    tag = plan.image.tag
    if tag is None:
        why = "; ".join(plan.image.pending) or "the image tag is not known yet"
        raise UsageError(f"no workbench image to build the serving image from ({why})",
                         "run `torchrig build` first")  # fmt: skip
    names = locked_names(plan)
    missing = [n for n in NEEDED if n not in names]
    if missing:
        raise UsageError(
            f"the lock has no {', '.join(missing)}, which torchrig serve needs",
            "set enabled = true under [services.serve] in torchrig.toml, then torchrig lock "
            "and torchrig build",
        )
    removed = [n for n in names if _JUPYTER.match(n) or _COMPILER.match(n)]
    venv = contract.VENV
    steps = [
        "apt-get purge -y --auto-remove " + " ".join(PURGED_SYSTEM),
        "rm -rf /var/lib/apt/lists/* /etc/ssh /usr/share/jupyter",
    ]
    if removed:
        steps.append(f"{venv}/bin/python -m pip uninstall -y --no-input " + " ".join(removed))
    steps.append(
        f"useradd --system --uid {SERVE_UID} --no-create-home --home-dir /nonexistent "
        "--shell /usr/sbin/nologin serve"
    )
    health = (
        "import urllib.request; "
        f"urllib.request.urlopen('http://127.0.0.1:{SERVE_PORT}/healthz', timeout=2)"
    )
    entry = [
        "/usr/bin/tini", "--", f"{venv}/bin/python", "-I", "-m", "torchrig.cli.main", "serve",
        "/model", "--host", "0.0.0.0", "--port", str(SERVE_PORT), "--token-file", TOKEN_FILE,
    ]  # fmt: skip
    quoted = ", ".join(f'"{part}"' for part in entry)
    lines = [
        f"# Rendered by `torchrig export serving` from the Plan of {plan.project}: the",
        f"# workbench image {tag} (same lock), without Jupyter, SSH or a compiler.",
        f"FROM {tag} AS workbench",
        "# Root only in this stage, to remove packages; the image runs as serve (below).",
        "# hadolint ignore=DL3002",
        "USER 0",
        'SHELL ["/bin/bash", "-o", "pipefail", "-c"]',
        "RUN " + " \\\n && ".join(steps),
        "",
        "# One layer: what was removed above is not hidden under it, it is gone.",
        "FROM scratch",
        "# hadolint ignore=DL3067",
        "COPY --from=workbench / /",
        f"ENV PATH={venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\",
        "    LANG=C.UTF-8 LC_ALL=C.UTF-8 PYTHONUNBUFFERED=1 \\",
        "    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1",
        "COPY model/ /model/",
        f"USER {SERVE_UID}",
        "WORKDIR /",
        f"EXPOSE {SERVE_PORT}",
        "HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \\",
        f'    CMD ["{venv}/bin/python", "-I", "-c", "{health}"]',
        f"ENTRYPOINT [{quoted}]",
    ]
    return "\n".join(lines) + "\n"
