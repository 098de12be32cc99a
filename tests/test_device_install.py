"""The device install: ``pip install -c constraints.txt .`` (no extras, no torch) runs the device side.

One fresh virtualenv per session gets the base install of this working tree; in it, ``load().predict``,
``Session.run``, ``edgeformer profile`` and ``--help`` run on the committed tiny artifact (made by
``tests/fixtures/make_tiny_artifact.py``), and an authoring command exits 5 naming the ``export`` extra.
Everything there runs in a child process of that venv's interpreter, from a folder outside the repository,
so nothing can fall back on this venv's torch or on the source tree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgeformer
from edgeformer.export.formats import EXPORT_EXTRA_MODULES

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "tiny_image_artifact"
EXPORT_EXTRA = tuple(sorted(EXPORT_EXTRA_MODULES))
INSTALL_TIMEOUT_S = 600


def _env() -> dict[str, str]:
    # no PYTHONPATH/venv leaking in from the test run; one thread, as the reference results below use
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return env | {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "1"}


class DeviceVenv:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "venv" / ("Scripts" if os.name == "nt" else "bin")
        self.python = self.bin / "python"

    def run(self, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args], cwd=self.root, env=_env(), capture_output=True, text=True, timeout=timeout
        )

    def edgeformer(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return self.run(self.bin / "edgeformer", *args)


def test_export_extra_modules_cover_the_export_extra():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    names = {re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower() for req in extras["export"]}
    assert names <= EXPORT_EXTRA_MODULES, "a package of the export extra would not turn into exit 5 when missing"


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> DeviceVenv:
    """A fresh venv with the base install of this working tree (not editable): about 8 s with wheels cached."""
    root = tmp_path_factory.mktemp("device install")  # a space: paths with spaces work end to end
    # build from a copy: pip builds in tree, and setuptools would write build/ and *.egg-info into the checkout
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "edgeformer", src / "edgeformer", ignore=shutil.ignore_patterns("__pycache__"))
    venv = DeviceVenv(root)
    # this venv's pip installs into the new one (`pip --python`): the same install, without ensurepip's ~3 s
    pip = (sys.executable, "-m", "pip", "--python", venv.python)
    steps = (
        (sys.executable, "-m", "venv", "--without-pip", root / "venv"),
        (*pip, "install", "-q", "--no-compile", "-c", REPO / "constraints.txt", src),
    )
    for step in steps:
        proc = venv.run(*step, timeout=INSTALL_TIMEOUT_S)
        assert proc.returncode == 0, f"{' '.join(map(str, step))} failed:\n{proc.stdout}\n{proc.stderr}"
    return venv


def test_base_install_has_no_authoring_packages(device):
    probe = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    proc = device.run(device.python, "-c", probe, *EXPORT_EXTRA)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"the base install pulled in part of the export extra: {proc.stdout}"
    proc = device.run(device.python, "-c", "import torch")
    assert proc.returncode != 0 and "No module named 'torch'" in proc.stderr


_PREDICT_AND_RUN = f"""
import json, sys
import numpy as np
import edgeformer

fixture, png, feeds, out = sys.argv[1:]
preds = edgeformer.load(fixture, threads=1).predict(png, top_k=3)
with edgeformer.Session(fixture, threads=1) as s:
    y = s.run({{"input": np.load(feeds)}})
np.save(out, y["logits"])
authoring = sorted(m for m in sys.modules if m.partition(".")[0] in {EXPORT_EXTRA!r})
predictions = [p.to_dict() for p in preds]
print(json.dumps({{"predictions": predictions, "module": edgeformer.__file__, "authoring": authoring}}))
"""


def test_predict_and_session_run_match_this_venv(device, tmp_path):
    png, feeds, out = tmp_path / "shapes.png", tmp_path / "feeds.npy", tmp_path / "logits.npy"
    # 24x20, not square: the recorded resize + center crop runs too
    hw = np.stack(np.meshgrid(np.linspace(0, 255, 24), np.linspace(0, 255, 20)), axis=-1)
    Image.fromarray(np.concatenate([hw, hw[..., :1]], axis=-1).astype(np.uint8)).save(png)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16), dtype=np.float32)
    np.save(feeds, x)

    proc = device.run(device.python, "-c", _PREDICT_AND_RUN, FIXTURE, png, feeds, out)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert Path(got["module"]).is_relative_to(device.root), got["module"]  # the installed copy, not the checkout
    assert got["authoring"] == []

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    ref = ort.InferenceSession(str(FIXTURE / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(np.load(out), ref.run(None, {"input": x})[0], rtol=0, atol=1e-6)

    want = edgeformer.load(FIXTURE, threads=1).predict(png, top_k=3)
    assert [p["label"] for p in got["predictions"]] == [p.label for p in want]
    assert {p.label for p in want} == {"circle", "square", "stripes"}  # the names recorded in the manifest
    np.testing.assert_allclose([p["score"] for p in got["predictions"]], [p.score for p in want], atol=1e-6)


def test_profile_cli_reports_latency_and_device(device):
    proc = device.edgeformer("profile", FIXTURE, "--json", "--threads", "1", "--warmup", "2", "--runs", "20")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["latency"]["p50_ms"] > 0
    assert result["latency"]["runs"] == 20
    assert result["device"]  # the device card


@pytest.mark.parametrize("args", [("--help",), ("predict", "--help"), ("profile", "--help")])
def test_help_runs_without_torch(device, args):
    proc = device.edgeformer(*args)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (("export", "efficientformer_l1", "-o", "out"), "edgeformer export"),
        (("models", "list"), "edgeformer models list"),
        (("bench", "efficientformer_l1", "--out", "out"), "edgeformer bench"),
        # quantize runs on onnxruntime, but its report plots with matplotlib: authoring, so the export extra
        (("quantize", str(FIXTURE), "--calib", "calib", "-o", "out"), "edgeformer quantize"),
    ],
)
def test_authoring_command_exits_5_naming_the_extra_and_writes_nothing(device, args, command):
    calib = device.root / "calib"
    calib.mkdir(exist_ok=True)
    for i in range(4):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(calib / f"{i}.png")
    proc = device.edgeformer(*args)
    assert proc.returncode == 5, proc.stderr
    assert f"`{command}` needs the 'export' extra" in proc.stderr
    assert "pip install 'edgeformer[export]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (device.root / "out").exists()


def test_python_export_raises_backend_unavailable_naming_the_extra(device):
    code = (
        "import edgeformer\n"
        "try:\n    edgeformer.export('efficientformer_l1', out='l1')\n"
        "except edgeformer.BackendUnavailableError as e:\n    print(e)\n"
    )
    proc = device.run(device.python, "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert "needs the 'export' extra" in proc.stdout and "pip install 'edgeformer[export]'" in proc.stdout


def test_doctor_answers_on_the_base_install(device):
    proc = device.edgeformer("doctor", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["packages"]["export"]["torch"] is None and report["packages"]["base"]["onnxruntime"]
    cells = {(c["format"], c["precision"]): c for c in report["matrix"]}
    onnx = cells[("onnx", "fp32")]
    assert onnx["run"] is None  # onnxruntime is all a device needs to run it
    assert "needs the 'export' extra" in onnx["make"] and onnx["fix"] == "pip install 'edgeformer[export]'"
    text = device.edgeformer("doctor")
    assert text.returncode == 0 and "what runs here" in text.stdout, text.stderr


def test_samples_without_scikit_learn_exit_5_and_keywords_need_nothing_more(device):
    proc = device.edgeformer("samples", "-o", "samples")
    assert proc.returncode == 5, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert "scikit-learn" in first and "edgeformer[apps]" in first and "--dataset keywords" in first
    assert not (device.root / "samples" / "digits").exists()
    proc = device.edgeformer("samples", "-o", "samples", "--dataset", "keywords", "--per-class", "1")
    assert proc.returncode == 0, proc.stderr
    assert len(list((device.root / "samples" / "keywords").glob("*.wav"))) == 12


def test_the_agent_serves_on_the_base_install_and_profiles_there(device, tmp_path):
    """``edgeformer agent serve`` from the torch-free venv; this venv's client profiles the fixture through it."""
    from edgeformer.agent import remote_profile
    from edgeformer.profiling import ProfileConfig

    token = "base-install-token-0123456789"
    log = tmp_path / "agent.log"
    env = _env() | {"EDGEFORMER_AGENT_TOKEN": token}
    with open(log, "wb") as out:
        agent = subprocess.Popen(
            [str(device.bin / "edgeformer"), "agent", "serve", "--port", "0", "--store", str(device.root / "store")],
            cwd=device.root,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        for _ in range(600):  # up to 60 s for the line that names the port
            found = re.findall(r"listening on (agent://\S+)", log.read_text(errors="replace"))
            if found or agent.poll() is not None:
                break
            time.sleep(0.1)
        assert found, log.read_text()
        result = remote_profile(found[0], FIXTURE, ProfileConfig(warmup=1, runs=5, threads=1), token=token)
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    assert result.latency.runs == 5
    assert "torch" not in result.device.libraries  # measured in the base install, where there is no torch
