"""Every report page in real headless Chromium over the DevTools protocol.

Each page must load with no console error, no uncaught exception and no failed resource;
a full-page screenshot of each is kept under ``test-artifacts/screenshots/``. The sorting
script and the no-JavaScript differences-only toggle are exercised in the browser too.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from reporting.build import write_report
from tests.unit.reporting.mlflow_runs import EXPERIMENT, populate_sweep
from tests.unit.reporting.vertex import as_vertex_stores_them
from trainer.contract import VIEW_COMBINED, VIEWS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--window-size=1400,1000",
]


def _chromium() -> str:
    found = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if found:
        return found
    if os.environ.get("CI") or os.environ.get("REQUIRE_BROWSER"):
        pytest.fail("Chromium is required (CI/REQUIRE_BROWSER set) but not installed")
    pytest.skip("Chromium not installed (apt-get install chromium); set REQUIRE_BROWSER to fail")


class CDP:
    """A minimal DevTools-protocol client over one page target's websocket."""

    def __init__(self, ws_url: str):
        import websocket  # websocket-client, an MLflow dependency

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        """Send a command and wait for its reply, keeping the events seen meanwhile."""
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, event: str, timeout: float = 30) -> dict:
        """Wait for an event (or return it if it already came)."""
        for e in self.events:
            if e["method"] == event:
                self.events.remove(e)
                return e
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == event:
                return msg
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(event)

    def evaluate(self, expression: str):
        """Evaluate JavaScript in the page and return its value."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors/warnings, uncaught exceptions and browser log errors seen so far."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails']}")
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in (
                "error",
                "warning",
                "assert",
            ):
                out.append(f"console.{p['type']}: {p.get('args')}")
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(
                    f"log {p['entry']['level']}: {p['entry'].get('text')} {p['entry'].get('url', '')}"
                )
        return out

    def close(self) -> None:
        """Close the websocket."""
        self.ws.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The standard sweep's report (with hostile names), rendered once."""
    work = tmp_path_factory.mktemp("browser")
    sweep = populate_sweep(f"sqlite:///{work}/mlflow.db")
    return write_report(
        f"sqlite:///{work}/mlflow.db",
        EXPERIMENT,
        str(work / "report"),
        ui_url="http://127.0.0.1:9/mlflow",
        highlight_run_id=sweep.ids["ids-large"],
    )


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium with a fresh profile; yields a function opening a CDP page session."""
    binary = _chromium()
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    proc = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Chromium did not start (exit {proc.poll()})")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])

        def open_page() -> CDP:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT"
            )
            with urllib.request.urlopen(req, timeout=10) as resp:
                target = json.load(resp)
            cdp = CDP(target["webSocketDebuggerUrl"])
            for domain in ("Page", "Runtime", "Log"):
                cdp.send(f"{domain}.enable")
            return cdp

        yield open_page
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _load(cdp: CDP, path: str) -> None:
    cdp.send("Page.navigate", url=Path(path).as_uri())
    cdp.wait_for("Page.loadEventFired")


def _viewport(cdp: CDP, width: int, height: int = 1000) -> None:
    cdp.send(
        "Emulation.setDeviceMetricsOverride",
        width=width,
        height=height,
        deviceScaleFactor=1,
        mobile=False,
    )


def _screenshot(cdp: CDP, name: str, width: int = 1400) -> Path:
    # A short viewport first, so the page's own height decides the picture's.
    _viewport(cdp, width, 300)
    metrics = cdp.send("Page.getLayoutMetrics")
    height = min(int(metrics["cssContentSize"]["height"]) + 1, 16000)
    cdp.send(
        "Emulation.setDeviceMetricsOverride",
        width=width,
        height=height,
        deviceScaleFactor=1,
        mobile=False,
    )
    shot = cdp.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"report_{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


@pytest.mark.parametrize("view", [VIEW_COMBINED, *VIEWS])
def test_page_loads_without_console_errors(browser, report, view):
    cdp = browser()
    try:
        _load(cdp, report.pages[view])
        assert cdp.evaluate("document.title").startswith(report.display_names[view])
        # Charts are inline SVG with real size; hostile names are text, not elements.
        assert cdp.evaluate("document.querySelectorAll('script').length") == 1
        assert cdp.evaluate("typeof window.alert") == "function"
        if view != "heatmap":
            assert cdp.evaluate(
                "Array.from(document.querySelectorAll('svg.chart'))"
                ".every(s => s.getBoundingClientRect().width > 200)"
            )
        time.sleep(0.2)  # let late console messages arrive
        cdp.send("Runtime.evaluate", expression="1")
        assert cdp.problems() == []
        shot = _screenshot(cdp, view)
        assert shot.stat().st_size > 10_000
    finally:
        cdp.close()


def test_sorting_and_diff_toggle_work_in_the_browser(browser, report):
    cdp = browser()
    try:
        _load(cdp, report.pages["leaderboard"])
        first = "document.querySelector('#leaderboard-table tbody tr td.name').textContent.trim()"
        assert cdp.evaluate(first) == "hist-small"
        # Click the test recall@100 header twice: ascending puts the weakest run first.
        click = (
            "Array.from(document.querySelectorAll('#leaderboard-table th'))"
            ".find(th => th.textContent.startsWith('Test R@100')).click()"
        )
        cdp.evaluate(click)
        assert cdp.evaluate(first).startswith("<script>alert")
        cdp.evaluate(click)
        assert cdp.evaluate(first) == "hist-small"

        _load(cdp, report.pages["comparison"])
        visible = (
            "Array.from(document.querySelectorAll('#compare-params tbody tr'))"
            ".filter(r => getComputedStyle(r).display !== 'none').length"
        )
        total = cdp.evaluate(visible)
        cdp.evaluate("document.getElementById('compare-diff-only').click()")
        assert 0 < cdp.evaluate(visible) < total
        assert cdp.problems() == []
    finally:
        cdp.close()


def test_pages_read_without_javascript(browser, report):
    cdp = browser()
    try:
        cdp.send("Emulation.setScriptExecutionDisabled", value=True)
        _load(cdp, report.pages[VIEW_COMBINED])
        cdp.send("Emulation.setScriptExecutionDisabled", value=False)
        rows = cdp.evaluate("document.querySelectorAll('#leaderboard-table tbody tr').length")
        assert rows == 8
        assert cdp.evaluate("document.querySelectorAll('svg.chart').length") >= 6
        # The differences-only toggle is CSS: it works with scripts off as well.
        cdp.send("Emulation.setScriptExecutionDisabled", value=True)
        _load(cdp, report.pages["comparison"])
        box = cdp.send(
            "Runtime.evaluate",
            expression="document.querySelector('label[for=compare-diff-only]').scrollIntoView();"
            "JSON.stringify(document.querySelector('label[for=compare-diff-only]')"
            ".getBoundingClientRect())",
            returnByValue=True,
        )
        rect = json.loads(box["result"]["value"])
        for kind in ("mousePressed", "mouseReleased"):
            cdp.send(
                "Input.dispatchMouseEvent",
                type=kind,
                x=rect["x"] + 5,
                y=rect["y"] + rect["height"] / 2,
                button="left",
                clickCount=1,
            )
        hidden = cdp.send(
            "Runtime.evaluate",
            expression="Array.from(document.querySelectorAll('#compare-params tr.same'))"
            ".every(r => getComputedStyle(r).display === 'none')",
            returnByValue=True,
        )
        assert hidden["result"]["value"] is True
    finally:
        cdp.close()


def test_the_console_check_catches_errors(browser, tmp_path):
    canary = tmp_path / "canary.html"
    canary.write_text(
        "<!DOCTYPE html><title>c</title><script>console.error('boom'); undefinedFn();</script>"
    )
    cdp = browser()
    try:
        _load(cdp, str(canary))
        cdp.send("Runtime.evaluate", expression="1")
        problems = cdp.problems()
        assert any("console.error" in p for p in problems)
        assert any("exception" in p for p in problems)
    finally:
        cdp.close()


@contextlib.contextmanager
def _served_as_html(root: Path):
    """Serve ``root`` on 127.0.0.1 with every file as text/html, as the console shows an HTML
    artifact (a browser would take an extension-less local file for plain text)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def guess_type(self, path):
            return "text/html; charset=utf-8"

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_views_stand_alone_as_vertex_stores_them(browser, report, tmp_path):
    """Each output as an extension-less file in its own folder: it renders, links stay in it."""
    stored = as_vertex_stores_them(report.pages, tmp_path)
    cdp = browser()
    try:
        with _served_as_html(tmp_path) as base:
            _check_standalone(cdp, base, tmp_path, stored)
    finally:
        cdp.close()


def _check_standalone(cdp: CDP, base: str, root: Path, stored: dict[str, Path]) -> None:
    """Open each stored view; its links must be its own anchors or MLflow UI links."""
    for view, path in stored.items():
        assert path.suffix == ""
        url = f"{base}/{path.relative_to(root).as_posix()}"
        cdp.send("Page.navigate", url=url)
        cdp.wait_for("Page.loadEventFired")
        assert cdp.evaluate("document.contentType") == "text/html", view
        assert cdp.evaluate("document.querySelectorAll('section.view').length") >= 1, view
        # Every link is an anchor of this very page or an MLflow UI link.
        links = cdp.evaluate("Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
        here = url
        for link in links:
            assert link.startswith(here + "#") or link.startswith("http://127.0.0.1:9/"), (
                view,
                link,
            )
        for anchor in cdp.evaluate(
            "Array.from(document.querySelectorAll('a[href^=\"#\"]')).map(a => a.hash)"
        ):
            cdp.evaluate(f"document.querySelector('a[href=\"{anchor}\"]').click()")
            assert cdp.evaluate("location.href") == here + anchor, view
            assert cdp.evaluate(f"!!document.getElementById('{anchor[1:]}')"), view
    time.sleep(0.2)
    cdp.send("Runtime.evaluate", expression="1")
    # The browser asks the server for /favicon.ico by itself; the pages ask for nothing.
    assert [p for p in cdp.problems() if "/favicon.ico" not in p] == []


@pytest.mark.parametrize("width", [1280, 1920, 800])
def test_wide_tables_scroll_inside_their_card_with_the_run_column_in_view(browser, report, width):
    cdp = browser()
    try:
        for view in ("leaderboard", "dashboard", "heatmap", "comparison"):
            _load(cdp, report.pages[view])
            _viewport(cdp, width)
            # The page itself never scrolls sideways: wide tables scroll inside their card.
            assert cdp.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), (
                view,
                width,
            )
            if width in (1280, 1920):
                _screenshot(cdp, f"{view}_{width}", width)
        _load(cdp, report.pages["leaderboard"])
        _viewport(cdp, width)
        state = cdp.evaluate(
            """(() => {
              const wrap = document.querySelector('#leaderboard-table').closest('.table-wrap');
              const scrolls = wrap.scrollWidth > wrap.clientWidth;
              wrap.scrollLeft = wrap.scrollWidth;
              const cell = document.querySelector('#leaderboard-table tbody td.name');
              const w = wrap.getBoundingClientRect(), c = cell.getBoundingClientRect();
              return {scrolls, left: c.left - w.left, right: w.right - c.right,
                      scrolled: wrap.scrollLeft};
            })()"""
        )
        if width == 800:
            assert state["scrolls"] and state["scrolled"] > 0
        # Scrolled to the far right, the run column is still inside the card, near its left.
        assert 0 <= state["left"] < 80 and state["right"] > 0, state
    finally:
        cdp.close()


def _demo_shaped_store(uri: str) -> str:
    """The demo's grid (2 feature x 2 model configs), two sweeps of it, one failed trial.

    Values follow the figures once measured on Online Retail (bench/RESULTS.md): own-history
    0.304, most-popular 0.162 at recall@100; an ID-only model ~0.22, history + log-q ~0.30.
    """
    from mlflow.tracking import MlflowClient

    from tests.unit.reporting.mlflow_runs import log_run
    from trainer import contract

    client = MlflowClient(uri)
    eid = client.create_experiment("online-retail-two-tower")
    base = 1_764_000_000_000
    quality = {("ids", "adagrad64"): 0.22, ("ids", "logq"): 0.25,
               ("history", "adagrad64"): 0.27, ("history", "logq"): 0.31}  # fmt: skip
    bl = {
        contract.BASELINE_POPULAR: {10: 0.046, 50: 0.11, 100: 0.162},
        contract.BASELINE_OWN_HISTORY: {10: 0.17, 50: 0.26, 100: 0.304},
    }
    i = 0
    for job, wobble in (("sweep-20261126-1510", -0.006), ("sweep-20261127-0905", 0.004)):
        for (fc, mc), q in quality.items():
            i += 1
            q = round(q + wobble + 0.002 * (i % 3), 4)
            if job.endswith("0905") and (fc, mc) == ("ids", "logq"):
                log_run(client, eid, f"{fc}-{mc}-s{i}", fc=fc, mc=mc,
                        status=contract.STATUS_FAILED, start_time=base + i * 600_000,
                        tags={contract.TAG_PIPELINE_JOB: job,
                              contract.TAG_FAILURE_REASON: "non-finite loss (nan) at epoch 4"},
                        history={contract.METRIC_LOSS: [9.1, 8.7, 8.9]})  # fmt: skip
                continue
            epochs = 8
            hist = {
                contract.METRIC_LOSS: [round(9.2 - 1.6 * q * e, 3) for e in range(epochs)],
                contract.METRIC_VAL_LOSS: [round(11.4 - 1.1 * q * e, 3) for e in range(epochs)],
                **{
                    contract.val_recall_key(k): [
                        round(q * (k / 100) ** 0.45 * (1 - 0.6 ** (e + 1)), 4)
                        for e in range(epochs)
                    ]
                    for k in contract.RECALL_KS
                },
            }
            log_run(client, eid, f"{fc}-{mc}-s{i}", fc=fc, mc=mc,
                    test_recall={k: round(q * (k / 100) ** 0.45, 4) for k in contract.RECALL_KS},
                    baselines=bl, history=hist, start_time=base + i * 600_000,
                    params={contract.PARAM_SEED: str(42 + i % 2),
                            contract.PARAM_EMBEDDING_DIM: "128" if mc == "logq" else "64"},
                    tags={contract.TAG_PIPELINE_JOB: job})  # fmt: skip
    return "online-retail-two-tower"


def test_readme_screenshots(browser, tmp_path):
    """Dashboard and heatmap of a demo-shaped experiment at 1280 px, for the README.

    Written under test-artifacts/screenshots/; with UPDATE_SCREENSHOTS=1 also to docs/.
    """
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment = _demo_shaped_store(uri)
    result = write_report(
        uri, experiment, str(tmp_path / "report"), highlight_pipeline_job="sweep-20261127-0905"
    )
    cdp = browser()
    try:
        for view in ("dashboard", "heatmap"):
            _load(cdp, result.pages[view])
            shot = _screenshot(cdp, f"readme_{view}", 1280)
            assert 10_000 < shot.stat().st_size < 300_000, shot
            if os.environ.get("UPDATE_SCREENSHOTS"):
                docs = REPO / "docs"
                docs.mkdir(exist_ok=True)
                shutil.copyfile(shot, docs / f"report_{view}.png")
        assert cdp.problems() == []
    finally:
        cdp.close()
