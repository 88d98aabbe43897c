"""From a Plan, the spec's [cluster] and the push record to the two Kubernetes files.

Every fact comes from somewhere else: the user, shm, limits and stop timeout from the Plan;
nodes, GPUs per node, the rendezvous port, the network interface, namespace, PVC, Secret,
node selector and tolerations from [cluster]; the image from the push record
(push/record.cluster_image: a digest, never a tag); the secret's variable names (never
values) from torchrig.env. This module only checks that they fit Kubernetes and hands them
to the renderer (kube/manifests.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from torchrig import contract, userfiles
from torchrig.errors import SpecError, UsageError
from torchrig.kube.manifests import KubeJob, Toleration, headless_service, indexed_job, train_job
from torchrig.kube.yamltext import documents
from torchrig.plan.plan import Plan
from torchrig.push.record import DIGEST_REF, cluster_image
from torchrig.spec.cluster import Cluster
from torchrig.spec.model import Spec, parse_size

# Pod names are <job>-<index> (Indexed Job) and <trainjob>-node-<i>-<j> (JobSet), and a
# pod's hostname is at most 63 characters: 40 leaves room for both with 4096 nodes.
MAX_NAME = 40
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FILES = {"trainjob": "trainjob.yaml", "job": "job.yaml"}


@dataclass(frozen=True)
class Request:
    """What the command line adds: the program, and overrides of [cluster]."""

    command: tuple[str, ...]
    name: str | None = None
    image: str | None = None
    nodes: int | None = None
    gpus_per_node: int | None = None


def job_name(plan: Plan, given: str | None) -> str:
    """--name as given (checked), else the Plan's container name made a DNS label."""
    if given is not None:
        if not NAME_RE.fullmatch(given) or len(given) > MAX_NAME:
            raise UsageError(
                f"--name {given!r} is not a Kubernetes job name",
                f"use lower-case letters, digits and '-', starting with a letter, at most "
                f"{MAX_NAME} characters",
            )
        return given
    name = re.sub(r"[^a-z0-9-]+", "-", plan.names.container.lower())
    return name[:MAX_NAME].strip("-")


def seconds(limit: str) -> int | None:
    """A Slurm time limit ("90", "1:30", "2:00:00", "1-12", "1-12:30", "1-12:30:00") in
    seconds; None for none. [cluster] time_limit has checked the form."""
    if not limit:
        return None
    days, _, rest = limit.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:  # D-H, D-H:M, D-H:M:S
        hours, minutes, secs = ([*parts, 0, 0])[:3]
        return ((int(days) * 24 + hours) * 60 + minutes) * 60 + secs
    if len(parts) == 1:  # minutes
        return parts[0] * 60
    if len(parts) == 2:  # minutes:seconds
        return parts[0] * 60 + parts[1]
    return (parts[0] * 60 + parts[1]) * 60 + parts[2]


def secret_keys(env_file: Path | None, project_dir: Path) -> tuple[str, ...]:
    """The names torchrig.env sets, read as the project's owner; its values stay unread
    here and never reach a manifest."""
    if env_file is None or not (env_file.exists() or env_file.is_symlink()):
        return ()
    text = userfiles.read_text(
        env_file, project_dir, "torchrig.env", "make it a readable file of NAME=value lines"
    )
    keys: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name = stripped.split("=", 1)[0].strip()
        if not ENV_KEY_RE.fullmatch(name):
            raise UsageError(
                f"{env_file}, line {number}: {name!r} is not a variable name a Secret key can be",
                "use letters, digits and '_' (a Secret made with --from-env-file needs them)",
            )
        if name not in keys:
            keys.append(name)
    return tuple(keys)


def _cluster(spec: Spec) -> Cluster:
    # A spec without [cluster] exports with the defaults: one node, CPU, namespace default,
    # and then stops at the PVC, which it must name.
    return spec.cluster if spec.cluster is not None else Cluster(engine="kubernetes")


def kube_job(plan: Plan, spec: Spec, project_dir: Path, request: Request) -> KubeJob:
    cluster = _cluster(spec)
    kube = cluster.kubernetes
    if not kube.pvc:
        raise SpecError(
            "Kubernetes jobs need a PersistentVolumeClaim for /workspace (code, runs and "
            "checkpoints every node shares)",
            'set pvc = "…" under [cluster.kubernetes] (`kubectl get pvc -n '
            f"{kube.namespace}` lists them)",
            key="cluster.kubernetes.pvc",
        )
    requested = request.image or cluster.image or None
    if plan.image.tag is None and requested is None:
        raise UsageError(
            "the image this spec builds is not known yet ("
            + "; ".join(plan.image.pending or ["not built"])
            + ")",
            "run `torchrig build` and `torchrig push` first",
        )
    image = cluster_image(project_dir, plan.image.tag or "", requested)
    name = job_name(plan, request.name)
    shm = parse_size(plan.run.shm_size) if isinstance(plan.run.shm_size, str) else None
    shm_bytes = shm if shm is not None else int(plan.run.shm_size or contract.SHM_ENGINE_DEFAULT)
    memory = plan.run.memory
    memory_bytes = parse_size(memory) if isinstance(memory, str) and memory else memory or None
    if memory_bytes and shm_bytes >= memory_bytes:
        raise SpecError(
            f"/dev/shm ({plan.run.shm_size}) would take all of the memory limit "
            f"({memory}): on Kubernetes a memory-backed emptyDir counts against it",
            "set resources.shm below resources.memory (a quarter of it is usual)",
            key="resources.shm",
        )
    env = dict(cluster.env)
    if cluster.socket_ifname:
        env.setdefault("NCCL_SOCKET_IFNAME", cluster.socket_ifname)
        env.setdefault("GLOO_SOCKET_IFNAME", cluster.socket_ifname)
    keys = secret_keys(plan.run.env_file, project_dir)
    secret = kube.secret or (f"{name}-env" if keys else None)
    if kube.secret and not keys:
        raise UsageError(
            f"[cluster.kubernetes] secret = {kube.secret!r}, but there is no torchrig.env to "
            "say which of its keys the job needs",
            "put the names (NAME=value) in torchrig.env beside torchrig.toml and create the "
            "Secret from it with kubectl create secret generic --from-env-file=torchrig.env",
        )
    nodes = request.nodes or cluster.nodes
    gpus = request.gpus_per_node if request.gpus_per_node is not None else cluster.gpus_per_node
    return KubeJob(
        name=name,
        project=spec.project.name,
        namespace=kube.namespace,
        image=image,
        nodes=nodes,
        gpus_per_node=gpus,
        command=request.command,
        pvc=kube.pvc,
        workspace=contract.WORKSPACE,
        shm_bytes=shm_bytes,
        uid=plan.user.uid,
        gid=plan.user.gid,
        user=plan.user.name,
        stop_timeout_s=plan.run.stop_timeout or 120,
        secret=secret,
        secret_keys=keys,
        env=tuple(sorted(env.items())),
        node_selector=dict(kube.node_selector),
        tolerations=tuple(Toleration(**t) for t in kube.tolerations),
        cpus=float(plan.run.cpus or 0.0),
        memory_bytes=int(memory_bytes) if memory_bytes else None,
        deadline_s=seconds(cluster.time_limit),
        rendezvous_port=cluster.rdzv_port,
    )


def header(job: KubeJob, what: str, apply: str) -> list[str]:
    lines = [
        f"Written by `torchrig export kubernetes`: {what}.",
        f"Image {job.image}"
        + (
            " (by digest: every node pulls exactly these bytes)."
            if DIGEST_REF.fullmatch(job.image)
            else " is a TAG: it can point at other bytes later; `torchrig push` pins a digest."
        ),
        "Validated against the Kubernetes OpenAPI schema and the TrainJob CRD; not run on a",
        "cluster by torchrig's tests.",
    ]
    if job.secret:
        lines.append(
            f"Secret first: kubectl -n {job.namespace} create secret generic {job.secret} "
            "--from-env-file=torchrig.env"
        )
    lines.append(f"Start: {apply}")
    return lines


def render(job: KubeJob) -> dict[str, str]:
    """File name → text: the TrainJob and the Indexed Job with its Service."""
    ns = f"-n {job.namespace} " if job.namespace else ""
    return {
        FILES["trainjob"]: documents(
            [train_job(job)],
            header(
                job,
                "a Kubeflow Trainer v2 TrainJob (needs the operator and its torch-distributed "
                "runtime)",
                f"kubectl {ns}apply -f {FILES['trainjob']}",
            ),
        ),
        FILES["job"]: documents(
            [headless_service(job), indexed_job(job)],
            header(
                job,
                "an Indexed Job and a headless Service (no operator needed)",
                f"kubectl {ns}apply -f {FILES['job']}",
            ),
        ),
    }
