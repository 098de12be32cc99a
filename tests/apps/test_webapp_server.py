"""``edgeformer app web``'s server over real HTTP: isolation headers, what it serves and refuses, its errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from edgeformer.errors import BackendUnavailableError, ConfigError, InvalidInputError
from edgeformer.webapp import ISOLATION_HEADERS, make_server


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), b""


@pytest.mark.parametrize("isolation", [True, False])
def test_every_response_carries_the_isolation_headers_unless_turned_off(isolation, digits_artifact, serve) -> None:
    url = serve([digits_artifact], isolation=isolation)
    for path in ("", "app.js", "ort/ort.min.mjs", "ort/ort-wasm-simd-threaded.wasm", "api/models.json"):
        status, headers, _ = _get(url + path)
        assert status == 200, path
        for k, v in ISOLATION_HEADERS.items():
            assert headers.get(k) == (v if isolation else None), (path, k)
    assert _get(url + "ort/ort-wasm-simd-threaded.wasm")[1]["Content-Type"] == "application/wasm"


def test_the_listing_is_the_manifest_and_only_its_files_are_served(digits_artifact, kws_artifact, serve) -> None:
    import edgeformer

    url = serve([digits_artifact, kws_artifact])
    listing = json.loads(_get(url + "api/models.json")[2])
    assert listing["isolation"] is True
    digits, kws = listing["models"]
    manifest = edgeformer.Artifact.load(digits_artifact).manifest
    assert digits["preprocessing"] == manifest.preprocessing.to_dict()
    assert digits["labels"] == list(manifest.labels)
    assert kws["preprocessing"]["kind"] == "audio" and kws["preprocessing"]["frontend"] == "graph"
    status, _, body = _get(url + digits["url"].lstrip("/"))
    assert status == 200 and body == (digits_artifact / "model.onnx").read_bytes()
    assert digits["size_bytes"] == edgeformer.Artifact.load(digits_artifact).size_bytes()
    for refused in (
        "models/0/artifact.json",  # not a model file
        "models/2/model.onnx",  # no such model
        "models/0/../../etc/passwd",
        "node_modules/onnxruntime-web/package.json",  # only dist/, under /ort/
        "ort/../package.json",
        "nothing-here.js",
    ):
        assert _get(url + refused)[0] == 404, refused


def _edited_copy(artifact, dest, edit):
    """A copy of ``artifact`` whose manifest ``edit`` changed (artifact.json is not among the hashed files)."""
    shutil.copytree(artifact, dest)
    manifest = json.loads((dest / "artifact.json").read_text())
    edit(manifest)
    (dest / "artifact.json").write_text(json.dumps(manifest))
    return dest


def test_artifacts_the_page_cannot_run_are_refused(digits_artifact, kws_artifact, tmp_path, web_root) -> None:
    with pytest.raises(ConfigError, match="pass at least one artifact"):
        make_server([], port=0, web_root=web_root)
    ir = _edited_copy(digits_artifact, tmp_path / "ir", lambda m: m.update(format="openvino"))
    with pytest.raises(ConfigError, match="onnxruntime-web runs onnx or ort models"):
        make_server([ir], port=0, web_root=web_root)
    host = _edited_copy(kws_artifact, tmp_path / "host", lambda m: m["preprocessing"].update(frontend="host"))
    with pytest.raises(ConfigError, match="front-end runs on the host"):
        make_server([host], port=0, web_root=web_root)
    bare = tmp_path / "bare"
    bare.mkdir()
    import onnx

    model = onnx.load(digits_artifact / "model.onnx")
    del model.metadata_props[:]  # an ONNX from outside edgeformer: no manifest, no preprocessing
    onnx.save(model, bare / "model.onnx")
    with pytest.raises(InvalidInputError, match="records no preprocessing"):
        make_server([bare / "model.onnx"], port=0, web_root=web_root)


def test_a_checkout_without_onnxruntime_web_is_exit_5_naming_npm_ci(digits_artifact, tmp_path) -> None:
    root = tmp_path / "web"
    root.mkdir()
    (root / "index.html").write_text("<!doctype html>")
    with pytest.raises(BackendUnavailableError, match=r"npm ci --prefix .*web"):
        make_server([digits_artifact], port=0, web_root=root)
    with pytest.raises(BackendUnavailableError, match=r"no index\.html"):
        make_server([digits_artifact], port=0, web_root=tmp_path / "elsewhere")
    done = subprocess.run(
        [sys.executable, "-m", "edgeformer.cli.app", "app", "web", str(digits_artifact), "--web-root", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 5
    assert done.stderr.startswith("error (BackendUnavailableError): onnxruntime-web is not installed")


def test_a_taken_port_is_a_usage_error(digits_artifact, web_root) -> None:
    first = make_server([digits_artifact], port=0, web_root=web_root)
    try:
        with pytest.raises(ConfigError, match="pass another --port, or 0"):
            make_server([digits_artifact], port=first.server_address[1], web_root=web_root)
    finally:
        first.server_close()


def test_the_command_serves_until_interrupted(digits_artifact, web_root) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgeformer.cli.app",
            "app",
            "web",
            str(digits_artifact),
            "--port",
            "0",
            "--web-root",
            str(web_root),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # pytest-xdist workers ignore SIGINT and a child inherits that, so Python would never raise
        # KeyboardInterrupt in it: give the server the default Ctrl-C a user's shell gives it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        assert "serving digits_shvit (threads available)" in proc.stdout.readline()
        status, headers, body = _get(url)
        assert status == 200 and b"edgeformer" in body
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in out
