"""Shared by the container tests: the reproduce-it report and the timing summary.

A failing test gets a report section listing the engine commands it ran, ready to paste
into a shell. Fixtures register engines through the `watch_engine` fixture.

Fixtures record durations with the `timings` fixture (`timings.append((what, engine, s))`);
they are printed at the end of the run, so the cost of a bootstrap or a build on the CI
machine is visible in every log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from torchrig.engine.base import Engine

Timings = list[tuple[str, str, float]]

WATCHED = pytest.StashKey[list[tuple["Engine", int]]]()
TIMINGS = pytest.StashKey[Timings]()
SHOWN_COMMANDS = 15


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
    found = config.stash.get(TIMINGS, [])
    if not found:
        return
    terminalreporter.section("torchrig container timings on this machine")
    for what, engine, seconds in found:
        terminalreporter.write_line(f"{what:<34} {engine:<8} {seconds:8.2f} s")
