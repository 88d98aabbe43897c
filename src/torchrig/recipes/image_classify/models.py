"""The image classifiers: our own tiny CNN, torchvision's zoo, any timm model.

    tiny-cnn          a small ResNet-style net in plain torch (tests, CPU smoke runs)
    resnet50, ...     torchvision.models.get_model(NAME, weights=None, num_classes=C)
    timm:NAME         timm.create_model(NAME, pretrained=False, num_classes=C)

torchvision and timm are imported only when asked for. Nothing is downloaded: pretrained
weights come from a local file (`load_weights`), whose classifier head is skipped when its
shape is not this model's (ImageNet's 1,000 classes → C), so it starts fresh.

Every model takes float32 [B, 3, H, W] normalised pixels and returns logits [B, C].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchrig.errors import UsageError

TINY = "tiny-cnn"
TIMM_PREFIX = "timm:"


class _Block(nn.Module):  # type: ignore[misc]
    """ResNet's basic block: two 3×3 convolutions and a shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Any) -> Any:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class TinyCNN(nn.Module):  # type: ignore[misc]
    """Stem, three stages of one basic block (16, 32, 64 channels, each halving the
    resolution), global average pooling, a linear head named `fc` as in torchvision's
    ResNets. ~77k parameters, ~7 MFLOPs per 32-px image: trains on a CPU in seconds."""

    def __init__(self, num_classes: int, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        a, b, c = widths
        self.stem = nn.Sequential(
            nn.Conv2d(3, a, 3, 1, 1, bias=False), nn.BatchNorm2d(a), nn.ReLU()
        )
        self.stages = nn.Sequential(_Block(a, a, 2), _Block(a, b, 2), _Block(b, c, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: Any) -> Any:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def source(name: str) -> str:
    """Where a model name comes from: "tiny", "timm" or "torchvision"."""
    if name == TINY:
        return "tiny"
    return "timm" if name.startswith(TIMM_PREFIX) else "torchvision"


def build(name: str, num_classes: int) -> Any:
    """The untrained model `name` with a head for `num_classes` classes."""
    kind = source(name)
    if kind == "tiny":
        return TinyCNN(num_classes)
    if kind == "timm":
        timm = _import("timm", name)
        model_name = name.removeprefix(TIMM_PREFIX)
        try:
            return timm.create_model(model_name, pretrained=False, num_classes=num_classes)
        except RuntimeError as exc:  # timm: "Unknown model (...)"
            raise UsageError(
                f"--model {name}: {exc}", "see timm.list_models() for the names timm knows"
            ) from None
    torchvision = _import("torchvision", name, unknown_if_missing=True)
    try:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except (ValueError, KeyError) as exc:  # an unknown name
        raise UsageError(
            f"--model {name!r} is not a torchvision model ({exc})",
            f"use {TINY}, a name from torchvision.models.list_models() (resnet50, "
            "efficientnet_b0, convnext_tiny, ...) or timm:NAME",
        ) from None


def _import(module: str, name: str, unknown_if_missing: bool = False) -> Any:
    """`module`, or a UsageError. unknown_if_missing: `name` only might be one of its
    models (any name that is not tiny or timm:...), so a missing module means the name is
    unknown here, not that the module is needed."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if unknown_if_missing and exc.name == module:
            raise UsageError(
                f"--model {name!r} is neither {TINY!r} nor timm:NAME, so it can only be a "
                f"{module} model, and {module} is not installed to know it",
                f"check the name; use --model {TINY}, or install {module} for its models "
                "(resnet50, efficientnet_b0, ...)",
            ) from None
        raise _import_error(module, name, exc) from None
    except Exception as exc:  # a wheel built for another torch (operator errors)
        raise _import_error(module, name, exc) from None


def _import_error(module: str, name: str, exc: Exception) -> UsageError:
    return UsageError(
        f"--model {name} needs {module}, which cannot be imported here "
        f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]})",
        f"install the {module} build that matches this torch, or use --model {TINY}",
    )


def count_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_sample(model: Any, image_size: int) -> float:
    """Training FLOPs of one image: FlopCounterMode on a one-image forward (matmuls and
    convolutions, 2 per multiply-add), × 3 for forward + backward. Counted in eval mode
    without gradients, so batch-norm statistics are not touched."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        model.train(was_training)
    return 3.0 * float(counter.get_total_flops())


def _read_state(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise UsageError(
            f"--weights {file} does not exist", "give a local .safetensors or .pt weights file"
        )
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(file)))
        except Exception as exc:  # safetensors raises its own error types
            raise UsageError(
                f"--weights {file} is not a readable safetensors file ({exc})",
                "give the file as saved by safetensors.torch.save_file",
            ) from None
    import pickle

    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UsageError(
            f"--weights {file} holds Python objects other than tensors "
            f"({' '.join(str(exc).split())[:160]})",
            "save a state_dict (torch.save(model.state_dict(), FILE)) or use safetensors",
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise UsageError(f"--weights {file} cannot be read ({exc})", "check the file") from None
    # Training checkpoints often wrap the weights: {"state_dict": ...}, {"model": ...}.
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UsageError(f"--weights {file} holds no state dict", "save model.state_dict()")
    # Saved from a DDP-wrapped or compiled model.
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
    return state


def load_weights(model: Any, file: Path) -> list[str]:
    """Load local weights into `model`, skipping tensors whose shape differs (the classifier
    head of another number of classes). Anything else that does not fit is an error: a
    model half-loaded from the wrong architecture would train on silently. Returns the
    lines to tell the person."""
    file = Path(file)
    state = _read_state(file)
    own = model.state_dict()
    differ = [
        k for k, v in state.items() if k in own and tuple(getattr(v, "shape", ())) != own[k].shape
    ]
    fit = {k: v for k, v in state.items() if k in own and k not in differ}
    # Old checkpoints lack batch-norm's step counters; they are only used without momentum.
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if not fit:
        raise UsageError(
            f"none of the {len(state)} tensors in --weights {file} belong to this model",
            "give weights of the same architecture as --model",
        )
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise UsageError(
            f"--weights {file} does not fit the model: {', '.join(parts)}",
            "give weights of the same architecture as --model",
        )
    model.load_state_dict(fit, strict=False)
    notes = [f"weights: {len(fit)} tensors from {file}"]
    if differ:
        shown = ", ".join(
            f"{k} {tuple(state[k].shape)} → {tuple(own[k].shape)}" for k in differ[:3]
        )
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        notes.append(
            f"weights: skipped {len(differ)} tensor(s) whose shape differs ({shown}{more}): "
            "they start fresh (the classifier head for this number of classes)"
        )
    return notes
