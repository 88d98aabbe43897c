"""The contract between the host side and the workbench image, spelled once.

`torchrig up` (plan/run.py) passes these to the container, the Dockerfile (image/dockerfile.py)
bakes them into the image, and the code that runs inside it (workbench/, doctor/inside.py)
reads them. Changing one here changes both sides together.

Standard library only: this module is imported inside the image, by the entrypoint and the
health check, before anything else is known to be there.
"""

from __future__ import annotations

# Services and the ports they listen on inside the container (published on 127.0.0.1).
SERVICES = ("jupyter", "ssh", "tensorboard", "metrics")
# Services the user starts as a job (`torchrig run serve RUN`), never the entrypoint: `up`
# publishes their port when the spec enables them, TORCHRIG_SERVICES does not name them.
JOB_SERVICES = ("serve",)
# metrics: Prometheus metrics (torchrig.monitor.exporter), on NVIDIA's DCGM exporter's port.
# serve: torchrig serve (uvicorn's default port), also the serving image's port.
PORTS = {"jupyter": 8888, "ssh": 2222, "tensorboard": 6006, "metrics": 9400, "serve": 8000}
JUPYTER_PORT, SSH_PORT, TENSORBOARD_PORT = PORTS["jupyter"], PORTS["ssh"], PORTS["tensorboard"]

# Paths inside the image.
VENV = "/opt/venv"
VENV_PYTHON = f"{VENV}/bin/python"
WORKSPACE = "/workspace"
KEYS_FILE = "/run/torchrig/authorized_keys"
"""Where `up` mounts the host's public keys (read-only); the entrypoint copies them."""
IMAGE_INFO = "/etc/torchrig/image.json"
CONSTRAINTS = "/etc/torchrig/constraints.txt"

# The environment `up` sets (docs/workbench.md). Users may not set TORCHRIG_* themselves
# (launch/envfile.py refuses them in torchrig.env).
ENV_PREFIX = "TORCHRIG_"
ENV_USER = "TORCHRIG_USER"
ENV_UID = "TORCHRIG_UID"
ENV_GID = "TORCHRIG_GID"
ENV_SERVICES = "TORCHRIG_SERVICES"
ENV_KEYS_FILE = "TORCHRIG_AUTHORIZED_KEYS_FILE"
ENV_HF_CACHE = "TORCHRIG_HF_CACHE"
ENV_DEBUG = "TORCHRIG_DEBUG"

SHM_ENGINE_DEFAULT = 64 * 2**20
"""/dev/shm of `docker run` without --shm-size: too small for DataLoader workers and NCCL."""

# Raised limits every workbench runs with: memlock for NCCL over RDMA, an 8x stack.
ULIMITS = {"memlock": -1, "stack": 67108864}

# The public-key types the workbench's sshd accepts (sshd.py sets PubkeyAcceptedAlgorithms
# to match); the lab checks users' keys against the same set.
KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
