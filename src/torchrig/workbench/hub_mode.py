"""A workbench spawned by JupyterHub (`torchrig lab`): Jupyter is the hub's single-user server.

DockerSpawner sets JUPYTERHUB_SERVICE_URL (where to listen: http://0.0.0.0:8888/user/NAME/),
the server's API token and the hub's API URL. Then the supervisor runs
`jupyterhub-singleuser`, which lets in only requests the hub vouches for (the user's own
token or cookie, or an admin's with access to this server), instead of JupyterLab with
torchrig's token: nobody reaches it except through the hub's proxy with that user's identity.
sshd and TensorBoard run as in any workbench.

Standard library only: imported by the entrypoint and the health check.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

HUB_ENV = "JUPYTERHUB_SERVICE_URL"
PREFIX_ENV = "JUPYTERHUB_SERVICE_PREFIX"


def spawned_by_hub(environ: Mapping[str, str]) -> bool:
    return bool(environ.get(HUB_ENV))


def service_prefix(environ: Mapping[str, str]) -> str:
    """The URL prefix the server answers under: /user/NAME/ in a lab, / otherwise."""
    if not spawned_by_hub(environ):
        return "/"
    prefix = environ.get(PREFIX_ENV) or urlsplit(environ[HUB_ENV]).path or "/"
    return prefix if prefix.endswith("/") else prefix + "/"


def singleuser_program(venv: str) -> str:
    return f"{venv}/bin/jupyterhub-singleuser"


def singleuser_argv(venv: str, root_dir: str) -> tuple[str, ...]:
    return (
        singleuser_program(venv),
        # The user's volume is their home; there is no project folder in a lab.
        f"--ServerApp.root_dir={root_dir}",
        # The hub knows this port; moving to 8889 would strand the proxy's route.
        "--ServerApp.port_retries=0",
        "--ServerApp.open_browser=False",
        # No calls to PyPI from a workbench (no network at run time beyond what you do).
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    )
