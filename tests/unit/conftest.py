"""Unit tests never see this machine's pip or uv configuration.

`torchrig init` writes the host's pip.conf and PIP_*/UV_* sources into [sources]
(host/pipconfig.py); the machine running the tests has its own, which must not change what a
test of init sees. Tests of that reading pass their environment explicitly.
"""

from __future__ import annotations

import os

import pytest

from torchrig.host.pipconfig import ENV_NAMES


@pytest.fixture(autouse=True)
def _no_host_pip_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
