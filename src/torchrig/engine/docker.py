"""Docker through its CLI.

Builds use BuildKit (`--progress=plain`) when the buildx plugin is installed, and the classic
builder (`DOCKER_BUILDKIT=0`) when it is not: a Docker CLI without buildx cannot run BuildKit
builds at all, and Debian's docker.io 20.10 ships without it. The check runs once per engine.
The daemon is whatever the CLI talks to (DOCKER_HOST, the current context): torchrig does
not second-guess it.

GPUs go through `--gpus` (the NVIDIA Container Toolkit's runtime hook).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchrig.engine.cli import DEFAULT_TIMEOUT_S, CliEngine

if TYPE_CHECKING:
    from torchrig.engine.base import GpuSelector
    from torchrig.engine.cli import Runner

INSTALL_HINT = (
    "install Docker (apt-get install docker.io, or Docker's own packages from "
    "https://docs.docker.com/engine/install/) and start it (systemctl start docker)"
)


class DockerEngine(CliEngine):
    name = "docker"
    install_hint = INSTALL_HINT

    def __init__(
        self,
        path: str | None = None,
        *,
        runner: Runner | None = None,
        buildkit: bool | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        """buildkit: None detects it on the first build (`docker buildx version`)."""
        super().__init__(path, runner=runner, timeout_s=timeout_s)
        self._buildkit = buildkit

    @property
    def buildkit(self) -> bool:
        if self._buildkit is None:
            argv = [*self.base_argv(), "buildx", "version"]
            proc = self._call(argv, "checking for buildx", check=False)
            self._buildkit = proc.returncode == 0
        return self._buildkit

    def build_env(self) -> dict[str, str]:
        return {"DOCKER_BUILDKIT": "1" if self.buildkit else "0"}

    def build_options(self) -> list[str]:
        if self.buildkit:
            # --load: a docker-container builder would otherwise keep the image to itself.
            return ["--progress=plain", "--load"]
        # The classic builder keeps the containers of failed steps unless told otherwise.
        return ["--force-rm"]

    def gpu_args(self, gpus: GpuSelector) -> list[str]:
        if gpus is None:
            return []
        if gpus == "all" or isinstance(gpus, int):
            return ["--gpus", str(gpus)]
        devices = ",".join(str(g) for g in gpus)
        # --gpus is parsed as CSV: a list of devices must be quoted to stay one field.
        return ["--gpus", f'"device={devices}"' if "," in devices else f"device={devices}"]
