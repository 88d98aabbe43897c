"""The build-time wheel server: a proxy for the one host http://torchrig-wheels/, nothing else."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from torchrig.image.wheelserver import PROXY_BUILD_ARG, UV_PATH, WHEELS_URL, Shelf, serve


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


# --- issue 18: downloads overlap the build; uv for the wheel layers --------------------------


def test_a_wheel_still_downloading_is_listed_and_waited_for(tmp_path: Path) -> None:
    """The build asks while the host still fetches: the listing names every locked file at
    once and a request for one still arriving is held, not answered 404."""
    shelf = Shelf(tmp_path, ["late-1.0-py3-none-any.whl"])
    arrive = threading.Timer(0.6, (tmp_path / "late-1.0-py3-none-any.whl").write_bytes, [b"x"])
    with serve(shelf) as proxy:
        status, listing = through(proxy, WHEELS_URL)
        assert status == 200 and b'href="late-1.0-py3-none-any.whl"' in listing
        arrive.start()
        started = time.monotonic()
        assert through(proxy, WHEELS_URL + "late-1.0-py3-none-any.whl") == (200, b"x")
        assert time.monotonic() - started >= 0.4
        shelf.finish()


def test_a_file_that_never_arrives_is_404_once_the_download_ended(tmp_path: Path) -> None:
    shelf = Shelf(tmp_path, ["gone-1.0-py3-none-any.whl"])
    with serve(shelf) as proxy:
        threading.Timer(0.3, shelf.finish).start()
        assert through(proxy, WHEELS_URL + "gone-1.0-py3-none-any.whl")[0] == 404
        assert through(proxy, WHEELS_URL + "other-1.0-py3-none-any.whl")[0] == 404


def test_the_hosts_uv_is_offered_at_slash_uv(tmp_path: Path) -> None:
    uv = tmp_path / "uv-binary"
    uv.write_bytes(b"\x7fELF uv")
    (tmp_path / "wheels").mkdir()
    with serve(Shelf(tmp_path / "wheels", [], tools={UV_PATH: uv})) as proxy:
        assert through(proxy, WHEELS_URL + UV_PATH) == (200, b"\x7fELF uv")
    with serve(Shelf(tmp_path / "wheels", [])) as proxy:
        assert through(proxy, WHEELS_URL + UV_PATH)[0] == 404


def test_build_starts_before_the_download_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """image.build_image: the engine's build (base and apt layers) runs while the wheels are
    still downloading, and its wheel request is answered once the file lands (before: the
    build started only after every download)."""
    from torchrig.engine import RecordingEngine
    from torchrig.image import build as build_module
    from torchrig.lock.lockfile import Target
    from torchrig.lock.uv import LockedPackage

    wheel = "demo-1.0-py3-none-any.whl"
    package = LockedPackage(
        name="demo", version="1.0", index="", file=wheel, url="", size=1, sha256="0" * 64
    )
    cached = tmp_path / "cache" / wheel
    cached.parent.mkdir()
    events: list[str] = []

    def slow_fetch(packages: object, *, progress: object = None, on_ready: Any = None) -> Any:
        time.sleep(0.8)
        cached.write_bytes(b"wheel")
        events.append("downloaded")
        on_ready(cached)
        return {"demo": cached}, 5

    class Building(RecordingEngine):
        def build(self, context_dir: Path, dockerfile: Path, tag: str, **kw: Any) -> str:
            events.append("build started")
            proxy = kw["build_args"][PROXY_BUILD_ARG]
            events.append(f"wheel {through(proxy, WHEELS_URL + wheel)}")
            return super().build(context_dir, dockerfile, tag, **kw)

    monkeypatch.setattr(build_module, "fetch_all", slow_fetch)
    monkeypatch.setattr(build_module, "write_context", lambda image, context: None)

    class Image:
        tag = "torchrig/demo:cpu-0123456789ab"
        dockerfile = "FROM scratch\n"
        pending: tuple[str, ...] = ()

    target = Target(
        variant="cpu",
        torch="2.13.0",
        cuda="",
        python="3.11",
        platform="x86_64-manylinux_2_28",
        torch_index="",
        inputs_digest="sha256:0",
        requirements=[],
        packages=[package],
    )
    result = build_module.build_image(Image(), target, Building())  # type: ignore[arg-type]
    assert events == ["build started", "downloaded", "wheel (200, b'wheel')"]
    assert result.built and result.downloaded_bytes == 5
