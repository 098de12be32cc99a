"""A model that crashes or hangs the native runtime must not take the CLI down: `predict`, `profile` and
`compile` load and run a model once in a child process first (``runtimes.isolation``), and a crash or a hang
there is exit 3 naming the model.

The hang is real: a Loop of 2**62 iterations (``models.hanging_loop``) that onnxruntime 1.31 and OpenVINO 2026.4
load and then never finish. No ONNX file that crashes onnxruntime 1.31 was found (tried: sparse initializers with
out-of-range, negative, short and 2-D indices, values shorter than their indices, deeply nested If subgraphs;
each is refused with a message or runs), so the crash path is pinned with a real child killed by SIGSEGV.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from edgeformer.artifact import Artifact
from edgeformer.errors import ConfigError, ModelFileError
from edgeformer.runtimes.child import probe_timeout
from edgeformer.runtimes.isolation import probe_before_loading
from edgeformer.runtimes.ort import _run_probe

from .models import hanging_loop

LIMIT = {"EDGEFORMER_PROBE_TIMEOUT": "3"}


def _cli(*args, cwd=None):
    env = {**os.environ, **LIMIT, "OMP_NUM_THREADS": "1", "EDGEFORMER_NO_CACHE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "edgeformer.cli.app", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture
def hang(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(1, np.float32))
    return hanging_loop(tmp_path / "hang.onnx")


def _assert_hang_reported(proc, model, runtime):
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"error (ModelFileError): {model}: {runtime} did not finish"), proc.stderr
    assert "within 3 s" in first and "EDGEFORMER_PROBE_TIMEOUT" in first and "Traceback" not in proc.stderr


def test_predict_on_a_model_that_hangs_the_runtime_is_exit_3(hang):
    _assert_hang_reported(_cli("predict", str(hang), str(hang.parent / "x.npy")), hang, "onnxruntime")


def test_an_openvino_ir_that_hangs_the_runtime_is_a_model_file_error(hang, tmp_path):
    ov = pytest.importorskip("openvino")
    ov.save_model(ov.convert_model(str(hang)), str(tmp_path / "ir" / "model.xml"))
    bare = Artifact.load(hang)
    ir = Artifact(tmp_path / "ir", dataclasses.replace(bare.manifest, format="openvino", main_file="model.xml"))
    with pytest.raises(ModelFileError, match=r"model\.xml: OpenVINO did not finish .* within 3 s"):
        probe_before_loading(ir, "openvino", timeout=3)


def test_profile_on_a_model_that_hangs_the_runtime_is_exit_3(hang):
    _assert_hang_reported(_cli("profile", str(hang)), hang, "onnxruntime")


def test_compile_of_a_model_that_hangs_the_runtime_is_exit_3_and_writes_nothing(hang, tmp_path):
    out = tmp_path / "out"
    _assert_hang_reported(_cli("compile", str(hang), "--format", "ort", "-o", str(out)), hang, "onnxruntime")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["hang.onnx", "x.npy"]


def test_a_native_crash_in_the_probe_is_a_model_file_error_naming_the_model(tmp_path):
    # a real child killed by SIGSEGV, as a runtime is when a malformed model trips a native bug
    crash = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    with pytest.raises(ModelFileError, match=r"onnxruntime crashed loading .*evil\.onnx \(SIGSEGV\)"):
        _run_probe(tmp_path / "evil.onnx", crash, timeout=60)


def test_the_probe_child_dies_with_its_timeout_and_leaves_no_process(tmp_path):
    marker = tmp_path / "pid"
    hang_forever = f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    with pytest.raises(ModelFileError, match="did not finish"):
        _run_probe(tmp_path / "m.onnx", hang_forever, timeout=3)
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped: no such process


def test_a_refusal_is_left_to_the_caller_when_asked(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert _run_probe(bad, "import sys; sys.exit('refused')", timeout=60, refusal_ok=True) == {}
    with pytest.raises(ModelFileError, match="refused the model"):
        _run_probe(bad, "import sys; sys.exit('refused')", timeout=60)


@pytest.mark.parametrize("raw", ["0", "-1", "soon", "inf"])
def test_a_bad_probe_timeout_is_a_usage_error(monkeypatch, raw):
    monkeypatch.setenv("EDGEFORMER_PROBE_TIMEOUT", raw)
    with pytest.raises(ConfigError, match="EDGEFORMER_PROBE_TIMEOUT"):
        probe_timeout()
