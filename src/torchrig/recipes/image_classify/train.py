"""Train an image classifier: this recipe's task in the shared classification loop.

from torchrig.recipes.image_classify.config import from_preset
from torchrig.recipes.image_classify.train import train
train(from_preset("tiny", data=Path("images"), out=Path("runs/x")))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from torchrig.recipes.classify.loop import run
from torchrig.recipes.classify.task import ClassifyTask
from torchrig.recipes.image_classify.config import ImageClassifyConfig
from torchrig.recipes.image_classify.task import build_task
from torchrig.train.distributed import Dist
from torchrig.train.result import RunResult
from torchrig.train.signals import StopFlag


def train(
    cfg: ImageClassifyConfig, stop: StopFlag | None = None, say: Callable[[str], None] = print
) -> RunResult:
    def build(dist: Dist, work: Path) -> ClassifyTask:
        # Cache progress lines from rank 0 only, as the loop's own. The run's files (the
        # cache, unless --cache names another folder) go into the loop's staging folder.
        return build_task(replace(cfg, out=work), dist, say if dist.is_main else (lambda _: None))

    return run(cfg, build, stop, say)
