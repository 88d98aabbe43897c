"""Jupyter's doors (issue 10, findings 5 and 6): allowed origins and the wrong-token brake.

The pattern is matched as jupyter_server matches allow_origin_pat (re.fullmatch, since
GHSA-24qx-w28j-9m6p); the container test (tests/container/test_security_access.py) checks
the real server.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from torchrig.workbench.env import Settings
from torchrig.workbench.jupyter_guard import (
    ORIGIN_ENV,
    FailureThrottle,
    OriginError,
    origin_pattern,
    parse_origins,
    published_origins,
)
from torchrig.workbench.supervise import IDENTITY_PROVIDER, services_for

PUBLISHED = {ORIGIN_ENV: "http://127.0.0.1:18888,http://localhost:18888"}


def allowed(origin: str, environ: dict[str, str] = PUBLISHED) -> bool:
    return re.fullmatch(origin_pattern(parse_origins(environ)), origin) is not None


def test_the_published_origins_match() -> None:
    assert allowed("http://127.0.0.1:18888")
    assert allowed("http://localhost:18888")


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.com",
        # SECURITY J8: the bypass strings of GHSA-24qx-w28j-9m6p, on the published origin.
        "http://localhost:18888.evil.com",
        "http://localhost:18888comedy",
        "http://localhost:18888:9999",
        "http://127.0.0.1:18888.evil.com",
        # The escaping: '.' is no wildcard; other ports and schemes are other origins.
        "http://127x0x0x1:18888",
        "http://127.0.0.1:18889",
        "https://127.0.0.1:18888",
        "http://localhost:1888",
        "null",
        "",
    ],
)
def test_foreign_origins_do_not_match(origin: str) -> None:
    assert not allowed(origin)


def test_without_the_variable_the_container_port_is_pinned() -> None:
    assert parse_origins({}) == published_origins(8888)
    assert allowed("http://127.0.0.1:8888", {})
    assert not allowed("http://evil.com", {})


@pytest.mark.parametrize(
    "value",
    ["*", "http://a.example/path", "javascript:alert(1)", "http://x:1,.*", "http://user@host"],
)
def test_a_bad_origin_is_refused_in_one_line(value: str) -> None:
    with pytest.raises(OriginError, match=f"^{ORIGIN_ENV}: .* is not an origin"):
        parse_origins({ORIGIN_ENV: value})


def test_jupyter_runs_with_the_guard_and_the_pinned_origin() -> None:
    settings = Settings("alice", 4242, 4343, ("jupyter",), Path("/k"))
    (jupyter,) = services_for(settings, {"PATH": "/bin", **PUBLISHED})
    argv = jupyter.argv
    assert f"--ServerApp.identity_provider_class={IDENTITY_PROVIDER}" in argv
    pattern = next(a for a in argv if a.startswith("--ServerApp.allow_origin_pat="))
    assert pattern.split("=", 1)[1] == origin_pattern(parse_origins(PUBLISHED))
    assert not any(a.startswith("--ServerApp.allow_origin=") for a in argv)
    module, _, name = IDENTITY_PROVIDER.rpartition(".")
    source = Path(__file__).parents[2] / "src" / (module.replace(".", "/") + ".py")
    assert f"class {name}(" in source.read_text()


# --- the wrong-token brake ---------------------------------------------------------------------


def test_ten_wrong_tokens_then_nothing_is_checked_for_a_minute() -> None:
    brake = FailureThrottle(free_failures=10, window_s=60)
    now = 1000.0
    for i in range(10):
        assert brake.blocked_for("172.17.0.1", now + i * 0.01) == 0
        assert brake.failed("172.17.0.1", now + i * 0.01) is (i == 9)
    assert brake.blocked_for("172.17.0.1", now + 1) == pytest.approx(59)
    assert brake.blocked_for("10.0.0.9", now + 1) == 0  # another address is not affected
    # Refusals do not count: the block ends when the first failure is a minute old …
    assert brake.blocked_for("172.17.0.1", now + 60.005) == 0
    # … and then one more guess is allowed per expired failure, not ten.
    assert brake.failed("172.17.0.1", now + 60.005) is True
    assert brake.blocked_for("172.17.0.1", now + 60.006) > 0


def test_the_rate_of_checked_guesses_is_bounded() -> None:
    brake = FailureThrottle(free_failures=10, window_s=60)
    checked = 0
    t = 0.0
    while t < 600:  # ten minutes of one guess every 10 ms
        if brake.blocked_for("a", t) == 0:
            brake.failed("a", t)
            checked += 1
        t += 0.01
    assert checked <= 10 * 10 + 10


def test_memory_is_bounded() -> None:
    brake = FailureThrottle(free_failures=2, window_s=60, max_sources=100)
    for i in range(1000):
        brake.failed(f"10.0.{i // 256}.{i % 256}", 1.0)
    assert len(brake._failures) == 100
    # The oldest sources were forgotten, the newest kept.
    assert brake.blocked_for("10.0.0.0", 1.0) == 0
    brake.failed("10.0.3.231", 1.0)
    assert brake.blocked_for("10.0.3.231", 1.0) > 0
