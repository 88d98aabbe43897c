"""Which trained classifier a path names, and the model it holds.

`torchrig export-model PATH` takes any of:

    runs/tickets                     a run folder: its final/ model, else its newest checkpoint
    runs/tickets/final               the finished model (classifier.json + model.safetensors)
    runs/tickets/checkpoints/step-N  one checkpoint (the run folder's classifier.json)

The recipe that trained it (classifier.json's "recipe") rebuilds the network through its
`export` module; the weights are loaded strictly, so a file that does not fit is an error,
never a half-loaded model.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError
from torchrig.recipes.classify.meta import FINAL_WEIGHTS, META_FILE, read_meta
from torchrig.train.checkpoint import MANIFEST, CheckpointManager

RECIPE_EXPORTS = {
    "text-classify": "torchrig.recipes.text_classify.export",
    "image-classify": "torchrig.recipes.image_classify.export",
}


@dataclass(frozen=True)
class Source:
    root: Path  # the folder whose classifier.json describes the model
    weights: Path  # model.safetensors or a checkpoint's model.pt
    meta: dict[str, Any]
    run: Path  # the run folder (where export/ goes by default)

    @property
    def recipe(self) -> str:
        return str(self.meta["recipe"])


def find_source(path: Path) -> Source:
    path = Path(path)
    if not path.is_dir():
        raise UsageError(
            f"{path} is not a folder",
            "give a run folder, its final/ folder or a checkpoints/step-* folder",
        )
    if (path / MANIFEST).exists():  # one checkpoint
        run = path.parent.parent
        complete = {c.path.resolve(): c for c in CheckpointManager(path.parent).complete()}
        ckpt = complete.get(path.resolve())
        if ckpt is None:
            raise UsageError(
                f"{path} is not a complete checkpoint (a save was cut off)",
                "export the run folder to take its newest complete checkpoint",
            )
        return Source(run, ckpt.file("model"), read_meta(run), run)
    if (path / FINAL_WEIGHTS).exists():  # final/
        return Source(path, path / FINAL_WEIGHTS, read_meta(path), path.parent)
    if (path / "final" / FINAL_WEIGHTS).exists():
        return find_source(path / "final")
    if (path / META_FILE).exists():  # a run that has not finished: its newest checkpoint
        latest = CheckpointManager(path / "checkpoints").latest(clean=False)
        if latest is None:
            raise UsageError(
                f"{path} has neither a final model nor a complete checkpoint",
                "let the run save a checkpoint (or finish) first",
            )
        return Source(path, latest.file("model"), read_meta(path), path)
    raise UsageError(
        f"{path} holds no trained classifier ({META_FILE} not found)",
        "give a run folder of text-classify or image-classify, its final/ folder or a "
        "checkpoints/step-* folder",
    )


def recipe_export(recipe: str) -> Any:
    """The recipe's export module: build_model(meta, root), export_inputs(meta, root, batch)."""
    name = RECIPE_EXPORTS.get(recipe)
    if name is None:
        raise UsageError(
            f"models of recipe {recipe!r} cannot be exported",
            f"export-model knows: {', '.join(RECIPE_EXPORTS)}",
        )
    return importlib.import_module(name)


def load_model(source: Source) -> Any:
    """The trained network, fp32 on the CPU, in eval mode."""
    import torch

    module = recipe_export(source.recipe)
    model = module.build_model(source.meta, source.root)
    if source.weights.suffix == ".safetensors":
        from safetensors.torch import load_model as load_safetensors

        try:
            load_safetensors(model, str(source.weights), strict=True, device="cpu")
        except (RuntimeError, KeyError, ValueError) as exc:
            raise _misfit(source, exc) from None
    else:
        state = torch.load(source.weights, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state, strict=True)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise _misfit(source, exc) from None
    return model.float().eval()


def _misfit(source: Source, exc: Exception) -> UsageError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return UsageError(
        f"{source.weights} does not fit the model {META_FILE} describes ({first[:200]})",
        "export the run's own final/ folder or checkpoints, not files copied from another run",
    )
