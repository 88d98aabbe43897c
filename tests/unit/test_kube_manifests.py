"""Kubernetes manifests (issue 14, item 4): golden text, valid against Kubernetes' OpenAPI
schema and Kubeflow Trainer's TrainJob CRD, and a validator that does reject bad ones."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.golden_util import GOLDEN, assert_golden
from tests.kube_schema import KUBERNETES_VERSIONS, Invalid, validate, validate_text
from torchrig.kube.export import render, seconds
from torchrig.kube.manifests import KubeJob, Toleration, indexed_job, train_job
from torchrig.kube.yamltext import documents

DIGEST = "sha256:" + "4f" * 32
GPU_JOB = KubeJob(
    name="torchrig-demo",
    project="demo",
    namespace="ml-team",
    image=f"registry.example.com:5000/team/demo@{DIGEST}",
    nodes=4,
    gpus_per_node=8,
    command=("python", "-m", "torchrig.recipes.causal_lm", "--preset", "gpt2-124m",
             "--out", "runs/gpt2", "--resume"),
    pvc="demo-work",
    workspace="/workspace",
    shm_bytes=64 << 30,
    uid=1000,
    gid=1000,
    user="alice",
    stop_timeout_s=300,
    secret="torchrig-demo-env",
    secret_keys=("HF_TOKEN", "WANDB_API_KEY"),
    env=(("NCCL_IB_HCA", "mlx5"), ("NCCL_SOCKET_IFNAME", "ib0")),
    node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    tolerations=(Toleration("nvidia.com/gpu", "Exists", "", "NoSchedule"),),
    cpus=96,
    memory_bytes=1536 << 30,
    deadline_s=2 * 86400,
)  # fmt: skip
CPU_JOB = KubeJob(
    name="torchrig-tiny",
    project="tiny",
    namespace="default",
    image=f"127.0.0.1:5000/tiny@{DIGEST}",
    nodes=2,
    gpus_per_node=0,
    command=("python", "train.py", "--epochs", "1"),
    pvc="tiny",
    workspace="/workspace",
    shm_bytes=1536 << 20,
    uid=70000,
    gid=70000,
    user="rig",
    stop_timeout_s=120,
    cpus=7.5,
)
JOBS = {"gpu-4x8": GPU_JOB, "cpu-2x1": CPU_JOB}


@pytest.mark.parametrize("case", sorted(JOBS))
def test_manifests_are_golden(case: str) -> None:
    for name, text in render(JOBS[case]).items():
        assert_golden(GOLDEN / "kubernetes" / case / name, text)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("case", sorted(JOBS))
def test_every_manifest_validates(case: str, version: str) -> None:
    kinds = []
    for text in render(JOBS[case]).values():
        kinds += [d["kind"] for d in validate_text(text, version)]
    assert sorted(kinds) == ["Job", "Service", "TrainJob"]


def test_the_facts_land_where_kubernetes_reads_them() -> None:
    job = indexed_job(GPU_JOB)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].endswith("@" + DIGEST)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["runAsNonRoot"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}
    pvc = next(v for v in pod["volumes"] if v["name"] == "workspace")
    assert pvc["persistentVolumeClaim"]["claimName"] == "demo-work"
    assert pod["nodeSelector"] == GPU_JOB.node_selector
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    # The pod index is torchrun's node rank; pod 0 is the rendezvous host.
    assert "--node-rank=$(NODE_RANK)" in container["command"]
    assert "--master-addr=torchrig-demo-0.torchrig-demo" in container["command"]
    rank = next(e for e in container["env"] if e["name"] == "NODE_RANK")
    assert "job-completion-index" in rank["valueFrom"]["fieldRef"]["fieldPath"]
    assert pod["subdomain"] == "torchrig-demo" and job["spec"]["completionMode"] == "Indexed"
    # Secrets by reference only.
    token = next(e for e in container["env"] if e["name"] == "HF_TOKEN")
    assert token == {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "torchrig-demo-env", "key": "HF_TOKEN"}},
    }
    trainer = train_job(GPU_JOB)["spec"]["trainer"]
    assert trainer["numNodes"] == 4 and trainer["numProcPerNode"] == 8
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"


def _mutations() -> list[tuple[str, Any]]:
    def unknown_container_field(docs: dict[str, Any]) -> None:
        docs["job"]["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"

    def string_completions(docs: dict[str, Any]) -> None:
        docs["job"]["spec"]["completions"] = "4"

    def trainjob_string_nodes(docs: dict[str, Any]) -> None:
        docs["trainjob"]["spec"]["trainer"]["numNodes"] = "4"

    def trainjob_unknown_patch_field(docs: dict[str, Any]) -> None:
        # hostNetwork is a Pod field, but not one a runtime patch may set.
        patch = docs["trainjob"]["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]
        patch["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"][
            "hostNetwork"
        ] = True

    def trainjob_no_runtime(docs: dict[str, Any]) -> None:
        del docs["trainjob"]["spec"]["runtimeRef"]

    def trainjob_bad_name(docs: dict[str, Any]) -> None:
        docs["trainjob"]["metadata"]["name"] = "9-demo"

    def trainjob_bad_label(docs: dict[str, Any]) -> None:
        docs["trainjob"]["metadata"]["labels"] = {"a": 1}

    return [
        (f.__name__, f)
        for f in (
            unknown_container_field,
            string_completions,
            trainjob_string_nodes,
            trainjob_unknown_patch_field,
            trainjob_no_runtime,
            trainjob_bad_name,
            trainjob_bad_label,
        )
    ]


@pytest.mark.parametrize(("what", "mutate"), _mutations())
def test_the_validator_rejects_a_broken_manifest(what: str, mutate: Any) -> None:
    docs = {"job": indexed_job(CPU_JOB), "trainjob": train_job(CPU_JOB)}
    for doc in docs.values():
        validate(copy.deepcopy(doc), KUBERNETES_VERSIONS[-1])
    mutate(docs)
    target = docs["trainjob"] if what.startswith("trainjob") else docs["job"]
    with pytest.raises(Invalid):
        validate(target, KUBERNETES_VERSIONS[-1])


@pytest.mark.parametrize(
    ("limit", "expected"),
    [("", None), ("90", 5400), ("1:30", 90), ("2:00:00", 7200), ("1-12", 129600),
     ("1-12:30", 131400), ("2-00:00:05", 172805)],
)  # fmt: skip
def test_slurm_time_limits_become_deadlines(limit: str, expected: int | None) -> None:
    assert seconds(limit) == expected


_keys = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20),
    st.sampled_from(["on", "no", "Yes", "1e3", "0755", "~", "null", "-x", "a: b", "#c", "/w"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(st.one_of(_scalars, st.dictionaries(_keys, inner, max_size=3)), max_size=3),
        st.dictionaries(_keys, inner, max_size=3),
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_keys, _values, min_size=1, max_size=4))
def test_yaml_text_reads_back_as_written(doc: dict[str, Any]) -> None:
    """What yamltext writes, a YAML parser reads back unchanged: no string becomes a
    boolean, number or null, whatever it looks like."""
    (back,) = list(yaml.safe_load_all(documents([doc], ["a header line"])))
    assert back == doc
