"""OUT/mistakes.png: the misclassified validation images a person should look at first.

The most confident mistakes come first (up to 36, a 6 × 6 grid): a confidently wrong image
is more often a mislabelled one, or a class the data set confuses, than a hard case.
Each is titled "true → predicted (p)" and drawn from the decoded cache.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchrig.recipes.classify.task import Mistake

MAX_SHOWN = 36


def draw_mistakes(
    mistakes: list[Mistake],
    labels: list[str],
    image_of: Callable[[str], Any],
    target: Path,
) -> Path | None:
    """Write the grid to `target` atomically; None (and no file) when there are none."""
    if not mistakes:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = sorted(mistakes, key=lambda m: (-m.confidence, m.id))[:MAX_SHOWN]
    cols = min(6, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, m in zip(axes.flat, shown, strict=False):
        ax.imshow(image_of(m.id))
        ax.set_title(f"{labels[m.true]} → {labels[m.predicted]} ({m.confidence:.2f})", fontsize=8)
    fig.suptitle(f"{len(shown)} of {len(mistakes)} misclassified (most confident first)")
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, format="png", dpi=100)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(0o644)
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return target
