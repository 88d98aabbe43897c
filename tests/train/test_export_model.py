"""export-model's machinery on a small trained classifier (the blobs task of the loop
tests, exported through a stand-in recipe module): what a path names, each format written
and run back within its tolerance, a failed check keeps nothing, bad input is one line.
The real recipes' models are exported in their own tests."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from blobs import blob_cfg, blob_task, quiet

from torchrig.cli.main import main as cli_main
from torchrig.errors import CheckFailed, UsageError
from torchrig.model_export import formats as formats_mod
from torchrig.model_export import source as source_mod
from torchrig.model_export.run import export_model
from torchrig.model_export.source import find_source
from torchrig.recipes.classify.loop import run


def _blob_export_module() -> types.ModuleType:
    module = types.ModuleType("blob_export")

    def build_model(meta: dict[str, Any], root: Path) -> Any:
        hidden = meta["model"]["hidden"]
        return torch.nn.Sequential(
            torch.nn.Linear(2, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 3)
        )

    def export_inputs(meta: dict[str, Any], root: Path, batch: int) -> Any:
        return (torch.randn(batch, 2),), ["points"], {"points": {0: "batch"}}

    module.build_model = build_model  # type: ignore[attr-defined]
    module.export_inputs = export_inputs  # type: ignore[attr-defined]
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "run"
    run(blob_cfg(out, steps=20, ckpt_every=10), blob_task(), say=quiet)
    return out


@pytest.fixture(autouse=True)
def blob_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "blob_export", _blob_export_module())
    monkeypatch.setitem(source_mod.RECIPE_EXPORTS, "test-blobs", "blob_export")


def test_a_path_names_the_final_model_or_a_checkpoint(trained: Path) -> None:
    assert find_source(trained).weights == trained / "final" / "model.safetensors"
    assert find_source(trained / "final").root == trained / "final"
    step = find_source(trained / "checkpoints" / "step-00000010")
    assert step.weights.name == "model.pt" and step.root == trained and step.run == trained


@pytest.mark.parametrize("fmt", ["onnx", "exported-program", "torchscript"])
def test_each_format_matches_pytorch(trained: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"model-{fmt}"
    result = export_model(trained, fmt, out)
    assert out.exists() and result.bytes == out.stat().st_size > 0
    assert result.max_abs_diff <= result.atol + 1e-3  # and the check itself passed
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["labels"] == ["north", "east", "south"]
    assert sidecar["export"]["format"] == fmt and sidecar["export"]["check"]["passed"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries


def test_an_older_checkpoint_exports_its_own_weights(trained: Path, tmp_path: Path) -> None:
    a = export_model(trained / "checkpoints" / "step-00000010", "torchscript", tmp_path / "a.ts")
    b = export_model(trained / "final", "torchscript", tmp_path / "b.ts")
    x = torch.randn(4, 2)
    ya = torch.jit.load(str(a.path))(x)
    yb = torch.jit.load(str(b.path))(x)
    assert not torch.allclose(ya, yb)  # step 10 is not step 20


def test_a_failed_check_keeps_nothing(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = formats_mod.runner

    def off_by_one(fmt: Any, path: Path) -> Any:
        run_file = real(fmt, path)
        return lambda inputs: run_file(inputs) + 1.0

    monkeypatch.setattr("torchrig.model_export.run.runner", off_by_one)
    with pytest.raises(CheckFailed, match="differ from PyTorch's"):
        export_model(trained, "exported-program", tmp_path / "bad.pt2")
    assert list(tmp_path.iterdir()) == []


def test_bad_input_is_one_line(trained: Path, tmp_path: Path, capsys: Any) -> None:
    assert cli_main(["export-model", str(tmp_path), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no trained classifier" in err
    assert cli_main(["export-model", str(trained), "--format", "pickle"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    (trained / "checkpoints" / ".tmp-x").mkdir(exist_ok=True)
    with pytest.raises(UsageError, match="not a folder"):
        find_source(trained / "metrics.jsonl")


def test_cli_json(trained: Path, tmp_path: Path, capsys: Any) -> None:
    code = cli_main(["export-model", str(trained), "--format", "torchscript", "--json",
                     "--out", str(tmp_path / "m.ts")])  # fmt: skip
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "torchscript" and data["check"]["passed"] is True
    assert data["inputs"] == ["points"]
