"""Writing a trained classifier in a serving format, and running it back to check it.

    onnx              model.onnx through torch.onnx's exporter (dynamo); run back with
                      onnxruntime on the CPU. Labels and preprocessing go into the file's
                      metadata_props as well as the sidecar.
    exported-program  model.pt2: torch.export.save; run back with torch.export.load.
    torchscript       model.ts: torch.jit.trace; run back with torch.jit.load. Tracing
                      records one path through the model: fine for these classifiers, which
                      have no data-dependent control flow.

Every format keeps the batch dimension (and a text model's sequence length) dynamic, and
carries classifier.json inside the file where the format has room for it.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError

ONNX_FIX = (
    "install the ONNX tools: pip install onnx onnxscript onnxruntime (in the workbench: add "
    'them to [python].packages in torchrig.toml, e.g. packages = ["onnx", "onnxscript", '
    '"onnxruntime"], and run torchrig up)'
)


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    # Largest allowed |exported − PyTorch| per logit: atol + rtol × |PyTorch logit|.
    # ONNX Runtime fuses and reorders float32 sums (its own GEMM and layer-norm kernels);
    # the two torch formats run the same kernels as eager and match it to rounding.
    atol: float
    rtol: float


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("onnx", ".onnx", atol=1e-4, rtol=1e-3),
        Format("exported-program", ".pt2", atol=1e-5, rtol=1e-4),
        Format("torchscript", ".ts", atol=1e-5, rtol=1e-4),
    )
}

Runner = Callable[[Sequence[Any]], Any]  # inputs (torch tensors) → logits (numpy)


def _dynamic_shapes(names: list[str], dynamic: dict[str, dict[int, str]]) -> Any:
    from torch.export import Dim

    return {name: {axis: Dim.DYNAMIC for axis in dynamic.get(name, {})} for name in names}


def write(
    fmt: Format,
    model: Any,
    example: tuple[Any, ...],
    names: list[str],
    dynamic: dict[str, dict[int, str]],
    meta: dict[str, Any],
    path: Path,
) -> None:
    """Write `model` to `path` in `fmt` (the caller renames it into place once checked)."""
    import torch

    meta_text = json.dumps(meta, sort_keys=True)
    if fmt.name == "onnx":
        _require_onnx()
        program = torch.onnx.export(
            model, example, dynamo=True, input_names=names, output_names=["logits"],
            dynamic_shapes=tuple(_dynamic_shapes(names, dynamic).values()), verbose=False,
        )  # fmt: skip
        program.save(str(path))
        import onnx

        proto = onnx.load(str(path))
        entry = proto.metadata_props.add()
        entry.key, entry.value = "classifier.json", meta_text
        onnx.save(proto, str(path))
    elif fmt.name == "exported-program":
        exported = torch.export.export(
            model, example, dynamic_shapes=tuple(_dynamic_shapes(names, dynamic).values())
        )
        torch.export.save(exported, str(path), extra_files={"classifier.json": meta_text})
    elif fmt.name == "torchscript":
        with torch.no_grad(), _torchscript_is_asked_for():
            traced = torch.jit.trace(model, example, check_trace=False)
            torch.jit.save(traced, str(path), _extra_files={"classifier.json": meta_text})
    else:  # FORMATS guards the names; this keeps a new one from passing unwritten
        raise UsageError(f"unknown format {fmt.name!r}", f"use one of: {', '.join(FORMATS)}")


def runner(fmt: Format, path: Path) -> Runner:
    """Load the written file the way a server would and return a function that runs it."""
    import torch

    if fmt.name == "onnx":
        _require_onnx()
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        input_names = [i.name for i in session.get_inputs()]

        def run_onnx(inputs: Sequence[Any]) -> Any:
            feed = {n: t.numpy() for n, t in zip(input_names, inputs, strict=True)}
            return session.run(["logits"], feed)[0]

        return run_onnx
    if fmt.name == "exported-program":
        program = torch.export.load(str(path)).module()

        def run_program(inputs: Sequence[Any]) -> Any:
            with torch.no_grad():
                return program(*inputs).numpy()

        return run_program
    with _torchscript_is_asked_for():
        scripted = torch.jit.load(str(path), map_location="cpu")

    def run_script(inputs: Sequence[Any]) -> Any:
        with torch.no_grad():
            return scripted(*inputs).numpy()

    return run_script


@contextlib.contextmanager
def _torchscript_is_asked_for() -> Iterator[None]:
    """torch.jit warns that it is deprecated (since torch 2.10) on every call; a person who
    asks for TorchScript (older C++ servers load only that) has already chosen it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        yield


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            f"ONNX export needs {exc.name}, which is not installed", ONNX_FIX
        ) from None
