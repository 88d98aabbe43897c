"""Shared by the container tests: the reproduce-it report and the timing summary.

A failing test gets a report section listing the engine commands it ran, ready to paste
into a shell. Fixtures register engines through the `watch_engine` fixture.

Fixtures record durations with the `timings` fixture (`timings.append((what, engine, s))`);
they are printed at the end of the run, so the cost of a bootstrap or a build on the CI
machine is visible in every log.

Black-box attack tests record what they measured with the `security_figures` fixture
(`security_figures.record("planted_module_root_runs", 0, of=12, engine="docker")`); the
figures are written at the end of the run to SECURITY_FIGURES (docs/security.md quotes
the committed copy) and printed, so every CI log carries them.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from torchrig.engine.base import Engine

Timings = list[tuple[str, str, float]]

WATCHED = pytest.StashKey[list[tuple["Engine", int]]]()
TIMINGS = pytest.StashKey[Timings]()
SHOWN_COMMANDS = 15
SECURITY_FIGURES = Path(
    os.environ.get(
        "TORCHRIG_SECURITY_FIGURES",
        Path(__file__).parents[2] / "benchmarks" / "results" / "security-figures.json",
    )
)


@dataclass
class SecurityFigures:
    """Counts measured by attacking a running workbench from outside, keyed by figure name."""

    found: dict[str, dict[str, object]] = field(default_factory=dict)

    def record(
        self, figure: str, value: int, *, of: int | None = None, engine: str = "", test: str = ""
    ) -> None:
        key = f"{figure}[{engine}]" if engine else figure
        self.found[key] = {"value": value, "of": of, "engine": engine, "test": test}


FIGURES = pytest.StashKey[SecurityFigures]()


@pytest.fixture
def watch_engine(request: pytest.FixtureRequest) -> Callable[[Engine], None]:
    """`watch_engine(engine)`: show the commands it runs from now on if this test fails."""

    def watch(engine: Engine) -> None:
        watched = request.node.stash.setdefault(WATCHED, [])
        watched.append((engine, len(engine.commands)))

    return watch


@pytest.fixture(scope="session")
def timings(pytestconfig: pytest.Config) -> Timings:
    return pytestconfig.stash.setdefault(TIMINGS, [])


@pytest.fixture(scope="session")
def security_figures(pytestconfig: pytest.Config) -> SecurityFigures:
    return pytestconfig.stash.setdefault(FIGURES, SecurityFigures())


def _write_security_figures(figures: SecurityFigures) -> None:
    document = {
        "what": "security figures measured by the container tests (black-box, 127.0.0.1)",
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs",
        "figures": dict(sorted(figures.found.items())),
    }
    SECURITY_FIGURES.parent.mkdir(parents=True, exist_ok=True)
    SECURITY_FIGURES.write_text(json.dumps(document, indent=2) + "\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    lines: list[str] = []
    for engine, start in item.stash.get(WATCHED, []):
        commands = engine.commands[start:]
        if len(commands) > SHOWN_COMMANDS:
            lines.append(f"# … {len(commands) - SHOWN_COMMANDS} earlier commands")
        lines += commands[-SHOWN_COMMANDS:]
    if lines:
        report.sections.append(
            (
                "engine commands (the last one failed or was checked; paste to reproduce)",
                "\n".join(lines),
            )
        )


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    figures = config.stash.get(FIGURES, None)
    if figures is not None and figures.found:
        _write_security_figures(figures)
        terminalreporter.section(f"security figures (written to {SECURITY_FIGURES})")
        for key, figure in sorted(figures.found.items()):
            of = f" of {figure['of']}" if figure["of"] is not None else ""
            terminalreporter.write_line(f"{key:<48} {figure['value']}{of}")
    found = config.stash.get(TIMINGS, [])
    if not found:
        return
    terminalreporter.section("torchrig container timings on this machine")
    for what, engine, seconds in found:
        terminalreporter.write_line(f"{what:<34} {engine:<8} {seconds:8.2f} s")
