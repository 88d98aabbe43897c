"""report.html in a real browser: Debian's headless chromium opens the report of a real
(tiny, CPU) classifier run over the DevTools protocol; the page must log no console error,
throw nothing, break no Content-Security-Policy rule (it fetches nothing), and show its
curves and embedded pictures."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from blobs import blob_cfg, blob_task, quiet

from torchrig.recipes.classify.loop import run
from torchrig.train.report import write_report

BROWSERS = ("chromium", "chromium-browser")


def _browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("chromium is a test dependency (.ci/install-engines.sh installs it)", pytrace=False)


class Page:
    """One tab, driven over the DevTools protocol (websocket-client, a test dependency)."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return dict(msg.get("result") or {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            assert time.monotonic() < deadline, f"no {method} in {timeout} s"
            self.events.append(json.loads(self.ws.recv()))

    def errors(self) -> list[str]:
        found = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"])[:300])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(json.dumps(params.get("args"))[:300])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(params["entry"].get("text", "")[:300])
        return found


@pytest.fixture
def chromium(tmp_path: Path) -> Any:
    proc = subprocess.Popen(
        [_browser(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--remote-debugging-port=0", f"--user-data-dir={tmp_path / 'profile'}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            match = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if match:
                port = int(match.group(1))
        assert port, "chromium did not start its DevTools endpoint"
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _open(port: int, url: str) -> Page:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
        tabs = json.load(resp)
    page = Page(next(t for t in tabs if t["type"] == "page")["webSocketDebuggerUrl"])
    for domain in ("Runtime", "Log", "Page"):
        page.call(f"{domain}.enable")
    page.call("Page.navigate", url=url)
    page.wait_for("Page.loadEventFired")
    return page


def test_the_report_of_a_classifier_run_renders_without_errors(
    chromium: int, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run(blob_cfg(out, eval_every=10), blob_task(), say=quiet)
    report = write_report(out)
    page = _open(chromium, report.as_uri())
    shown = page.call(
        "Runtime.evaluate",
        returnByValue=True,
        expression="""JSON.stringify({
            headings: [...document.querySelectorAll('h2')].map(h => h.textContent),
            plots: [...document.querySelectorAll('.plot svg')].map(
                s => s.querySelectorAll('path').length),
            images: [...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0]),
        })""",
    )
    seen = json.loads(shown["result"]["value"])
    time.sleep(0.5)  # late console messages
    page.call("Runtime.evaluate", expression="1")  # drains the socket's queued events
    assert page.errors() == []
    assert {"Loss and learning rate", "Validation", "Throughput and MFU", "Confusion matrix",
            "Config", "Environment"} <= set(seen["headings"])  # fmt: skip
    assert len(seen["plots"]) == 3 and all(n > 10 for n in seen["plots"])  # drawn lines
    assert seen["images"] == [["Confusion matrix", True]]


def test_a_blocked_fetch_would_be_caught(chromium: int, tmp_path: Path) -> None:
    """The check above can fail: a page that breaks the report's policy logs an error."""
    (tmp_path / "metrics.jsonl").write_text("")
    page_file = tmp_path / "report.html"
    page_file.write_text(
        write_report(tmp_path, env={})
        .read_text()
        .replace("</body>", '<img src="http://127.0.0.1:9/x.png"></body>')
    )
    page = _open(chromium, page_file.as_uri())
    time.sleep(0.5)
    page.call("Runtime.evaluate", expression="1")
    assert any("Content Security Policy" in e for e in page.errors())
