"""A training run on Kubernetes, two ways: a Kubeflow Trainer v2 TrainJob, or a plain
Indexed Job with a headless Service for clusters without the operator.

Both run the same pinned image (by digest), the same command under torchrun, as the same
non-root user, with the same volumes:

    /dev/shm    a memory-backed emptyDir sized like the workbench's --shm-size (DataLoader
                workers pass batches through it, NCCL uses it between local ranks; the
                64 MiB default breaks both)
    /workspace  the PersistentVolumeClaim the spec names: code, data, runs and checkpoints,
                shared by every node so a resubmitted job resumes from the last checkpoint
    /tmp        an emptyDir: the root filesystem is read-only; HOME, Triton's and
                TorchInductor's caches live here

TrainJob (trainer.kubeflow.org/v1alpha1, Trainer v2.3): the `torch-distributed`
ClusterTrainingRuntime starts one pod per node and sets PET_NNODES, PET_NPROC_PER_NODE,
PET_NODE_RANK, PET_MASTER_ADDR and PET_MASTER_PORT, which torchrun reads. Pod settings the
TrainJob has no field for go in one `runtimePatches` entry owned by torchrig; the `node`
container's environment may only be set through `trainer.env` (the operator refuses it in a
patch), so secrets come in as one secretKeyRef per name.

Indexed Job: `completionMode: Indexed` gives each pod an index 0…N-1 (the annotation
batch.kubernetes.io/job-completion-index) and, with `subdomain` naming the headless
Service, a DNS name `<job>-<index>.<service>`. torchrun gets the index as --node-rank and
pod 0's name as the rendezvous address (static rendezvous, as the TrainJob's runtime does).

Pure: everything comes in as a KubeJob, so both files are golden-tested and validated
against the Kubernetes OpenAPI schema and the TrainJob CRD in tests/unit/test_kube_*.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TRAINER_API = "trainer.kubeflow.org/v1alpha1"
TRAINER_RUNTIME = "torch-distributed"
TRAINER_CONTAINER = "node"
"""The container and replicated job of the torch-distributed runtime (Trainer v2.3)."""
PATCH_MANAGER = "torchrig.dev/export-kubernetes"
JOB_CONTAINER = "trainer"
RENDEZVOUS_PORT = 29500  # torchrun's default; the TrainJob's runtime sets PET_MASTER_PORT
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
GPU_RESOURCE = "nvidia.com/gpu"
TINI = "/usr/bin/tini"
"""PID 1 in the pod as in the workbench: forwards SIGTERM to the whole process group (-g)
so training gets its stop signal, and reaps zombies of DataLoader workers."""
LABEL_NAME = "app.kubernetes.io/name"
LABEL_PART = "app.kubernetes.io/part-of"
LABEL_MANAGED = "app.kubernetes.io/managed-by"
GI, MI = 1 << 30, 1 << 20


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: str = "Equal"
    value: str = ""
    effect: str = ""


@dataclass(frozen=True)
class KubeJob:
    """Everything both manifests say, from the Plan, the spec's [cluster] and the push record."""

    name: str
    """The Job/TrainJob and Service name: an RFC 1035 label, short enough for pod names."""
    project: str
    namespace: str | None
    image: str
    """name@sha256:… from torchrig.images (cluster_image)."""
    nodes: int
    gpus_per_node: int
    """0: a CPU job, one process per node."""
    command: tuple[str, ...]
    """What torchrun starts on every process: the program and its arguments (--no-python)."""
    pvc: str
    workspace: str
    shm_bytes: int
    uid: int
    gid: int
    user: str
    stop_timeout_s: int
    """Seconds between SIGTERM and SIGKILL: the time a final checkpoint gets."""
    secret: str | None = None
    secret_keys: tuple[str, ...] = ()
    """The variable names torchrig.env sets; their values are in the Secret, never here."""
    env: tuple[tuple[str, str], ...] = ()
    """Plain settings (NCCL_*, GLOO_*): no secrets."""
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    cpus: float = 0.0
    memory_bytes: int | None = None
    deadline_s: int | None = None
    rendezvous_port: int = RENDEZVOUS_PORT
    """The Indexed Job's torchrun port on pod 0 (the TrainJob's runtime picks its own)."""

    @property
    def procs_per_node(self) -> int:
        return self.gpus_per_node or 1


def quantity(size: int) -> str:
    """Bytes as a Kubernetes quantity: 16Gi, 512Mi, or plain bytes."""
    if size % GI == 0:
        return f"{size // GI}Gi"
    if size % MI == 0:
        return f"{size // MI}Mi"
    return str(size)


def cpu_quantity(cpus: float) -> str:
    return str(int(cpus)) if cpus == int(cpus) else f"{round(cpus * 1000)}m"


def _labels(job: KubeJob) -> dict[str, str]:
    return {LABEL_NAME: job.name, LABEL_PART: job.project, LABEL_MANAGED: "torchrig"}


def _metadata(job: KubeJob, name: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name or job.name}
    if job.namespace:
        meta["namespace"] = job.namespace
    meta["labels"] = _labels(job)
    return meta


def _resources(job: KubeJob) -> dict[str, Any]:
    limits: dict[str, str] = {}
    if job.gpus_per_node:
        limits[GPU_RESOURCE] = str(job.gpus_per_node)
    if job.cpus:
        limits["cpu"] = cpu_quantity(job.cpus)
    if job.memory_bytes:
        limits["memory"] = quantity(job.memory_bytes)
    return {"limits": limits} if limits else {}


def _env(job: KubeJob) -> list[dict[str, Any]]:
    """HOME on the writable /tmp; USER and LOGNAME because the image has no passwd entry
    for this UID (getpass.getuser(), which TorchInductor calls, reads them first); the
    Hugging Face cache on the shared volume so each node does not download again."""
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": "/tmp"},
        {"name": "USER", "value": job.user},
        {"name": "LOGNAME", "value": job.user},
        {"name": "HF_HOME", "value": f"{job.workspace}/.cache/huggingface"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    env += [{"name": k, "value": v} for k, v in job.env]
    if job.secret:
        env += [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": job.secret, "key": key}}}
            for key in job.secret_keys
        ]
    return env


def _pod_security(job: KubeJob) -> dict[str, Any]:
    # fsGroup: the PVC's files are group-writable by the workbench user's group, as the
    # project folder is on the host; OnRootMismatch skips the recursive chown when it is.
    return {
        "runAsUser": job.uid,
        "runAsGroup": job.gid,
        "runAsNonRoot": True,
        "fsGroup": job.gid,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }


def _volumes(job: KubeJob) -> list[dict[str, Any]]:
    return [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": quantity(job.shm_bytes)}},
        {"name": "workspace", "persistentVolumeClaim": {"claimName": job.pvc}},
        {"name": "tmp", "emptyDir": {}},
    ]


def _mounts(job: KubeJob) -> list[dict[str, Any]]:
    return [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "workspace", "mountPath": job.workspace},
        {"name": "tmp", "mountPath": "/tmp"},
    ]


def _placement(job: KubeJob) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if job.node_selector:
        out["nodeSelector"] = dict(job.node_selector)
    if job.tolerations:
        out["tolerations"] = [_toleration(t) for t in job.tolerations]
    return out


def _toleration(t: Toleration) -> dict[str, str]:
    out = {"key": t.key, "operator": t.operator}
    if t.value:
        out["value"] = t.value
    if t.effect:
        out["effect"] = t.effect
    return out


def train_job(job: KubeJob) -> dict[str, Any]:
    """The Kubeflow Trainer v2 TrainJob."""
    trainer: dict[str, Any] = {
        "image": job.image,
        # The runtime's container starts in the image's WORKDIR (/): env --chdir moves to
        # the workspace, so the recipes' relative --out paths land on the volume.
        "command": [
            TINI,
            "-g",
            "--",
            "env",
            f"--chdir={job.workspace}",
            "torchrun",
            "--no-python",
            *job.command,
        ],
        "numNodes": job.nodes,
        "numProcPerNode": job.procs_per_node,
        "env": _env(job),
    }
    resources = _resources(job)
    if resources:
        trainer["resourcesPerNode"] = resources
    pod_spec: dict[str, Any] = {
        "securityContext": _pod_security(job),
        "terminationGracePeriodSeconds": job.stop_timeout_s,
        **_placement(job),
        "volumes": _volumes(job),
        "containers": [
            {
                "name": TRAINER_CONTAINER,
                "securityContext": _container_security(),
                "volumeMounts": _mounts(job),
            }
        ],
    }
    spec: dict[str, Any] = {
        "runtimeRef": {
            "apiGroup": "trainer.kubeflow.org",
            "kind": "ClusterTrainingRuntime",
            "name": TRAINER_RUNTIME,
        },
    }
    if job.deadline_s:
        spec["activeDeadlineSeconds"] = job.deadline_s
    spec["trainer"] = trainer
    spec["runtimePatches"] = [
        {
            "manager": PATCH_MANAGER,
            "trainingRuntimeSpec": {
                "template": {
                    "spec": {
                        "replicatedJobs": [
                            {
                                "name": TRAINER_CONTAINER,
                                "template": {"spec": {"template": {"spec": pod_spec}}},
                            }
                        ]
                    }
                }
            },
        }
    ]
    return {"apiVersion": TRAINER_API, "kind": "TrainJob", "metadata": _metadata(job), "spec": spec}


def headless_service(job: KubeJob) -> dict[str, Any]:
    """DNS names for the Job's pods; publishNotReadyAddresses so pod 0 resolves as soon as
    it has an address, before any readiness (the other nodes rendezvous with it at start)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(job),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {LABEL_NAME: job.name},
            "ports": [{"name": "rendezvous", "port": job.rendezvous_port}],
        },
    }


def indexed_job(job: KubeJob) -> dict[str, Any]:
    """The Indexed Job: pod i is node i; pod 0 hosts the rendezvous."""
    master = f"{job.name}-0.{job.name}"
    command = [
        TINI, "-g", "--", "torchrun",
        f"--nnodes={job.nodes}",
        f"--nproc-per-node={job.procs_per_node}",
        "--node-rank=$(NODE_RANK)",
        f"--master-addr={master}",
        f"--master-port={job.rendezvous_port}",
        "--no-python", *job.command,
    ]  # fmt: skip
    env = [
        {
            "name": "NODE_RANK",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}},
        },
        *_env(job),
    ]
    container: dict[str, Any] = {
        "name": JOB_CONTAINER,
        "image": job.image,
        "workingDir": job.workspace,
        "command": command,
        "env": env,
        "ports": [{"name": "rendezvous", "containerPort": job.rendezvous_port}],
    }
    resources = _resources(job)
    if resources:
        container["resources"] = resources
    container["securityContext"] = _container_security()
    container["volumeMounts"] = _mounts(job)
    pod_spec: dict[str, Any] = {
        "subdomain": job.name,
        "restartPolicy": "Never",
        # Training needs no Kubernetes API token, and no service variables in its env.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security(job),
        "terminationGracePeriodSeconds": job.stop_timeout_s,
        **_placement(job),
        "containers": [container],
        "volumes": _volumes(job),
    }
    spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": job.nodes,
        "parallelism": job.nodes,
        # One failed node fails the run: the others cannot finish without it. Submit it
        # again to resume from the last checkpoint on the volume.
        "backoffLimit": 0,
    }
    if job.deadline_s:
        spec["activeDeadlineSeconds"] = job.deadline_s
    spec["template"] = {"metadata": {"labels": _labels(job)}, "spec": pod_spec}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _metadata(job), "spec": spec}
