"""jupyterhub_config.py, rendered: one file a person can read, a short block per concern.

Pure (golden-tested): the LAB data, the hub's addresses and the state folder's paths in,
text out. The file imports only torchrig.lab.hooks and the standard library.
"""

from __future__ import annotations

import pprint
from dataclasses import dataclass
from typing import Any

from torchrig.lab.state import LabState
from torchrig.spec.lab import Lab

CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
# torchrig's own service: `lab status`, the tests and the benchmark. It may start and stop
# servers and make tokens; it can never open a user's server (no access:servers).
TORCHRIG_SCOPES = [
    "list:users",
    "read:users",
    "read:users:activity",
    "read:servers",
    "servers",
    "tokens",
]

# A lab admin sees users and starts or stops their servers. Left out on purpose, as each
# would let them into someone's server: access:servers; tokens (make a token as alice);
# admin:users (make yourself a full admin); shares; proxy (reroute /user/alice/);
# admin:services.
LAB_ADMIN_SCOPES = [
    "admin-ui",
    "list:users",
    "read:users",
    "read:users:activity",
    "read:servers",
    "admin:servers",
    "read:hub",
]


@dataclass(frozen=True)
class HubAddresses:
    gateway: str
    """The lab network's gateway on the host: where containers reach the hub's API."""
    python: str
    """The interpreter that runs the hub (the culler runs with it too)."""
    proxy: str
    """configurable-http-proxy's absolute path."""


def render_config(lab: Lab, runtime: dict[str, Any], state: LabState, at: HubAddresses) -> str:
    scheme = "https" if lab.tls_cert else "http"
    users = sorted(runtime["users"])
    lines = [
        "# Rendered by `torchrig lab up` from the [lab] section of torchrig.toml. Do not edit:",
        "# change torchrig.toml and run `torchrig lab up` again.",
        "#",
        "# JupyterHub reads this as root (DockerSpawner needs the Docker socket). This folder is",
        "# root's alone (0700) and nothing here reads a file a lab user can write.",
        "import functools",
        "from pathlib import Path",
        "",
        "from torchrig.lab import hooks",
        "",
        "c = get_config()  # noqa: F821 (JupyterHub defines it)",
        "",
        "# Everything each user's workbench is started with (torchrig/lab/runtime.py).",
        f"LAB = {pprint.pformat(runtime, width=96, sort_dicts=True)}",
        "",
        "# --- the hub and its proxy ---------------------------------------------------------",
        f'c.JupyterHub.bind_url = "{scheme}://{lab.hub_ip}:{lab.hub_port}"',
        f'c.JupyterHub.hub_bind_url = "http://{at.gateway}:{lab.hub_api_port}"',
        f'c.JupyterHub.db_url = "sqlite:///{state.database}"',
        f'c.JupyterHub.cookie_secret_file = "{state.cookie_secret}"',
        f'c.JupyterHub.pid_file = "{state.hub_pid}"',
        f'c.ConfigurableHTTPProxy.command = ["{at.proxy}"]',
        f'c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{lab.proxy_api_port}"',
        f'c.ConfigurableHTTPProxy.auth_token = Path("{state.proxy_token}").read_text().strip()',
        f'c.ConfigurableHTTPProxy.pid_file = "{state.proxy_pid}"',
        "# A restart of the hub leaves the users' servers (and their files) as they are.",
        "c.JupyterHub.cleanup_servers = False",
    ]
    if lab.tls_cert:
        lines += [
            f'c.JupyterHub.ssl_cert = "{lab.tls_cert}"',
            f'c.JupyterHub.ssl_key = "{lab.tls_key}"',
        ]
    lines += [
        "",
        "# --- who may log in -----------------------------------------------------------------",
    ]
    if lab.auth == "native":
        lines += [
            'c.JupyterHub.authenticator_class = "nativeauthenticator.NativeAuthenticator"',
            "# No sign-up: torchrig gives each user a first password; they change it at",
            "# /hub/change-password.",
            "c.NativeAuthenticator.enable_signup = False",
            "c.NativeAuthenticator.check_common_password = True",
            "c.NativeAuthenticator.minimum_password_length = 12",
            "c.NativeAuthenticator.allowed_failed_logins = 5",
            "c.NativeAuthenticator.seconds_before_next_try = 60",
        ]
    else:
        lines += ['c.JupyterHub.authenticator_class = "pam"']
    lines += [
        f"c.Authenticator.allowed_users = {_set(users)}",
        "# lab.admins get the lab-admin role below, never JupyterHub's admin: that role holds",
        "# access:servers (open anyone's notebooks) whatever admin_access says since 2.0.",
        "c.Authenticator.admin_users = set()",
        "",
        "# --- each user's server: a workbench container from the lab's one image -------------",
        'c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"',
        'c.DockerSpawner.image = LAB["image"]',
        "# Built here by torchrig, tagged by content: never pulled.",
        'c.DockerSpawner.pull_policy = "never"',
        'c.DockerSpawner.network_name = LAB["network"]',
        "# The hub reaches servers on the lab network; no Jupyter port is published.",
        "c.DockerSpawner.use_internal_ip = True",
        "c.DockerSpawner.port = 8888",
        'c.DockerSpawner.name_template = LAB["container_prefix"] + "{username}"',
        "# Containers are made fresh at each start (a new image reaches everyone); files live in",
        "# each user's home volume.",
        "c.DockerSpawner.remove = True",
        "# The image's entrypoint makes the user, drops root and supervises",
        "# jupyterhub-singleuser and sshd (torchrig/workbench/hub_mode.py).",
        'c.DockerSpawner.cmd = ["jupyterhub-singleuser"]',
        "c.DockerSpawner.start_timeout = 180",
        "c.DockerSpawner.http_timeout = 120",
        'c.Spawner.default_url = "/lab"',
        "c.Spawner.pre_spawn_hook = functools.partial(hooks.pre_spawn, LAB)",
        "c.Spawner.post_stop_hook = functools.partial(hooks.post_stop, LAB)",
        "",
        "# --- services: idle culling and torchrig's own client ---------------------------------",
        "c.JupyterHub.services = [",
    ]
    if lab.idle_timeout:
        lines += [
            "    {",
            '        "name": "idle-culler",',
            f'        "command": ["{at.python}", "-I", "-m", "jupyterhub_idle_culler",'
            f' "--timeout={lab.idle_timeout}"],',
            "    },",
        ]
    lines += [
        "    {",
        '        "name": "torchrig",',
        f'        "api_token": Path("{state.service_token}").read_text().strip(),',
        "    },",
        "]",
        "c.JupyterHub.load_roles = [",
    ]
    if lab.idle_timeout:
        lines += [
            f'    {{"name": "idle-culler", "scopes": {CULLER_SCOPES!r}, '
            '"services": ["idle-culler"]},',
        ]
    lines += [
        f'    {{"name": "torchrig", "scopes": {TORCHRIG_SCOPES!r}, "services": ["torchrig"]}},',
        f'    {{"name": "lab-admin", "scopes": {LAB_ADMIN_SCOPES!r}, '
        f'"users": {sorted(lab.admins)!r}}},',
        "]",
    ]
    return "\n".join(lines) + "\n"


def _set(names: list[str]) -> str:
    """A set literal in a stable order (golden files)."""
    return "{" + ", ".join(repr(n) for n in names) + "}" if names else "set()"
