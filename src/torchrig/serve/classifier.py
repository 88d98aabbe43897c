"""A trained text or image classifier: inputs in, label + probabilities + top-k out.

The preprocessing is the run's own, read from classifier.json and done by the recipe's own
code, so what is served is what was evaluated:

    text-classify   the saved tokenizer (final/tokenizer, or export/tokenizer), truncated
                    to the trained max_length, padded to the longest row of the batch
    image-classify  the training cache's decode (short side resized, centre square) and the
                    evaluation transform (centre crop, ImageNet normalisation)

Two backends: PyTorch (the run's weights, on the GPU when there is one) and ONNX Runtime
(the file `torchrig export-model --format onnx` wrote and checked; CPU, or CUDA when
onnxruntime-gpu is installed).
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torchrig.errors import UsageError

Backend = Literal["torch", "onnx"]
TOP_K = 5


class InputError(UsageError):
    """One input cannot be classified (not text, not an image): the request's fault."""


@dataclass
class Classifier:
    recipe: str
    labels: list[str]
    meta: dict[str, Any]
    root: Path  # the folder classifier.json (or the export sidecar) is in
    backend: Backend
    device: Any
    _run: Callable[[tuple[Any, ...]], Any]  # model inputs → scores(logits), on its device
    tokenizer: Any = None
    model: Any = None  # the PyTorch module (None for ONNX Runtime)

    @property
    def modality(self) -> str:
        return "image" if self.recipe == "image-classify" else "text"

    def prepare(self, item: Any) -> Any:
        """Check and decode one input (a string, or an image's bytes): InputError if bad."""
        if self.modality == "text":
            if not isinstance(item, str) or not item.strip():
                raise InputError("each input must be a non-empty string of text")
            return item
        if not isinstance(item, bytes | bytearray):
            raise InputError("each input must be an image (bytes)")
        return _decode_image(bytes(item), int(self.meta["preprocess"]["resize"]))

    def predict(self, prepared: Sequence[Any], top_k: int = TOP_K) -> list[dict[str, Any]]:
        """Predictions for prepared inputs, one dict per input, in order."""
        import torch

        if not prepared:
            return []
        # The runner returns the scores() table where the model is (on a GPU, from the same
        # CUDA graph as the forward): one copy to the host, then plain lists.
        table = torch.as_tensor(self._run(self._inputs(prepared))).cpu().tolist()
        n, labels = len(self.labels), self.labels
        k = max(1, min(top_k, n))
        rows = []
        for row in table:
            p, values, indices = row[:n], row[n : n + k], row[2 * n : 2 * n + k]
            rows.append(
                {
                    "label": labels[int(indices[0])],
                    "probabilities": {
                        label: round(v, 6) for label, v in zip(labels, p, strict=True)
                    },
                    "top_k": [
                        {"label": labels[int(i)], "probability": round(v, 6)}
                        for v, i in zip(values, indices, strict=True)
                    ],
                }
            )
        return rows

    def use_cuda_graphs(self, max_batch: int) -> str:
        """Run the forward through CUDA graphs (serve/graphs.py) from now on, where the model
        is PyTorch on a GPU; says in one line what it did (or why not)."""
        from torchrig.serve.graphs import GraphedClassifier, Padding

        if self.model is None or getattr(self.device, "type", "cpu") != "cuda":
            return "CUDA graphs: off (they need the PyTorch model on a GPU)"
        if self.modality == "text":
            pad_id = self.tokenizer.pad_token_id
            padding = Padding((0 if pad_id is None else pad_id, 0), mask_index=1, has_length=True)
            example = self._inputs(["warm-up"])
            max_length = int(self.meta["preprocess"].get("max_length", 128))
        else:
            import numpy as np

            size = int(self.meta["preprocess"]["resize"])
            example = self._inputs([np.zeros((size, size, 3), dtype=np.uint8)])
            padding, max_length = Padding((0.0,)), None
        try:
            graphed = GraphedClassifier(
                self.model, self.device, example, padding, max_batch, max_length, head=scores
            )
        except Exception as exc:  # any capture failure leaves the eager path serving
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            return f"CUDA graphs: off (capture failed: {reason})"
        self._run = graphed
        shapes = len(graphed.batches) * len(graphed.lengths)
        return f"CUDA graphs: on ({shapes} shapes captured, batch up to {max_batch})"

    def _inputs(self, prepared: Sequence[Any]) -> tuple[Any, ...]:
        import numpy as np
        import torch

        pre = self.meta["preprocess"]
        if self.modality == "text":
            enc = self.tokenizer(
                list(prepared),
                truncation=True,
                max_length=int(pre.get("max_length", 128)),
                padding="longest",
                return_tensors="np",  # padded to a graph's bucket in NumPy (serve/graphs.py)
            )
            return (enc["input_ids"], enc["attention_mask"])
        from torchrig.recipes.image_classify.augment import eval_transform

        pixels = torch.from_numpy(np.stack(prepared))
        mean, std = pre.get("mean"), pre.get("std")
        return (eval_transform(pixels, int(pre["image_size"]), mean, std).contiguous(),)


def _decode_image(data: bytes, size: int) -> Any:
    from PIL import Image

    from torchrig.recipes.image_classify.cache import decode

    if not data:
        raise InputError("an image input is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # A decompression bomb (a small file of a huge image) is refused, not decoded.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return decode(io.BytesIO(data), size)  # type: ignore[arg-type]
    except Image.UnidentifiedImageError:
        raise InputError("an input is not an image (no image format Pillow knows)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning) as exc:
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise InputError(f"an input is not an image Pillow can read ({reason})") from None


def _export_sidecar(folder: Path, backend: Backend) -> Path | None:
    """An export folder's model.onnx.json (the export's sidecar: classifier.json + check)."""
    if backend != "onnx":
        return None
    for candidate in (folder / "model.onnx.json", folder / "export" / "model.onnx.json"):
        if candidate.is_file():
            return candidate
    return None


def load(path: Path, backend: Backend = "torch", device: str = "auto") -> Classifier:
    """The classifier `path` names (kinds.find said it is one)."""
    from torchrig.serve.lm import pick_device, quiet_transformers

    quiet_transformers()
    path = Path(path)
    sidecar = _export_sidecar(path, backend)
    if backend == "onnx":
        if sidecar is None:
            raise UsageError(
                f"{path} has no ONNX export (model.onnx.json not found in it or its export/)",
                f"export it first: torchrig export-model {path} --format onnx",
            )
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        root = sidecar.parent
        run = _onnx_runner(root / sidecar.name.removesuffix(".json"))
        dev = pick_device("cpu")
        model = None
    elif any(path.glob("*.onnx.json")) and not (path / "classifier.json").exists():
        raise UsageError(
            f"{path} is an export folder; PyTorch needs the run's weights",
            "use --format onnx for an export folder, or give the run folder",
        )
    else:
        from torchrig.model_export.source import find_source, load_model

        source = find_source(path)
        meta, root = source.meta, source.root
        dev = pick_device(device)
        model = load_model(source).to(dev)
        run = _torch_runner(model, dev)
    tokenizer = None
    if meta.get("recipe") == "text-classify":
        from torchrig.recipes.text_classify.tokenizer import load_tokenizer

        tok_dir = root / str(meta.get("preprocess", {}).get("tokenizer", "tokenizer"))
        if not tok_dir.is_dir():
            raise UsageError(
                f"the tokenizer {tok_dir} that {root} names is missing",
                "copy the run's final/ (or export/) folder whole, tokenizer/ included",
            )
        tokenizer = load_tokenizer(tok_dir)
    elif meta.get("recipe") != "image-classify":
        raise UsageError(
            f"{path} is a {meta.get('recipe')!r} model; predict knows text-classify and "
            "image-classify",
            "give a run of one of those recipes",
        )
    return Classifier(
        recipe=str(meta["recipe"]),
        labels=[str(x) for x in meta["labels"]],
        meta=meta,
        root=root,
        backend=backend,
        device=dev,
        _run=run,
        tokenizer=tokenizer,
        model=model,
    )


def scores(logits: Any) -> Any:
    """What predict reads, as one [rows, 3 × labels] float32 table on the logits' device:
    the probabilities, the same sorted from the most likely down, and the label index of
    each sorted one (exact in float32 up to 2^24 labels). One table is one copy to the host;
    on a GPU it is computed inside the forward's CUDA graph (serve/graphs.py). Every small
    op and host copy a serving thread makes releases and retakes the GIL, which the event
    loop holds most of the time under load: each retake can wait."""
    import torch

    probs = torch.softmax(logits.float(), dim=-1)
    values, indices = torch.sort(probs, dim=-1, descending=True)
    return torch.cat((probs, values, indices.float()), dim=1)


def _torch_runner(model: Any, device: Any) -> Callable[[tuple[Any, ...]], Any]:
    import torch

    def run(inputs: tuple[Any, ...]) -> Any:
        with torch.inference_mode():
            return scores(model(*(torch.as_tensor(t).to(device) for t in inputs)))

    return run


def _onnx_runner(model_file: Path) -> Callable[[tuple[Any, ...]], Any]:
    from torchrig.model_export.formats import ONNX_FIX

    try:
        import onnxruntime
    except ImportError:
        raise UsageError(
            "--format onnx needs onnxruntime, which is not installed", ONNX_FIX
        ) from None
    if not model_file.is_file():
        raise UsageError(
            f"{model_file} is missing (its sidecar is there)",
            "export again: torchrig export-model RUN --format onnx",
        )
    providers = [
        p
        for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
        if p in onnxruntime.get_available_providers()
    ]
    session = onnxruntime.InferenceSession(str(model_file), providers=providers)
    names = [i.name for i in session.get_inputs()]

    def run(inputs: tuple[Any, ...]) -> Any:
        import numpy as np
        import torch

        feed = {n: np.asarray(t) for n, t in zip(names, inputs, strict=True)}
        return scores(torch.from_numpy(session.run(["logits"], feed)[0]))

    return run
