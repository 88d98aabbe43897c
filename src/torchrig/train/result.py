"""What a training run did, as the recipes return it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunResult:
    """Returned on every rank; records only on rank 0."""

    start_step: int
    step: int
    completed: bool  # reached cfg.steps
    stopped: str | None  # why the loop ended early (SIGTERM, stop-after), None if it did not
    records: list[dict[str, Any]] = field(default_factory=list)
    checkpoint_s: list[float] = field(default_factory=list)
    strategy: str = "none"
    precision: str = "fp32"
    compiled: bool = False
    out: Path = Path()
    evaluation: dict[str, Any] | None = None  # classification: the final evaluation report
