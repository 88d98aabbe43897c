"""[cluster]: strict keys and one-line errors naming the key and the fix (exit 2 via the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchrig.cli.main import main
from torchrig.errors import SpecError
from torchrig.spec.load import parse_spec, spec_digest

DIGEST = "sha256:" + "ab" * 32
BASE = '[project]\nname = "p"\n'


def test_a_full_cluster_section_loads() -> None:
    spec = parse_spec(
        BASE + '[cluster]\nnodes = 2\ngpus_per_node = 8\ntime_limit = "2:00:00"\n'
        'shared_dir = "/shared/p/"\nregistry = "reg.example:5000/team"\n'
        f'image = "reg.example:5000/team/p@{DIGEST}"\nsocket_ifname = "ib0"\n'
        'env = {NCCL_IB_HCA = "mlx5"}\n'
        '[cluster.slurm]\npartition = "gpu"\naccount = "ml"\nruntime = "podman"\n'
        'extra = ["--constraint=h100"]\n'
    )
    cluster = spec.cluster
    assert cluster is not None and cluster.nodes == 2 and cluster.shared_dir == "/shared/p"
    assert cluster.slurm.runtime == "podman" and cluster.slurm.max_requeues == 3


def test_the_cluster_section_does_not_change_the_image() -> None:
    plain = parse_spec(BASE)
    placed = parse_spec(BASE + '[cluster]\nnodes = 4\nshared_dir = "/s"\n')
    assert spec_digest(plain) == spec_digest(placed)


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ('[cluster]\nshared_dir = "/s"\n[cluster.slurm]\npartiton = "gpu"\n',
         'cluster.slurm.partiton: unknown key — did you mean "partition"?'),
        ('[cluster]\nnodes = 0\nshared_dir = "/s"\n',
         "cluster.nodes: 0 is less than the minimum 1"),
        ('[cluster]\nengine = "kubernetes"\n[cluster.kubernetes]\npvc = "Team-Ckpt"\n',
         'cluster.kubernetes.pvc: "Team-Ckpt" is not a Kubernetes object name'),
        ('[cluster]\nshared_dir = "/s"\nimage = "reg/p:latest"\n',
         'cluster.image: "reg/p:latest" is not pinned by digest'),
        ("[cluster]\nnodes = 2\n", "cluster.shared_dir: Slurm jobs need a folder every node sees"),
        ('[cluster]\nshared_dir = "/s"\ntime_limit = "2 hours"\n',
         'cluster.time_limit: "2 hours" is not a time limit'),
        ('[cluster]\nshared_dir = "/s"\n[cluster.slurm]\nextra = ["--x=1; rm -rf /"]\n',
         "cluster.slurm.extra[0]:"),
        ('[cluster]\nshared_dir = "/s"\nenv = {LD_PRELOAD = "/x.so"}\n',
         'cluster.env.LD_PRELOAD: "LD_PRELOAD" is not a communication setting'),
        ('[cluster]\nshared_dir = "relative"\n', "cluster.shared_dir:"),
        # A trailing newline passed the ^…$ patterns (re.match) and went into #SBATCH lines.
        ('[cluster]\nshared_dir = "/s"\n[cluster.slurm]\npartition = "gpu\\n"\n',
         "cluster.slurm.partition:"),
        ('[cluster]\nshared_dir = "/s"\n[cluster.slurm]\nextra = ["--exclusive\\n"]\n',
         "cluster.slurm.extra[0]:"),
        ('[cluster]\nshared_dir = "/s"\ntime_limit = "01:00:00\\n"\n',
         "cluster.time_limit:"),
        ('[cluster]\nengine = "kubernetes"\n[cluster.kubernetes]\npvc = "ckpt\\n"\n',
         "cluster.kubernetes.pvc:"),
    ],
)  # fmt: skip
def test_bad_cluster_is_one_line_naming_the_key(
    section: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(BASE + section)
    assert says in caught.value.one_line()
    spec = tmp_path / "torchrig.toml"
    spec.write_text(BASE + section)
    assert main(["plan", "--spec", str(spec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0] and "Traceback" not in err[0]
