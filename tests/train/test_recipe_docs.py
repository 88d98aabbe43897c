"""The recipe docs agree with the code (issue 12, item 21): statements that had drifted."""

from __future__ import annotations

import re
from pathlib import Path

from torchrig.jobs.recipes import RECIPES

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_jobs_md_maps_every_recipe_to_its_module_and_reserves_none() -> None:
    text = " ".join((DOCS / "jobs.md").read_text(encoding="utf-8").split())
    assert "reserved" not in text
    for recipe in RECIPES.values():
        assert f"`{recipe.name}` → `python -m {recipe.module}`" in text, recipe.name


def test_export_md_does_not_promise_a_tokenizer_beside_the_exported_file() -> None:
    # export-model writes the model file and FILE.json; the tokenizer stays in the run's
    # final/tokenizer/ (torchrig.model_export writes no tokenizer).
    text = " ".join((DOCS / "export.md").read_text(encoding="utf-8").split())
    assert "`tokenizer/` beside `classifier.json`" not in text
    assert "`final/tokenizer/`" in text and "does not copy it" in text
    export_src = Path(__file__).resolve().parents[2] / "src" / "torchrig" / "export"
    assert not any("tokenizer" in f.read_text() for f in export_src.rglob("*.py"))


def test_text_classify_md_ties_the_tiny_accuracy_to_the_generated_task() -> None:
    text = " ".join((DOCS / "text-classify.md").read_text(encoding="utf-8").split())
    claim = re.search(r"[^.]*accuracy of 1\.0 in 60 steps[^.]*\.[^.]*\.", text)
    assert claim is not None
    assert "generated" in claim.group(0) and "says nothing about real data" in claim.group(0)
    assert "two trainings on the same texts can differ" not in text  # now deterministic
