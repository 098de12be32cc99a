"""Fixtures of the demo apps' tests: the trained reference models exported once, the web app's server on a free
port, and Debian's Chromium driven by Playwright (``executable_path``: Playwright's own browser download is not
reachable, and not needed).

Screenshots of the demos go to ``$EDGEFORMER_SCREENSHOTS`` when set (the README's images were written with
``EDGEFORMER_SCREENSHOTS=apps/web/screenshots``), else to a temporary folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
APPS = REPO / "apps"
WEB_ROOT = APPS / "web"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def load_app(relpath: str) -> ModuleType:
    """Import ``apps/<relpath>`` (a script, not a package) as a module."""
    path = APPS / relpath
    name = "edgeformer_app_" + path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock shared by the xdist workers (one exports or installs, the others wait and reuse)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory) -> Path:
    """A folder all xdist workers of this run share."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    return root / "apps-shared"


def _export_once(shared_dir: Path, name: str) -> Path:
    out = shared_dir / name
    with locked(shared_dir / f"{name}.lock"):
        if not (out / "artifact.json").is_file():
            import edgeformer

            edgeformer.export(name, out=out)
    return out


@pytest.fixture(scope="session")
def digits_artifact(shared_dir) -> Path:
    """The trained digits SHViT (99 % held-out top-1), exported once per run."""
    pytest.importorskip("torch", reason="exporting the reference model needs the export extra")
    return _export_once(shared_dir, "digits_shvit")


@pytest.fixture(scope="session")
def kws_artifact(shared_dir) -> Path:
    """The trained keyword model (waveform in, log-mel in the graph), exported once per run."""
    pytest.importorskip("torch", reason="exporting the reference model needs the export extra")
    return _export_once(shared_dir, "keywords_audioformer")


@pytest.fixture(scope="session")
def samples(shared_dir) -> Path:
    """``edgeformer samples``: held-out digit PNGs and keyword WAVs, true label first in each name."""
    from edgeformer.data.samples import write_samples

    out = shared_dir / "samples"
    with locked(shared_dir / "samples.lock"):
        if not (out / "samples.json").is_file():
            write_samples(out, per_class=1)
    return out


@pytest.fixture(scope="session")
def web_root(shared_dir) -> Path:
    """apps/web with onnxruntime-web installed: ``npm ci`` (the lockfile's pinned version) if it is missing."""
    if not (WEB_ROOT / "node_modules" / "onnxruntime-web" / "dist" / "ort.min.mjs").is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed (apt-get install npm), so apps/web cannot get onnxruntime-web")
        with locked(shared_dir / "npm.lock"):
            if not (WEB_ROOT / "node_modules" / "onnxruntime-web").is_dir():
                subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB_ROOT, check=True, capture_output=True)
    return WEB_ROOT


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium (CI installs it with apt-get); the tests skip only where no Chromium is installed."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"no Chromium on PATH (looked for {', '.join(CHROMIUM_NAMES)}): apt-get install chromium")


@pytest.fixture(scope="session")
def playwright_driver():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (test extra)")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture
def launch(playwright_driver, chromium_path):
    """``launch(*extra_args)``: a headless Chromium with the fake media devices, closed after the test."""
    browsers = []

    def _launch(*args: str):
        browser = playwright_driver.chromium.launch(
            executable_path=chromium_path,
            args=["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", *args],
        )
        browsers.append(browser)
        return browser

    yield _launch
    for b in browsers:
        b.close()


@pytest.fixture
def serve(web_root):
    """``serve(artifacts, isolation=True)``: the web app's real server on a free port; returns its URL."""
    from edgeformer.webapp import make_server

    servers = []

    def _serve(artifacts, isolation: bool = True) -> str:
        server = make_server(artifacts, port=0, isolation=isolation, web_root=web_root)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.url

    yield _serve
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    target = os.environ.get("EDGEFORMER_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_page(browser, url: str, timeout_ms: float = 60_000):
    """A page of the demo at ``url``, once it has loaded its model (``window.edgeformer.status``)."""
    page = browser.new_page(viewport={"width": 1000, "height": 760})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("window.edgeformer && window.edgeformer.status !== 'loading'", timeout=timeout_ms)
    status, error = page.evaluate("[window.edgeformer.status, window.edgeformer.error]")
    assert status == "ready", f"the page did not load its model: {error}; page errors: {errors}"
    return page


def feed_files(page, selector: str, files) -> list[dict]:
    """Pick ``files`` one by one with the page's file input ``selector``; the page's results, one per file."""
    for i, f in enumerate(files):
        page.set_input_files(selector, str(f))
        page.wait_for_function(f"window.edgeformer.results.length > {i}")
    return page.evaluate("window.edgeformer.results")
