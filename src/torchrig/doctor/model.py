"""What a check returns, how a check names itself, and how a list of checks is run."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from torchrig.command import debug_enabled

Status = Literal["pass", "warn", "fail", "skip"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail", "skip")

C = TypeVar("C")


class Check(BaseModel):
    """The verdict of one check: what was found and, when something is wrong, what to do."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="Stable identifier, e.g. 'driver-cuda'.")
    title: str = Field(description="What is checked, in a few words.")
    status: Status
    finding: str = Field(description="One line: what this machine has.")
    fix: str = Field(default="", description="The exact command or setting; '' when nothing to do.")
    source: str = Field(
        default="", description="Where the rule comes from: a FACTS source key (S22) or a URL."
    )


@dataclass(frozen=True)
class Rule:
    """A check's identity; its methods make the verdicts, so each check reads as a decision."""

    id: str
    title: str
    source: str = ""

    def ok(self, finding: str) -> Check:
        return self._make("pass", finding, "")

    def warn(self, finding: str, fix: str) -> Check:
        return self._make("warn", finding, fix)

    def fail(self, finding: str, fix: str) -> Check:
        return self._make("fail", finding, fix)

    def skip(self, finding: str) -> Check:
        return self._make("skip", finding, "")

    def _make(self, status: Status, finding: str, fix: str) -> Check:
        return Check(
            id=self.id,
            title=self.title,
            status=status,
            finding=finding,
            fix=fix,
            source=self.source,
        )


def check_id(function: Callable[..., Check]) -> str:
    """`check_driver_cuda` → 'driver-cuda': a check's id is its function's name."""
    return function.__name__.removeprefix("check_").replace("_", "-")


def run_checks(checks: Sequence[Callable[[C], Check]], context: C) -> list[Check]:
    """Every check, in order. A check that crashes is a bug in torchrig, not a finding about
    the machine: it is reported as a warning saying so, and the others still run."""
    results: list[Check] = []
    for check in checks:
        try:
            results.append(check(context))
        except Exception as exc:
            if debug_enabled():
                traceback.print_exc()
            name = check_id(check)
            results.append(
                Check(
                    id=name,
                    title=name,
                    status="warn",
                    finding=f"this check could not run: {type(exc).__name__}: {exc}",
                    fix="a bug in torchrig: rerun `torchrig --debug doctor` and report the "
                    "traceback",
                )
            )
    return results


def failed(checks: Sequence[Check]) -> list[Check]:
    return [c for c in checks if c.status == "fail"]


def tally(checks: Sequence[Check]) -> dict[Status, int]:
    return {status: sum(1 for c in checks if c.status == status) for status in STATUSES}
