"""The entrypoint's settings: every bad TORCHRIG_* value is one clear line and exit 64."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchrig.workbench.env import DEFAULT_SERVICES, EX_USAGE, EnvError, parse

GOOD = {
    "TORCHRIG_USER": "alice",
    "TORCHRIG_UID": "4242",
    "TORCHRIG_GID": "4343",
    "TORCHRIG_SERVICES": "jupyter,ssh",
    "TORCHRIG_AUTHORIZED_KEYS_FILE": "/run/torchrig/authorized_keys",
}
SRC = Path(__file__).resolve().parents[2] / "src"


def test_good_environment() -> None:
    settings = parse(GOOD)
    assert (settings.user, settings.uid, settings.gid) == ("alice", 4242, 4343)
    assert settings.services == ("jupyter", "ssh")
    assert settings.home == Path("/home/alice")
    assert settings.authorized_keys_file == Path("/run/torchrig/authorized_keys")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "TORCHRIG_UID",
            "abc",
            'TORCHRIG_UID must be a number between 1 and 2147483646, got "abc"',
        ),
        ("TORCHRIG_UID", "0", "got 0 (root): the workbench never runs as root"),
        ("TORCHRIG_GID", "0", "TORCHRIG_GID must be a number between 1 and 2147483646, got 0"),
        ("TORCHRIG_UID", "2147483647", 'got "2147483647"'),
        ("TORCHRIG_UID", "99999999999", 'got "99999999999"'),
        ("TORCHRIG_UID", "-5", 'got "-5"'),
        ("TORCHRIG_UID", "+5", 'got "+5"'),
        ("TORCHRIG_UID", " 42", 'got " 42"'),
        ("TORCHRIG_UID", "4_2", 'got "4_2"'),
        ("TORCHRIG_UID", "٤٢", 'got "٤٢"'),  # Arabic-Indic digits: int() would take them
        ("TORCHRIG_UID", "", 'got ""'),
        (
            "TORCHRIG_GID",
            "1.5",
            'TORCHRIG_GID must be a number between 1 and 2147483646, got "1.5"',
        ),
        ("TORCHRIG_USER", "root", 'TORCHRIG_USER must not be "root"'),
        ("TORCHRIG_USER", "", "TORCHRIG_USER must name the workbench user, but it is empty"),
        ("TORCHRIG_USER", "Alice", 'got "Alice"'),
        ("TORCHRIG_USER", "1alice", 'got "1alice"'),
        ("TORCHRIG_USER", "al ice", 'got "al ice"'),
        ("TORCHRIG_USER", "a" * 33, "at most 32 characters"),
        ("TORCHRIG_USER", "alice:x", 'got "alice:x"'),
        ("TORCHRIG_USER", "../etc", 'got "../etc"'),
        ("TORCHRIG_USER", "bob\n", 'got "bob\\n"'),
        ("TORCHRIG_SERVICES", "jupyter,vnc", '("vnc" is not one)'),
        ("TORCHRIG_AUTHORIZED_KEYS_FILE", "keys", "must be an absolute path"),
    ],
)
def test_bad_values_are_named(key: str, value: str, expected: str) -> None:
    with pytest.raises(EnvError) as caught:
        parse({**GOOD, key: value})
    message = str(caught.value)
    assert expected in message
    assert message.startswith(key)
    assert "\n" not in message


@pytest.mark.parametrize("key", ["TORCHRIG_USER", "TORCHRIG_UID", "TORCHRIG_GID"])
def test_missing_values_are_named(key: str) -> None:
    env = {k: v for k, v in GOOD.items() if k != key}
    with pytest.raises(EnvError, match=f"^{key} .*not set"):
        parse(env)


def test_edges_of_the_id_range_are_accepted() -> None:
    settings = parse({**GOOD, "TORCHRIG_UID": "1", "TORCHRIG_GID": "2147483646"})
    assert (settings.uid, settings.gid) == (1, 2147483646)


def test_services_default_order_and_repeats() -> None:
    env = {k: v for k, v in GOOD.items() if k != "TORCHRIG_SERVICES"}
    assert parse(env).services == DEFAULT_SERVICES
    assert parse({**GOOD, "TORCHRIG_SERVICES": ""}).services == ()
    got = parse({**GOOD, "TORCHRIG_SERVICES": " tensorboard, ssh,ssh ,jupyter"}).services
    assert got == ("jupyter", "ssh", "tensorboard")


def test_the_entrypoint_prints_one_line_and_exits_64() -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(SRC),
        **GOOD,
        "TORCHRIG_UID": "abc",
    }
    done = subprocess.run(
        [sys.executable, "-m", "torchrig.workbench.entrypoint"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == EX_USAGE
    assert done.stdout == ""
    assert done.stderr == (
        'torchrig: TORCHRIG_UID must be a number between 1 and 2147483646, got "abc"\n'
    )


def test_workbench_modules_import_only_the_standard_library() -> None:
    """They run in the image's venv, where torchrig's host-side dependencies are absent;
    torchrig.contract (the names both sides share) and torchrig.units (the one size
    formatter) are standard library only."""
    script = (
        "import sys\n"
        "import torchrig.workbench.entrypoint, torchrig.workbench.supervise\n"
        "import torchrig.workbench.health\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'rich', 'packaging', 'pynvml', 'uv')\n"
        "    or (m.startswith('torchrig.')\n"
        "        and not m.startswith(('torchrig.workbench', 'torchrig.contract',\n"
        "                              'torchrig.units'))))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": str(SRC), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == ""
