"""The build-time wheel server: a proxy for the one host http://torchrig-wheels/, nothing else."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from torchrig.image.wheelserver import WHEELS_URL, serve


def through(proxy: str, url: str) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    (tmp_path / "demo-1.0-py3-none-any.whl").write_bytes(b"wheel bytes")
    return tmp_path


def test_it_serves_the_folder_as_torchrig_wheels_through_the_proxy(wheelhouse: Path) -> None:
    with serve(wheelhouse) as proxy:
        assert proxy.startswith("http://127.0.0.1:")
        status, body = through(proxy, WHEELS_URL + "demo-1.0-py3-none-any.whl")
        assert (status, body) == (200, b"wheel bytes")
        status, listing = through(proxy, WHEELS_URL)
        assert status == 200 and b'href="demo-1.0-py3-none-any.whl"' in listing


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/demo-1.0-py3-none-any.whl",
        "http://torchrig-wheels:8080/demo-1.0-py3-none-any.whl",
        "http://torchrig-wheels.example.com/demo-1.0-py3-none-any.whl",
    ],
)
def test_it_is_no_open_proxy(wheelhouse: Path, url: str) -> None:
    with serve(wheelhouse) as proxy:
        assert through(proxy, url) == (403, b"")


def test_two_builds_at_once_get_two_servers_and_the_same_url(wheelhouse: Path) -> None:
    with serve(wheelhouse) as first, serve(wheelhouse) as second:
        assert first != second
        for proxy in (first, second):
            assert through(proxy, WHEELS_URL + "demo-1.0-py3-none-any.whl")[0] == 200
