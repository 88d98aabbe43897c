"""`torchrig export apptainer`: an Apptainer/Singularity definition file of the pinned image.

HPC sites that allow no container engine run .sif files: `apptainer build` converts the
registry image (by digest, so the .sif holds the same bytes every node of a Docker/Podman
cluster would run) and the sbatch script's apptainer runtime runs it with `apptainer exec`.
The .def adds nothing but the environment the image's entrypoint would set: Apptainer
runs commands directly, as the calling user, without the image's ENTRYPOINT.
"""

from __future__ import annotations

from torchrig.cluster.slurm import sif_path
from torchrig.cluster.target import ClusterJob


def render_definition(job: ClusterJob) -> str:
    sif = sif_path(job)
    return "\n".join(
        [
            f"# Written by torchrig for {job.project}: the workbench image, pinned by digest.",
            "# Build the .sif once, on a machine with apptainer and network (a login node):",
            f"#   apptainer build {sif} THIS_FILE",
            "# The sbatch script from `torchrig export slurm` (runtime apptainer) runs it with",
            "#   apptainer exec [--nv] --bind SHARED SIF torchrun …",
            "Bootstrap: docker",
            f"From: {job.image}",
            "",
            "%labels",
            f"    io.torchrig.project {job.project}",
            f"    io.torchrig.image {job.image}",
            "",
            "%environment",
            "    export PATH=/opt/venv/bin:$PATH",
            "    export PYTHONUNBUFFERED=1",
            "",
            "%runscript",
            '    exec "$@"',
            "",
        ]
    )
