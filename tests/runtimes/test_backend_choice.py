"""The artifact picks its backend: without one, Session/load/profile open an artifact on the backend its format
implies (an OpenVINO IR on OpenVINO, run here for real); asking for one that cannot open it stays an error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgeformer
from edgeformer.errors import ConfigError
from edgeformer.profiling import ProfileConfig
from edgeformer.runtimes import FORMAT_BACKENDS, Session, backends, load, open_session
from edgeformer.runtimes.base import SessionOptions

pytest.importorskip("openvino")

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_image_artifact"


@pytest.fixture(scope="module")
def ir(tmp_path_factory) -> Path:
    """A real OpenVINO IR artifact compiled from the committed tiny ONNX artifact (about a second)."""
    out = tmp_path_factory.mktemp("ir") / "tiny-openvino"
    art = edgeformer.compile(FIXTURE, target="openvino", out=out)
    assert art.manifest.format == "openvino"
    return out


def _x(batch: int = 2) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, 3, 16, 16)).astype(np.float32)


def test_an_openvino_ir_opens_on_openvino_without_a_backend(ir):
    with Session(ir, threads=1) as s, Session(FIXTURE, threads=1) as ref:
        assert (s.backend, s.provider) == ("openvino", "CPU")
        assert ref.backend == "ort"
        got, want = s.run({"input": _x()})["logits"], ref.run({"input": _x()})["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_load_predicts_on_the_backend_the_format_implies(ir, tmp_path):
    png = tmp_path / "stripes.png"
    Image.fromarray(np.tile(np.array([0, 255] * 8, np.uint8)[None, :, None], (16, 1, 3))).save(png)
    on_ir, on_onnx = load(ir, threads=1), load(FIXTURE, threads=1)
    assert on_ir.session.backend == "openvino" and on_onnx.session.backend == "ort"
    got, want = on_ir.predict(png, top_k=3), on_onnx.predict(png, top_k=3)
    assert [p.label for p in got] == [p.label for p in want]
    np.testing.assert_allclose([p.score for p in got], [p.score for p in want], atol=1e-4)


@pytest.mark.parametrize("auto", [None, "auto"])
def test_profile_and_open_session_follow_the_artifact(ir, auto):
    result = edgeformer.profile(ir, ProfileConfig(warmup=1, runs=3, threads=1), backend=auto)
    assert result.device.backend == "openvino" and result.latency.runs == 3
    session = open_session(edgeformer.Artifact.load(ir), backend=auto, options=SessionOptions(threads=1))
    try:
        assert session.provider == "CPU"
    finally:
        session.close()


def test_a_backend_asked_for_that_cannot_open_the_format_stays_an_error(ir):
    with pytest.raises(ConfigError, match="use backend='openvino', or leave backend unset"):
        Session(ir, backend="ort")
    with pytest.raises(ConfigError, match="use backend='ort'"):
        load(FIXTURE, backend="openvino")


def test_every_format_maps_to_a_backend_that_opens_it():
    for fmt, name in FORMAT_BACKENDS.items():
        assert fmt in backends.get(name).formats, (fmt, name)


def test_predict_cli_runs_an_ir_on_openvino_by_default(ir):
    x = _x(1)[0]
    npy = ir.parent / "x.npy"
    np.save(npy, x)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "edgeformer.cli.app", "predict", str(ir), str(npy), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    top = json.loads(proc.stdout)[str(npy)][0]
    with Session(FIXTURE) as ref:
        assert top["index"] == int(ref.run({"input": x[None]})["logits"].argmax())
    assert "random-init" not in proc.stderr  # an ONNX from elsewhere has no zoo lineage: nothing to warn about
    plain = subprocess.run(
        [sys.executable, "-m", "edgeformer.cli.app", "predict", str(ir), str(npy)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert plain.returncode == 0 and "on openvino" in plain.stdout, plain.stdout + plain.stderr
