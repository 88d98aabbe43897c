"""Recipe names → the command that runs them in the image.

A recipe is a training script in `torchrig.recipes`; `torchrig run NAME ARGS…` runs
`python -m torchrig.recipes.<module> ARGS…`. Names listed without a module are reserved:
they are on the way, and asking for one says so rather than "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass

from torchrig.errors import UsageError


@dataclass(frozen=True)
class Recipe:
    name: str
    module: str | None
    """The module under torchrig.recipes; None while the recipe is not available yet."""
    summary: str


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("causal-lm", "torchrig.recipes.causal_lm", "train or fine-tune a causal LM"),
        Recipe("text-classify", None, "fine-tune a text classifier"),
        Recipe("image-classify", None, "train an image classifier"),
    )
}


def available() -> list[str]:
    return [name for name, recipe in RECIPES.items() if recipe.module]


def recipe_command(name: str, args: list[str]) -> list[str]:
    """`python -m MODULE ARGS…` for a known, available recipe; UsageError otherwise."""
    known = ", ".join(available()) or "none yet"
    recipe = RECIPES.get(name)
    if recipe is None:
        raise UsageError(
            f"unknown recipe {name!r} (recipes: {known})",
            "pick one of those, or run your own script: torchrig run -- python train.py",
        )
    if recipe.module is None:
        raise UsageError(
            f"recipe {name!r} is not available yet (recipes: {known})",
            "run your own script meanwhile: torchrig run -- python train.py",
        )
    return ["python", "-m", recipe.module, *args]
