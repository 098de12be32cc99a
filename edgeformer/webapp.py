"""The server of the browser demo (``apps/web``): static page, onnxruntime-web, artifacts, isolation headers.

``edgeformer app web ARTIFACT...`` calls :func:`make_server` and serves until Ctrl-C. Torch-free and stdlib-only
(``http.server``): what a phone or laptop needs to try an artifact in its browser.

What it serves, on 127.0.0.1 only:

- ``/`` and the page's files from the web root (a checkout's ``apps/web``, or ``--web-root`` /
  ``$EDGEFORMER_WEB_ROOT``);
- ``/ort/<file>``: onnxruntime-web's ``dist`` folder as ``npm ci`` installed it in the web root (no CDN);
- ``/api/models.json``: per artifact its name, format, precision, size, preprocessing and labels, straight from
  the manifest, which the page's JavaScript reads to preprocess (nothing is copied by hand);
- ``/models/<i>/<file>``: the files listed in artifact ``i``'s manifest, and nothing else.

Multi-threaded WebAssembly needs ``SharedArrayBuffer``, which browsers grant only to cross-origin isolated
pages: every response carries ``Cross-Origin-Opener-Policy: same-origin`` and
``Cross-Origin-Embedder-Policy: require-corp`` unless ``isolation=False`` (then onnxruntime-web runs one thread
and the page says why).

Example::

    server = make_server(["build/digits"], port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.url)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .artifact import Artifact
from .errors import BackendUnavailableError, ConfigError, InvalidInputError
from .inputs import AudioInput, ImageInput
from .manifest import MANIFEST_NAME

log = logging.getLogger(__name__)

WEB_ROOT_ENV = "EDGEFORMER_WEB_ROOT"
ORT_DIST = Path("node_modules", "onnxruntime-web", "dist")
# the formats onnxruntime-web opens: an ONNX graph, or ORT's flatbuffer form of one
WEB_FORMATS = ("onnx", "ort")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
    ".ort": "application/octet-stream",
    ".data": "application/octet-stream",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".map": "application/json",
}
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}


@dataclass(frozen=True)
class WebModel:
    """One artifact as the page sees it: what ``/api/models.json`` lists, and the files it may fetch."""

    name: str
    artifact: Artifact
    files: tuple[str, ...]  # manifest-listed files the page may fetch (main file first)

    def to_json(self, index: int) -> dict[str, Any]:
        m = self.artifact.manifest
        return {
            "id": index,
            "name": self.name,
            "model_name": m.model_name,
            "format": m.format,
            "precision": m.precision,
            "task": m.task,
            "size_bytes": self.artifact.size_bytes(),
            "url": f"/models/{index}/{self.files[0]}",
            "external_data": [{"path": f, "url": f"/models/{index}/{f}"} for f in self.files[1:]],
            "input": m.inputs[0].to_dict() if m.inputs else None,
            "output": m.outputs[0].to_dict() if m.outputs else None,
            "preprocessing": m.preprocessing.to_dict() if m.preprocessing is not None else None,
            "labels": list(m.labels) if m.labels is not None else None,
        }


def find_web_root(web_root: str | Path | None = None) -> Path:
    """The folder holding the page (``index.html``) and onnxruntime-web (``node_modules``), checked.

    Looked up in order: ``web_root``, ``$EDGEFORMER_WEB_ROOT``, the ``apps/web`` of the checkout this package
    runs from (an editable install or a clone on ``PYTHONPATH``).

    Raises:
        BackendUnavailableError: no page there, or onnxruntime-web not installed in it (names the command).
    """
    candidates = [Path(web_root)] if web_root else []
    if not candidates and os.environ.get(WEB_ROOT_ENV):
        candidates = [Path(os.environ[WEB_ROOT_ENV])]
    if not candidates:
        candidates = [Path(__file__).resolve().parents[1] / "apps" / "web"]
    root = candidates[0]
    if not (root / "index.html").is_file():
        raise BackendUnavailableError(
            f"the web app's page is not at {root} (no index.html); it ships in the edgeformer repository's "
            f"apps/web: pass --web-root PATH/TO/apps/web (or set {WEB_ROOT_ENV})."
        )
    if not (root / ORT_DIST / "ort.min.mjs").is_file():
        raise BackendUnavailableError(
            f"onnxruntime-web is not installed in {root}: run `npm ci --prefix {root}` (pinned in its "
            "package-lock.json), then start the app again."
        )
    return root


def web_models(paths: Sequence[str | Path]) -> list[WebModel]:
    """Load and check the artifacts the page will run.

    Raises:
        ConfigError: no artifact, a format onnxruntime-web cannot open, or an audio model whose log-mel
            front-end is not in the graph.
        InvalidInputError: an artifact without recorded preprocessing or labels, or not single-input.
        ModelFileError: a missing or corrupt artifact (from :meth:`Artifact.load`).
    """
    if not paths:
        raise ConfigError("pass at least one artifact, e.g. `edgeformer app web digits`.")
    models = []
    for p in paths:
        art = Artifact.load(p)
        m = art.manifest
        if m.format not in WEB_FORMATS:
            raise ConfigError(
                f"{p}: a {m.format} artifact; onnxruntime-web runs {' or '.join(WEB_FORMATS)} models: pass the ONNX "
                "artifact it was compiled from."
            )
        if not isinstance(m.preprocessing, ImageInput | AudioInput) or m.labels is None:
            raise InvalidInputError(
                f"{p}: records no preprocessing or labels (a bare ONNX from outside edgeformer); the page "
                "preprocesses from the manifest: export the model with `edgeformer export`."
            )
        if len(m.inputs) != 1:
            raise InvalidInputError(f"{p}: the page feeds single-input models; this one has {len(m.inputs)} inputs.")
        if isinstance(m.preprocessing, AudioInput) and m.preprocessing.frontend != "graph":
            raise ConfigError(
                f"{p}: its log-mel front-end runs on the host; the page feeds the waveform, so export it with the "
                "front-end inside the graph (frontend='graph')."
            )
        extra = sorted(f for f in m.files if f not in (m.main_file, MANIFEST_NAME))
        name = art.path.name if Path(p).is_dir() else art.model_path.name
        models.append(WebModel(name=name, artifact=art, files=(m.main_file, *extra)))
    return models


class WebAppServer(ThreadingHTTPServer):
    """The demo's HTTP server; ``url`` is where to point a browser."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], *, root: Path, models: list[WebModel], isolation: bool) -> None:
        self.root, self.models, self.isolation = root, models, isolation
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


def make_server(
    artifacts: Sequence[str | Path],
    *,
    port: int = 8000,
    isolation: bool = True,
    web_root: str | Path | None = None,
) -> WebAppServer:
    """A server (not yet serving) for ``artifacts`` on ``127.0.0.1:port`` (``port=0``: a free one).

    Raises:
        ConfigError: the port is taken, or an artifact the page cannot run (see :func:`web_models`).
        BackendUnavailableError: the page or onnxruntime-web is missing (see :func:`find_web_root`).
    """
    models = web_models(artifacts)
    root = find_web_root(web_root)
    try:
        return WebAppServer(("127.0.0.1", port), root=root, models=models, isolation=isolation)
    except OSError as e:
        raise ConfigError(f"cannot listen on 127.0.0.1:{port} ({e.strerror}); pass another --port, or 0.") from e


class _Handler(SimpleHTTPRequestHandler):
    server: WebAppServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def end_headers(self) -> None:
        if self.server.isolation:
            for k, v in ISOLATION_HEADERS.items():
                self.send_header(k, v)
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, *, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        if path == "/api/models.json":
            payload = {
                "isolation": self.server.isolation,
                "models": [m.to_json(i) for i, m in enumerate(self.server.models)],
            }
            return self._send(json.dumps(payload).encode(), "application/json", body)
        file = self._resolve(path)
        if file is None:
            return self.send_error(HTTPStatus.NOT_FOUND, "not found")
        ctype = _TYPES.get(file.suffix, "application/octet-stream")
        return self._send(file.read_bytes(), ctype, body)

    def _resolve(self, path: str) -> Path | None:
        """The file for a URL path, or ``None``: only manifest-listed model files, ORT's dist and the page."""
        parts = [p for p in path.split("/") if p]
        if any(p in (".", "..") or "\\" in p for p in parts):
            return None
        if len(parts) >= 3 and parts[0] == "models" and parts[1].isdigit():
            i, rel = int(parts[1]), "/".join(parts[2:])
            if i >= len(self.server.models) or rel not in self.server.models[i].files:
                return None
            file = self.server.models[i].artifact.path / rel
        elif len(parts) == 2 and parts[0] == "ort":
            file = self.server.root / ORT_DIST / parts[1]
        elif parts and parts[0] in ("node_modules", "api", "models"):
            return None
        else:
            file = self.server.root.joinpath(*parts) if parts else self.server.root / "index.html"
        return file if file.is_file() else None

    def _send(self, data: bytes, ctype: str, body: bool) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)
