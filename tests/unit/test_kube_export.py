"""`torchrig export kubernetes` through the CLI (issue 14, item 4): files written from the
spec and the Plan, valid against both schemas, secrets by name only, one line per bad input.
The run from a real push (registry, Docker, Podman) is tests/container/test_push_registry.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.golden_util import GOLDEN, assert_golden
from tests.kube_schema import KUBERNETES_VERSIONS, validate_text
from torchrig.cli.main import main
from torchrig.errors import HostError

HOST = Path(__file__).parents[1] / "fixtures" / "host" / "cpu-only.json"
DIGEST_REF = "registry.example.com:5000/team/demo@sha256:" + "4f" * 32
SPEC = """\
[project]
name = "demo"
[resources]
shm = "8g"
memory = "32g"
cpus = 8
stop_timeout = 600
[cluster]
engine = "kubernetes"
nodes = 2
gpus_per_node = 4
time_limit = "1-00"
socket_ifname = "eth0"
env = {NCCL_DEBUG = "WARN"}
[cluster.kubernetes]
namespace = "ml"
pvc = "demo-work"
node_selector = {"nvidia.com/gpu.product" = "NVIDIA-H100-80GB-HBM3"}
tolerations = [{key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule"}]
"""


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """No container engine: what the export writes never depends on this machine's."""

    def refuse(*_: object, **__: object) -> None:
        raise HostError("no engine in unit tests")

    monkeypatch.setattr("torchrig.launch.session.engine_for", refuse)


def _export(tmp_path: Path, spec: str, *args: str) -> list[str]:
    (tmp_path / "torchrig.toml").write_text(spec)
    return ["export", "kubernetes", "--spec", str(tmp_path / "torchrig.toml"),
            "--host", str(HOST), *args]  # fmt: skip


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_export_writes_both_files_valid_and_golden(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "torchrig.env").write_text("# secrets\nHF_TOKEN=hf_do_not_leak_this\n")
    argv = _export(tmp_path, SPEC, "--image", DIGEST_REF, "causal-lm", "--preset", "tiny")
    assert main(argv) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "kubernetes"
    assert out.splitlines() == [f"wrote {folder / 'trainjob.yaml'}", f"wrote {folder / 'job.yaml'}"]
    for name in ("trainjob.yaml", "job.yaml"):
        text = (folder / name).read_text()
        assert_golden(GOLDEN / "kubernetes" / "cli" / name, text)
        for version in KUBERNETES_VERSIONS:
            validate_text(text, version)
        assert "hf_do_not_leak_this" not in text
        assert "secretKeyRef" in text and "torchrig-demo-env" in text
        assert "NCCL_SOCKET_IFNAME" in text and "activeDeadlineSeconds: 86400" in text


def test_options_after_the_format_are_export_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--nodes 3 --stdout` before the recipe are export's; `--name x` after it is the
    recipe's (it would otherwise rename the job)."""
    argv = _export(tmp_path, SPEC, "--nodes", "3", "--stdout", "--image", DIGEST_REF,
                   "causal-lm", "--name", "x")  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "numNodes: 3" in out and "--nnodes=3" in out
    assert "name: torchrig-demo\n" in out and '- "--name"\n' in out
    assert not (tmp_path / "kubernetes").exists()


def test_compose_still_takes_its_options_after_the_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: with the job's words after the format, `export compose --stdout` took
    --stdout for a command ("export compose takes no command")."""
    (tmp_path / "torchrig.toml").write_text(SPEC)
    argv = ["export", "compose", "--stdout", "--spec", str(tmp_path / "torchrig.toml"),
            "--host", str(HOST)]  # fmt: skip
    assert main(argv) == 2
    assert "no workbench image has been built yet" in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("spec", "args", "says"),
    [
        (SPEC.replace('pvc = "demo-work"\n', ""), ("--image", DIGEST_REF, "--", "python", "t.py"),
         "cluster.kubernetes.pvc: Kubernetes jobs need a PersistentVolumeClaim"),
        (SPEC, ("--image", DIGEST_REF), "name a recipe or give a command after --"),
        (SPEC, ("--image", DIGEST_REF, "--"), "no command after --"),
        (SPEC, ("--image", DIGEST_REF, "train"), "unknown recipe 'train'"),
        (SPEC, ("--", "python", "t.py"), "the image this spec builds is not known yet"),
        (SPEC, ("--image", DIGEST_REF, "--name", "Demo_1", "--", "python"),
         "--name 'Demo_1' is not a Kubernetes job name"),
        (SPEC, ("--image", DIGEST_REF, "--nodes", "0", "--", "python"), "--nodes 0 is less"),
        (SPEC.replace('shm = "8g"', 'shm = "32g"'), ("--image", DIGEST_REF, "--", "python"),
         "resources.shm: /dev/shm (32g) would take all of the memory limit (32g)"),
        (SPEC.replace('operator = "Exists"', 'operator = "Exist"'), ("--", "python"),
         'cluster.kubernetes.tolerations[0]: operator "Exist" is not Equal or Exists'),
        (SPEC.replace('effect = "NoSchedule"', 'effect = "NoSchedule", seconds = "1"'),
         ("--", "python"), 'cluster.kubernetes.tolerations[0]: "seconds" is not a toleration key'),
        (SPEC.replace('"nvidia.com/gpu.product"', '"bad key!"'), ("--", "python"),
         'cluster.kubernetes.node_selector."bad key!": "bad key!" is not a node label key'),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, args: tuple[str, ...], says: str
) -> None:
    assert main(_export(tmp_path, spec, *args)) == 2
    assert says in _one_line_error(capsys)
    assert not (tmp_path / "kubernetes").exists()


def test_a_tag_is_refused_once_a_push_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "torchrig.images").write_text(
        f'[[pushed]]\nimage = "torchrig/demo:cpu-0123456789ab"\nref = "{DIGEST_REF}"\n'
        'tag = "registry.example.com:5000/team/demo:cpu-0123456789ab"\nengine = "docker"\n'
    )
    argv = _export(tmp_path, SPEC, "--image", "registry.example.com:5000/team/demo:latest",
                   "--", "python", "t.py")  # fmt: skip
    assert main(argv) == 2
    assert "is a tag, and torchrig.images records pushed digests" in _one_line_error(capsys)


def test_a_secret_without_an_env_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = SPEC.replace('pvc = "demo-work"', 'pvc = "demo-work"\nsecret = "team-tokens"')
    assert main(_export(tmp_path, spec, "--image", DIGEST_REF, "--", "python")) == 2
    assert "secret = 'team-tokens', but there is no torchrig.env" in _one_line_error(capsys)
