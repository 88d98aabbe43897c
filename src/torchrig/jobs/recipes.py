"""Recipe names → the command that runs them in the image.

A recipe is a training script in `torchrig.recipes`; `torchrig run NAME ARGS…` runs
`python -m torchrig.recipes.<module> ARGS…`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torchrig import contract
from torchrig.errors import UsageError


@dataclass(frozen=True)
class Recipe:
    name: str
    module: str
    summary: str


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("causal-lm", "torchrig.recipes.causal_lm", "train or fine-tune a causal LM"),
        Recipe("text-classify", "torchrig.recipes.text_classify", "fine-tune a text classifier"),
        Recipe(
            "image-classify",
            "torchrig.recipes.image_classify",
            "train or fine-tune an image classifier",
        ),
    )
}


def serve_command(args: list[str]) -> list[str]:
    """`torchrig run serve RUN …`: the server on the container port `up` publishes
    ([services.serve], contract.PORTS), on every interface of the container so the
    published port reaches it (the token stays required off loopback). A --host or --port
    in ARGS comes later and wins, on a port nothing publishes."""
    port = str(contract.PORTS["serve"])
    return [
        "python",
        "-m",
        "torchrig.cli.main",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        port,
        *args,
    ]


def recipe_command(name: str, args: list[str]) -> list[str]:
    """`python -m MODULE ARGS…` for a known recipe; UsageError otherwise."""
    if name == "serve":
        return serve_command(args)
    recipe = RECIPES.get(name)
    if recipe is None:
        raise UsageError(
            f"unknown recipe {name!r} (recipes: {', '.join(RECIPES)})",
            "pick one of those, or run your own script: torchrig run -- python train.py",
        )
    return ["python", "-m", recipe.module, *args]
