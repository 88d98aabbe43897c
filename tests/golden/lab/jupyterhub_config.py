# Rendered by `torchrig lab up` from the [lab] section of torchrig.toml. Do not edit:
# change torchrig.toml and run `torchrig lab up` again.
#
# JupyterHub reads this as root (DockerSpawner needs the Docker socket). This folder is
# root's alone (0700) and nothing here reads a file a lab user can write.
import functools
from pathlib import Path

from torchrig.lab import hooks

c = get_config()  # noqa: F821 (JupyterHub defines it)

# Everything each user's workbench is started with (torchrig/lab/runtime.py).
LAB = {'container_prefix': 'torchrig-t-lab-unit-u-',
 'datasets': '/srv/datasets',
 'env': {'PIP_INDEX_URL': 'https://pypi.example/simple'},
 'gpu_policy': 'exclusive',
 'gpu_pool': ['GPU-a'],
 'gpu_state': '/root/.local/state/torchrig/t-lab-unit/lab/gpus.json',
 'host_config': {'cap_add': ['CHOWN', 'DAC_READ_SEARCH', 'KILL', 'SETGID', 'SETUID'],
                 'cap_drop': ['ALL'],
                 'init': False,
                 'pids_limit': 8192,
                 'security_opt': ['no-new-privileges:true'],
                 'shm_size': '4g',
                 'ulimits': [{'hard': -1, 'name': 'memlock', 'soft': -1}]},
 'image': 'torchrig/t-lab-unit:cpu-0123456789ab',
 'keys_in_container': '/run/torchrig/authorized_keys',
 'name': 't-lab-unit',
 'network': 'torchrig-t-lab-unit-net-lab',
 'ssh_ip': '127.0.0.1',
 'stop_timeout': 120,
 'users': {'alice': {'cpus': 4.0,
                     'gpus': 1,
                     'healthcheck': {'retries': 3,
                                     'test': ['CMD-SHELL', 'setpriv --reuid=71001 …']},
                     'keys_file': '/state/keys/alice',
                     'memory': '16g',
                     'memory_bytes': 17179869184,
                     'ssh_port': 22001,
                     'uid': 71001,
                     'volume': 'torchrig-t-lab-unit-home-alice'},
           'bob': {'cpus': 2.0,
                   'gpus': 0,
                   'healthcheck': None,
                   'keys_file': '',
                   'memory': '8g',
                   'memory_bytes': 8589934592,
                   'ssh_port': 22002,
                   'uid': 71002,
                   'volume': 'torchrig-t-lab-unit-home-bob'}},
 'users_per_gpu': 2}

# --- the hub and its proxy ---------------------------------------------------------
c.JupyterHub.bind_url = "http://127.0.0.1:8000"
c.JupyterHub.hub_bind_url = "http://172.30.0.1:8081"
c.JupyterHub.db_url = "sqlite:////root/.local/state/torchrig/t-lab-unit/lab/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "/root/.local/state/torchrig/t-lab-unit/lab/cookie_secret"
c.JupyterHub.pid_file = "/root/.local/state/torchrig/t-lab-unit/lab/jupyterhub.pid"
c.ConfigurableHTTPProxy.command = ["/usr/local/bin/configurable-http-proxy"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:8001"
c.ConfigurableHTTPProxy.auth_token = Path("/root/.local/state/torchrig/t-lab-unit/lab/proxy_token").read_text().strip()
c.ConfigurableHTTPProxy.pid_file = "/root/.local/state/torchrig/t-lab-unit/lab/proxy.pid"
# A restart of the hub leaves the users' servers (and their files) as they are.
c.JupyterHub.cleanup_servers = False

# --- who may log in -----------------------------------------------------------------
c.JupyterHub.authenticator_class = "nativeauthenticator.NativeAuthenticator"
# No sign-up: torchrig gives each user a first password; they change it at
# /hub/change-password.
c.NativeAuthenticator.enable_signup = False
c.NativeAuthenticator.check_common_password = True
c.NativeAuthenticator.minimum_password_length = 12
c.NativeAuthenticator.allowed_failed_logins = 5
c.NativeAuthenticator.seconds_before_next_try = 60
c.Authenticator.allowed_users = {'alice', 'bob'}
# lab.admins get the lab-admin role below, never JupyterHub's admin: that role holds
# access:servers (open anyone's notebooks) whatever admin_access says since 2.0.
c.Authenticator.admin_users = set()

# --- each user's server: a workbench container from the lab's one image -------------
c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.DockerSpawner.image = LAB["image"]
# Built here by torchrig, tagged by content: never pulled.
c.DockerSpawner.pull_policy = "never"
c.DockerSpawner.network_name = LAB["network"]
# The hub reaches servers on the lab network; no Jupyter port is published.
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.port = 8888
c.DockerSpawner.name_template = LAB["container_prefix"] + "{username}"
# Containers are made fresh at each start (a new image reaches everyone); files live in
# each user's home volume.
c.DockerSpawner.remove = True
# The image's entrypoint makes the user, drops root and supervises
# jupyterhub-singleuser and sshd (torchrig/workbench/hub_mode.py).
c.DockerSpawner.cmd = ["jupyterhub-singleuser"]
c.DockerSpawner.start_timeout = 180
c.DockerSpawner.http_timeout = 120
c.Spawner.default_url = "/lab"
c.Spawner.pre_spawn_hook = functools.partial(hooks.pre_spawn, LAB)
c.Spawner.post_stop_hook = functools.partial(hooks.post_stop, LAB)

# --- services: idle culling and torchrig's own client ---------------------------------
c.JupyterHub.services = [
    {
        "name": "idle-culler",
        "command": ["/opt/torchrig/venv/bin/python", "-I", "-m", "jupyterhub_idle_culler", "--timeout=3600"],
    },
    {
        "name": "torchrig",
        "api_token": Path("/root/.local/state/torchrig/t-lab-unit/lab/service_token").read_text().strip(),
    },
]
c.JupyterHub.load_roles = [
    {"name": "idle-culler", "scopes": ['list:users', 'read:users:activity', 'read:servers', 'delete:servers'], "services": ["idle-culler"]},
    {"name": "torchrig", "scopes": ['list:users', 'read:users', 'read:users:activity', 'read:servers', 'servers', 'tokens'], "services": ["torchrig"]},
    {"name": "lab-admin", "scopes": ['admin-ui', 'list:users', 'read:users', 'read:users:activity', 'read:servers', 'admin:servers', 'read:hub'], "users": ['alice']},
]
