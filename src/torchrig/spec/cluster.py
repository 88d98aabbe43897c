"""The `[cluster]` section: where the workbench's image runs on many nodes.

One table for what every cluster engine shares (nodes, GPUs per node, the shared folder, the
registry, the rendezvous port, the network interface) and one sub-table per engine
(`[cluster.slurm]`, `[cluster.kubernetes]`). Validation here is about the file alone; whether
an image was pushed (the push record beside the lock) is checked when a cluster file is
written (cluster/target.py), since it depends on the project folder.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from torchrig.spec.invalid import Invalid, StrictTable, must_match, quoted

# An image pinned by digest: NAME@sha256:<64 hex>, NAME being [host[:port]/]path.
DIGEST_REF_RE = re.compile(r"^[a-z0-9][a-z0-9._:/-]*@sha256:[0-9a-f]{64}$")
# A registry to push to: host[:port][/path] (lower case, as registries name repositories).
PUSH_REGISTRY_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9._-]+)*$")
# Slurm: time limits it accepts (sbatch --time): minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
TIME_RE = re.compile(
    r"^([0-9]+|[0-9]+:[0-9]{2}|[0-9]+:[0-9]{2}:[0-9]{2}|[0-9]+-[0-9]+(:[0-9]{2}){0,2})$"
)
# Slurm partition, account and QOS names: no spaces or shell characters.
SLURM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
# One #SBATCH option: a long option with its value, nothing a shell would act on.
SBATCH_OPTION_RE = re.compile(r"^--[a-z][a-z-]*(=[A-Za-z0-9_.,:/@%+=-]+)?$")
# Kubernetes: a DNS-1123 label (namespace) and subdomain (PVC, Secret names).
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
# Node labels: [DNS subdomain prefix/]name, name and value at most 63 of [A-Za-z0-9_.-].
LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")
TOLERATION_KEYS = {"key", "operator", "value", "effect"}
TOLERATION_EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")
IFNAME_RE = re.compile(r"^\^?=?[A-Za-z0-9_.,:-]{1,64}$")
ENV_NAME_RE = re.compile(r"^(NCCL|GLOO|TORCH|CUDA|OMP|UCX|FI)_[A-Z0-9_]+$")
MAX_NODES = 4096
MAX_GPUS_PER_NODE = 16


class Slurm(StrictTable):
    partition: str = Field(
        default="", description='Partition (sbatch --partition); "" for the default.'
    )
    account: str = Field(
        default="", description='Account to charge (sbatch --account); "" for none.'
    )
    qos: str = Field(default="", description='Quality of service (sbatch --qos); "" for none.')
    runtime: Literal["pyxis", "apptainer", "podman", "docker"] = Field(
        default="pyxis",
        description="How each node runs the image: pyxis (srun --container-image, NVIDIA "
        "clusters), apptainer (a .sif made by `torchrig export apptainer`), podman or docker.",
    )
    sif: str = Field(
        default="",
        description='apptainer: the .sif on the shared folder ("" for SHARED/IMAGE.sif).',
    )
    max_requeues: int = Field(
        default=3,
        ge=0,
        le=100,
        description="How often a failed run requeues itself to resume from its last checkpoint.",
    )
    extra: list[str] = Field(
        default_factory=list,
        description='More #SBATCH options, each one long option: ["--constraint=h100"].',
    )

    @field_validator("partition", "account", "qos")
    @classmethod
    def _name(cls, value: str) -> str:
        return must_match(
            value,
            SLURM_NAME_RE.fullmatch,
            "is not a Slurm name",
            "use letters, digits, '_', '.', '+' or '-' (see `sinfo -s`)",
            optional=True,
        )

    @field_validator("extra")
    @classmethod
    def _extra(cls, value: list[str]) -> list[str]:
        for index, option in enumerate(value):
            must_match(
                option,
                SBATCH_OPTION_RE.fullmatch,
                "is not one sbatch long option",
                'write it as "--name=value" with no spaces or shell characters',
                at=(index,),
            )
        return value


class Kubernetes(StrictTable):
    namespace: str = Field(default="default", description="The namespace the job runs in.")
    pvc: str = Field(
        default="",
        description="PersistentVolumeClaim mounted at /workspace on every pod (checkpoints, "
        'logs); "" for none.',
    )
    secret: str = Field(
        default="", description='Secret whose keys become environment variables; "" for none.'
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description='Pod nodeSelector, e.g. {"nvidia.com/gpu.product" = "H100"}.',
    )
    tolerations: list[dict[str, str]] = Field(
        default_factory=list,
        description='Pod tolerations, e.g. [{key = "nvidia.com/gpu", operator = "Exists", '
        'effect = "NoSchedule"}].',
    )

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return must_match(
            value,
            DNS_LABEL_RE.fullmatch,
            "is not a Kubernetes namespace",
            "use lower-case letters, digits and '-', at most 63 (RFC 1123 label)",
        )

    @field_validator("node_selector")
    @classmethod
    def _node_selector(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not LABEL_KEY_RE.fullmatch(key) or len(key.rpartition("/")[2]) > 63:
                raise Invalid(
                    f"{quoted(key)} is not a node label key",
                    'write [prefix/]name, e.g. "nvidia.com/gpu.product" (`kubectl get nodes '
                    "--show-labels` lists them)",
                    at=(key,),
                )
            must_match(
                item,
                LABEL_VALUE_RE.fullmatch,
                "is not a label value",
                "at most 63 letters, digits, '-', '_' or '.', starting and ending with "
                "a letter or digit",
                at=(key,),
            )
        return value

    @field_validator("tolerations")
    @classmethod
    def _tolerations(cls, value: list[dict[str, str]]) -> list[dict[str, str]]:
        for index, toleration in enumerate(value):
            unknown = sorted(set(toleration) - TOLERATION_KEYS)
            if unknown:
                raise Invalid(
                    f"{quoted(unknown[0])} is not a toleration key",
                    "use key, operator, value and effect",
                    at=(index,),
                )
            operator = toleration.get("operator", "Equal")
            effect = toleration.get("effect", "")
            if operator not in ("Equal", "Exists"):
                raise Invalid(
                    f"operator {quoted(operator)} is not Equal or Exists",
                    "use one of them",
                    at=(index,),
                )
            if effect not in TOLERATION_EFFECTS:
                raise Invalid(
                    f"effect {quoted(effect)} is not a taint effect",
                    "use NoSchedule, PreferNoSchedule or NoExecute (or leave it out: all)",
                    at=(index,),
                )
            if operator == "Exists" and toleration.get("value"):
                raise Invalid(
                    "a toleration with operator Exists takes no value",
                    'drop the value, or use operator = "Equal"',
                    at=(index,),
                )
            if operator == "Equal" and not toleration.get("key"):
                raise Invalid(
                    "a toleration with operator Equal needs a key",
                    'set key, or use operator = "Exists" to tolerate every taint',
                    at=(index,),
                )
        return value

    @field_validator("pvc", "secret")
    @classmethod
    def _object_name(cls, value: str) -> str:
        if value and not DNS_SUBDOMAIN_RE.fullmatch(value):
            hint = (
                f" (e.g. {quoted(value.lower())})"
                if DNS_SUBDOMAIN_RE.fullmatch(value.lower())
                else ""
            )
            raise Invalid(
                f"{quoted(value)} is not a Kubernetes object name",
                f"use lower-case letters, digits, '-' and '.'{hint} (RFC 1123 subdomain)",
            )
        return value


class Cluster(StrictTable):
    engine: Literal["slurm", "kubernetes"] = Field(
        default="slurm", description="The cluster's scheduler: slurm or kubernetes."
    )
    nodes: int = Field(default=1, ge=1, le=MAX_NODES, description="Nodes the job runs on.")
    gpus_per_node: int = Field(
        default=0,
        ge=0,
        le=MAX_GPUS_PER_NODE,
        description="GPUs, and so processes, per node; 0 runs one CPU process per node (gloo).",
    )
    time_limit: str = Field(
        default="", description='Wall-clock limit such as "2:00:00" or "1-12" (Slurm); "" for none.'
    )
    shared_dir: str = Field(
        default="",
        description="Slurm: an absolute folder every node sees at the same path; jobs, logs and "
        "checkpoints live there (required for Slurm).",
    )
    registry: str = Field(
        default="",
        description='Where `torchrig push` puts the image: host[:port]/path; "" to name it then.',
    )
    image: str = Field(
        default="",
        description='The image as NAME@sha256:…; "" takes the digest from `torchrig push`\'s '
        "record (torchrig.images).",
    )
    rdzv_port: int = Field(
        default=29500,
        ge=1024,
        le=65535,
        description="torchrun's c10d rendezvous port on the first node.",
    )
    socket_ifname: str = Field(
        default="",
        description="Network interface for NCCL and gloo (NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME), "
        'e.g. "ib0" or "eth0"; "" lets them choose.',
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description='Communication settings for every process, e.g. {NCCL_IB_HCA = "mlx5"} '
        "(NCCL_*, GLOO_*, TORCH_*, CUDA_*, OMP_*, UCX_*, FI_* only; secrets go elsewhere).",
    )
    slurm: Slurm = Field(default_factory=Slurm, description="Slurm settings.")
    kubernetes: Kubernetes = Field(default_factory=Kubernetes, description="Kubernetes settings.")

    @field_validator("time_limit")
    @classmethod
    def _time(cls, value: str) -> str:
        return must_match(
            value,
            TIME_RE.fullmatch,
            "is not a time limit",
            'write minutes ("90"), "H:MM:SS" ("2:00:00") or "D-HH" ("1-12")',
            optional=True,
        )

    @field_validator("shared_dir")
    @classmethod
    def _shared(cls, value: str) -> str:
        if value and (not value.startswith("/") or re.search(r"[\s'\"$`\\]", value)):
            raise Invalid(
                f"{quoted(value)} is not an absolute folder without spaces or quotes",
                'write e.g. "/shared/alice/myproject"',
            )
        return value.rstrip("/") or value

    @field_validator("registry")
    @classmethod
    def _registry(cls, value: str) -> str:
        return must_match(
            value,
            PUSH_REGISTRY_RE.fullmatch,
            "is not a registry",
            'write host[:port]/path, e.g. "ghcr.io/team"',
            optional=True,
        )

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return must_match(
            value,
            DIGEST_REF_RE.fullmatch,
            "is not pinned by digest",
            "write NAME@sha256:<64 hex digits> (`torchrig push` prints it), or leave it "
            "out to use the push record",
            optional=True,
        )

    @field_validator("socket_ifname")
    @classmethod
    def _ifname(cls, value: str) -> str:
        return must_match(
            value,
            IFNAME_RE.fullmatch,
            "is not an interface name",
            'write e.g. "eth0" or "ib0"',
            optional=True,
        )

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, item in value.items():
            must_match(
                name,
                ENV_NAME_RE.fullmatch,
                "is not a communication setting",
                "only NCCL_*, GLOO_*, TORCH_*, CUDA_*, OMP_*, UCX_* and FI_* names belong here",
                at=(name,),
            )
            if re.search(r"[\x00-\x1f'\"$`\\]", item):
                raise Invalid(
                    f"{quoted(item)} has quotes or control characters",
                    "write a plain value",
                    at=(name,),
                )
        return value

    @model_validator(mode="after")
    def _engine_needs(self) -> Cluster:
        if self.engine == "slurm" and not self.shared_dir:
            raise Invalid(
                "Slurm jobs need a folder every node sees",
                'set shared_dir = "/shared/…" (checkpoints and logs live there)',
                at=("shared_dir",),
            )
        return self
