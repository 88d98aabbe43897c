"""`torchrig doctor --explain`: match pasted errors or logs against known failure modes.

The failure modes are data (`data/failures.toml`): exact texts from the field, each with its
cause, fix and source. A mode matches when any of its patterns (regular expressions, case
insensitive) occurs anywhere in the text. Several modes can match one log (a bus error and
the DataLoader's follow-up, a capability warning and the kernel error it explains): all are
returned, specific ones before catch-alls, then the longest match first, since a longer
matched text pins the cause down better than a short common phrase.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field, field_validator

UNKNOWN_HINT = (
    "run `torchrig doctor` on the host and `torchrig exec -- torchrig doctor --inside` in the "
    "workbench; rerun the failing program with NCCL_DEBUG=INFO (multi-GPU), "
    "TORCH_DISTRIBUTED_DEBUG=DETAIL, CUDA_LAUNCH_BLOCKING=1 (CUDA errors) and paste the first "
    "error line, not the last"
)
MAX_LINE = 240


class FailureMode(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str
    patterns: list[str] = Field(min_length=1)
    generic: bool = Field(
        default=False, description="A catch-all symptom: listed after specific matches."
    )
    cause: str
    fix: str
    source: str
    url: str = ""

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} does not compile: {exc}") from None
        return value

    @property
    def compiled(self) -> list[re.Pattern[str]]:
        return [_compile(p) for p in self.patterns]


class Match(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    cause: str
    fix: str
    source: str
    url: str
    matched: str = Field(description="The line of the text that matched, trimmed.")
    generic: bool


@cache
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


@cache
def load_failures() -> tuple[FailureMode, ...]:
    text = resources.files("torchrig.doctor").joinpath("data", "failures.toml").read_text("utf-8")
    rows = tomllib.loads(text)["failure"]
    modes = tuple(FailureMode.model_validate(row) for row in rows)
    ids = [m.id for m in modes]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise ValueError(f"failures.toml: duplicate ids {sorted(duplicates)}")
    return modes


def explain(text: str, modes: tuple[FailureMode, ...] | None = None) -> list[Match]:
    """Every failure mode the text shows, most specific first; [] when none."""
    found: list[tuple[tuple[bool, int, int], Match]] = []
    for mode in modes if modes is not None else load_failures():
        best: re.Match[str] | None = None
        for pattern in mode.compiled:
            hit = pattern.search(text)
            if hit and (best is None or len(hit.group(0)) > len(best.group(0))):
                best = hit
        if best is None:
            continue
        match = Match(
            id=mode.id,
            title=mode.title,
            cause=mode.cause,
            fix=mode.fix,
            source=mode.source,
            url=mode.url,
            matched=_line_of(text, best.start(), best.end()),
            generic=mode.generic,
        )
        found.append(((mode.generic, -len(best.group(0)), best.start()), match))
    found.sort(key=lambda item: item[0])
    return [match for _, match in found]


def _line_of(text: str, start: int, end: int) -> str:
    """The whole line(s) holding a match, so the person sees it in its own words."""
    first = text.rfind("\n", 0, start) + 1
    last = text.find("\n", end)
    line = text[first : len(text) if last == -1 else last].strip()
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"
