"""The contract between a classification recipe and the shared loop."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class TrainBatches(Protocol):
    """Endless training batches: `(inputs, labels)` with `inputs` a tuple of CPU tensors
    (first dimension the batch) and `labels` an int64 CPU tensor [B]. A deterministic
    function of (seed, rank, world size, position): after `load_state_dict(state)` it
    yields exactly what an uninterrupted iterator would have. Ranks draw disjoint samples."""

    def __iter__(self) -> Iterator[tuple[tuple[Any, ...], Any]]: ...
    def __next__(self) -> tuple[tuple[Any, ...], Any]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


EvalBatch = tuple[tuple[Any, ...], Any, list[str]]
"""(inputs, labels, ids): as a training batch, plus one id per sample (a file path, a row
number) that reports name misclassified samples by."""


@dataclass(frozen=True)
class Mistake:
    """One misclassified evaluation sample."""

    id: str
    true: int
    predicted: int
    confidence: float  # softmax probability of the predicted class


def _identity(inputs: tuple[Any, ...], training: bool) -> tuple[Any, ...]:
    return inputs


@dataclass
class ClassifyTask:
    recipe: str
    """The recipe's name as `torchrig run` knows it: "text-classify", "image-classify"."""
    model: Any
    """A plain nn.Module whose forward(*inputs) returns logits [B, len(labels)]."""
    labels: list[str]
    """Class names; the label of class i is labels[i]."""
    train: TrainBatches
    evaluate: Callable[[], Iterable[EvalBatch]]
    """The whole evaluation set once, in the same order on every call (rank 0 evaluates)."""
    train_counts: list[int]
    """Training samples per class (balanced class weights, the report)."""
    meta: dict[str, Any]
    """Written to OUT/classifier.json beside "recipe" and "labels": {"model": {...},
    "preprocess": {...}}, everything the recipe's export.build_model needs."""
    prepare: Callable[[tuple[Any, ...], bool], tuple[Any, ...]] = _identity
    """Runs on the device after the copy: GPU augmentation and normalisation
    (training=True) or evaluation preprocessing (training=False). Eagerly, outside
    torch.compile, unless `prepare_in_step`."""
    flops_per_sample: float | None = None
    """Forward + backward FLOPs of one training sample, for MFU (None: no MFU)."""
    unit: str = "samples"
    """What one sample is called in log lines: "sequences", "images"."""
    save_extra: Callable[[Path], None] | None = None
    """Writes recipe files into a final/ folder (the tokenizer)."""
    report_mistakes: Callable[[list[Mistake], Path], None] | None = None
    """Draws misclassified samples into OUT (image-classify: a PNG grid)."""
    notes: list[str] = field(default_factory=list)
    """Lines to print once at the start (skipped corrupt files, a trained tokenizer)."""
    static_shapes: bool = False
    """Every training batch has the same shapes and dtypes (and `prepare` keeps them): the
    compiled step may then run as CUDA graphs (loop._cuda_graphs)."""
    prepare_in_step: bool = False
    """`prepare` is pure tensor code (no host reads, no shapes that depend on values): the
    loop then runs it inside the step it compiles (with the model, in the CUDA graph)
    instead of eagerly before it, so the compiler fuses it into a few kernels. Evaluation
    still calls it eagerly."""
