"""How well a classifier does: accuracy, macro-F1, a per-class report, the confusion matrix.

Pure functions of (true, predicted) class indices, so they are tested on hand-made
cases; `plot_confusion` draws the matrix (row-normalised colours, counts written in) as a
PNG. Precision, recall and F1 of a class with no samples and no predictions are 0 (the
convention of scikit-learn's zero_division=0): a class the model never predicts lowers the
macro average instead of vanishing from it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def confusion_matrix(
    true: Sequence[int], predicted: Sequence[int], n_classes: int
) -> list[list[int]]:
    """matrix[t][p]: samples of class t predicted as p."""
    if len(true) != len(predicted):
        raise ValueError("true and predicted differ in length")
    matrix = [[0] * n_classes for _ in range(n_classes)]
    for t, p in zip(true, predicted, strict=True):
        matrix[t][p] += 1
    return matrix


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def report(matrix: list[list[int]], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro and support-weighted F1, and precision/recall/F1/support per class."""
    n = len(labels)
    total = sum(sum(row) for row in matrix)
    correct = sum(matrix[i][i] for i in range(n))
    per_class: dict[str, dict[str, float | int]] = {}
    f1s: list[float] = []
    weighted = 0.0
    for i, label in enumerate(labels):
        tp = matrix[i][i]
        support = sum(matrix[i])
        predicted = sum(matrix[r][i] for r in range(n))
        precision = _ratio(tp, predicted)
        recall = _ratio(tp, support)
        f1 = _ratio(2 * tp, support + predicted)  # = 2PR/(P+R), 0 when both are 0
        per_class[label] = {
            "precision": round(precision, 6),
            "recall": round(recall, 6),
            "f1": round(f1, 6),
            "support": support,
        }
        f1s.append(f1)
        weighted += f1 * support
    return {
        "samples": total,
        "accuracy": round(_ratio(correct, total), 6),
        "macro_f1": round(sum(f1s) / n, 6) if n else 0.0,
        "weighted_f1": round(weighted / total, 6) if total else 0.0,
        "per_class": per_class,
        "confusion": matrix,
        "labels": list(labels),
    }


def format_report(result: dict[str, Any]) -> str:
    """The per-class table as text, for the log."""
    from rich.cells import cell_len

    labels = result["labels"]
    # Terminal cells, not characters: a CJK character or an emoji takes two, so padding
    # by len() pushed the columns of those rows out of line.
    width = max([len("class"), *(cell_len(label) for label in labels)])

    def pad(text: str) -> str:
        return text + " " * (width - cell_len(text))

    lines = [f"{pad('class')}  precision  recall  f1      support"]
    for label in labels:
        row = result["per_class"][label]
        lines.append(
            f"{pad(label)}  {row['precision']:<9.4f}  {row['recall']:<6.4f}  "
            f"{row['f1']:<6.4f}  {row['support']}"
        )
    lines.append(
        f"accuracy {result['accuracy']:.4f} | macro-F1 {result['macro_f1']:.4f} | "
        f"{result['samples']} samples"
    )
    return "\n".join(lines)


def class_weights(counts: Sequence[int]) -> list[float]:
    """Balanced weights, total / (classes × count): a class with half the samples weighs
    twice as much, and the weights average to 1 over the samples. A class absent from the
    training data gets weight 0 (it contributes no loss either way)."""
    total = sum(counts)
    present = sum(1 for c in counts if c > 0)
    return [total / (present * c) if c > 0 else 0.0 for c in counts]


# Fonts tried glyph by glyph (matplotlib's fallback): Latin first, then CJK (the image
# installs fonts-noto-cjk), then monochrome emoji (fonts-symbola: matplotlib cannot draw
# colour emoji fonts). Only those installed are named, so matplotlib does not warn.
FALLBACK_FONTS = (
    ("DejaVu Sans", ""),
    ("Noto Sans CJK JP", "NotoSansCJK-Regular.ttc"),
    ("Noto Sans CJK SC", "NotoSansCJKsc-Regular.otf"),
    ("WenQuanYi Micro Hei", "wqy-microhei.ttc"),
    ("Symbola", "Symbola_hint.ttf"),
)
_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts")


def label_fonts() -> list[str]:
    """The installed fonts of FALLBACK_FONTS, in order. A font installed after matplotlib
    built its font cache (~/.cache/matplotlib) is not in it: such files are added here."""
    from matplotlib import font_manager

    known = {f.name for f in font_manager.fontManager.ttflist}
    for name, file in FALLBACK_FONTS:
        if name in known or not file:
            continue
        for root in _FONT_DIRS:
            for path in Path(root).rglob(file) if Path(root).is_dir() else []:
                font_manager.fontManager.addfont(str(path))
                known = {f.name for f in font_manager.fontManager.ttflist}
                break
    return [name for name, _ in FALLBACK_FONTS if name in known] or ["DejaVu Sans"]


def plot_confusion(result: dict[str, Any], png: Path, title: str = "") -> Path:
    """The confusion matrix as a PNG (rows: true class, columns: predicted), atomically."""
    import matplotlib

    matplotlib.use("Agg")  # no display in a container
    import matplotlib.pyplot as plt

    matrix = result["confusion"]
    labels = result["labels"]
    n = len(labels)
    rows = [[v / max(1, sum(row)) for v in row] for row in matrix]
    size = min(4 + 0.45 * n, 24)
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f".{png.name}.{os.getpid()}.tmp.png")
    with plt.rc_context({"font.family": label_fonts()}):
        fig, ax = plt.subplots(figsize=(size, size * 0.85), dpi=100)
        try:
            _draw(fig, ax, result, rows, title)
            fig.savefig(tmp)
        finally:
            plt.close(fig)
    tmp.replace(png)
    return png


def _draw(fig: Any, ax: Any, result: dict[str, Any], rows: list[list[float]], title: str) -> None:
    matrix = result["confusion"]
    labels = result["labels"]
    n = len(labels)
    image = ax.imshow(rows, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:  # counts stay legible up to about this many classes
        for t in range(n):
            for p in range(n):
                colour = "white" if rows[t][p] > 0.5 else "black"
                ax.text(p, t, str(matrix[t][p]), ha="center", va="center", color=colour, fontsize=8)
    ax.set_title(title or f"accuracy {result['accuracy']:.3f}, macro-F1 {result['macro_f1']:.3f}")
    fig.tight_layout()
