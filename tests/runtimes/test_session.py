"""Session: real onnxruntime, feeds checked before the native runtime, no silent provider fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeformer.errors import (
    BackendUnavailableError,
    ConfigError,
    DynamicShapeError,
    InputMismatchError,
    InvalidInputError,
    ModelFileError,
)
from edgeformer.runtimes import Session, backends, get_backend, register_backend
from edgeformer.runtimes.base import SessionOptions, TensorInfo
from edgeformer.runtimes.feeds import check_feeds, concrete_shape
from edgeformer.runtimes.ort import _run_probe, probe_in_subprocess

from .tiny_models import color_model, color_reference, make_model, two_input_model, write_artifact

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_input(tmp_path):
    return write_artifact(tmp_path / "two", two_input_model())


def _x(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def test_run_matches_numpy_reference(color_artifact):
    x = _x(2, 3, 32, 32)
    with Session(color_artifact, threads=1) as s:
        out = s.run({"pixels": x})
    assert list(out) == ["logits"]
    np.testing.assert_allclose(out["logits"], color_reference(x), rtol=1e-5, atol=1e-5)


def test_session_reports_inputs_outputs_and_running_provider(color_artifact):
    with Session(color_artifact.path) as s:  # a folder path loads (and verifies) the artifact
        assert s.inputs == [TensorInfo(name="pixels", shape=("batch", 3, 32, 32), dtype="float32")]
        assert s.outputs == [TensorInfo(name="logits", shape=("batch", 5), dtype="float32")]
        assert s.provider == "CPUExecutionProvider"
        assert s.artifact.manifest.model_name == "tiny"


def test_non_contiguous_feed_runs(color_artifact):
    x = _x(1, 32, 32, 3).transpose(0, 3, 1, 2)  # an NCHW view of NHWC memory
    assert not x.flags.c_contiguous
    with Session(color_artifact) as s:
        np.testing.assert_allclose(s.run({"pixels": x})["logits"], color_reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("feeds", "expected"),
    [
        ({"pixel": _x(1, 3, 32, 32)}, ["pixel", "unknown input; did you mean 'pixels'?", "pixels", "missing"]),
        ({"pixels": _x(3, 32, 32)}, ["(3, 32, 32) float32", "rank 3, expected 4"]),
        ({"pixels": _x(1, 3, 32, 31)}, ["(batch, 3, 32, 32) float32", "(1, 3, 32, 31) float32", "dim 3 is 31"]),
        ({"pixels": _x(1, 3, 32, 32, dtype=np.float64)}, ["dtype float64, expected float32", ".astype(float32)"]),
        ({"pixels": _x(1, 32, 32, 3)}, ["(1, 32, 32, 3) float32", "channels-last (NHWC)", "transpose(0, 3, 1, 2)"]),
        ({"pixels": [[0.0]]}, ["list", "not a numpy array"]),
    ],
    ids=["name", "rank", "static-dim", "dtype", "nhwc", "not-array"],
)
def test_bad_feeds_raise_a_table_before_the_runtime(color_artifact, feeds, expected):
    with Session(color_artifact) as s, pytest.raises(InputMismatchError) as e:
        s.run(feeds)
    message = str(e.value)
    summary, _, table = message.partition("\n")
    assert "input problem" in summary
    assert table.splitlines()[0].split() == ["input", "expected", "given", "problem"]
    for fragment in expected:
        assert fragment in table


def test_every_problem_is_listed_at_once(two_input):
    feeds = {"image": _x(2, 3, 8, 8, dtype=np.float64), "sclae": _x(2, 1)}
    with Session(two_input) as s, pytest.raises(InputMismatchError) as e:
        s.run(feeds)
    rows = {p.name: p.problem for p in e.value.problems}
    assert rows == {
        "image": "dtype float64, expected float32; cast with .astype(float32)",
        "sclae": "unknown input; did you mean 'scale'?",
        "scale": "missing",
    }


def test_shared_symbolic_dim_must_agree_across_inputs(two_input):
    with Session(two_input) as s:
        np.testing.assert_allclose(
            s.run({"image": np.ones((2, 3, 8, 8), np.float32), "scale": np.array([[2.0], [3.0]], np.float32)})["out"],
            [[2.0], [3.0]],
        )
        with pytest.raises(InputMismatchError, match=r"dim 0 \(batch\) is 3, but 'image' gave batch=2"):
            s.run({"image": _x(2, 3, 8, 8), "scale": _x(3, 1)})


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_input_is_refused_naming_the_tensor(color_artifact, bad):
    x = _x(1, 3, 32, 32)
    x[0, 1, 2, 3] = bad
    with (
        Session(color_artifact) as s,
        pytest.raises(InvalidInputError, match=r"input 'pixels' holds .* \(0, 1, 2, 3\)"),
    ):
        s.run({"pixels": x})


def test_unavailable_provider_raises_and_never_falls_back(color_artifact):
    with pytest.raises(BackendUnavailableError) as e:
        Session(color_artifact, providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    assert e.value.exit_code == 5
    assert "CUDAExecutionProvider" in str(e.value)
    assert "CPUExecutionProvider" in str(e.value)  # says what is available
    assert "onnxruntime-gpu" in str(e.value)


def test_misspelled_provider_suggests_the_available_one(color_artifact):
    with pytest.raises(BackendUnavailableError, match="did you mean 'CPUExecutionProvider'"):
        Session(color_artifact, providers="CPUExecutionProviders")


def test_unknown_backend_suggests_close_names(color_artifact):
    with pytest.raises(ConfigError, match="did you mean 'ort'"):
        Session(color_artifact, backend="ortt")
    with pytest.raises(ConfigError, match="did you mean 'openvino'"):
        get_backend("openvno")


def test_backend_whose_module_is_missing_names_the_install_and_stays_registered():
    register_backend("ghost_backend_for_test", "edgeformer.runtimes.no_such_module:Ghost", "pip install ghost-rt")
    for _ in range(2):  # the second lookup must fail the same way, not turn into "unknown backend"
        with pytest.raises(BackendUnavailableError, match=r"'ghost_backend_for_test' .*: pip install ghost-rt"):
            get_backend("ghost_backend_for_test")
    assert "ghost_backend_for_test" in backends


def test_tensorrt_backend_is_unavailable_on_this_machine(color_artifact):
    # no NVIDIA GPU or TensorRT here: whether its module is written yet or not, this is exit 5, never a fallback
    with pytest.raises(BackendUnavailableError, match=r"(?i)tensorrt"):
        Session(color_artifact, backend="tensorrt")


def test_artifact_format_the_backend_cannot_open(tmp_path):
    art = write_artifact(tmp_path / "ov", color_model(), fmt="openvino")
    with pytest.raises(ConfigError, match="use backend='openvino'"):
        Session(art, backend="ort")


def test_not_a_model_file_is_a_model_file_error(tmp_path):
    art = write_artifact(tmp_path / "png", None, model_bytes=b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(ModelFileError, match=r"model\.onnx"):
        Session(art)


def test_ir_version_newer_than_the_runtime_is_explained(tmp_path):
    model = color_model()
    model.ir_version = 99
    art = write_artifact(tmp_path / "ir", model)
    with pytest.raises(ModelFileError, match="IR version: 99"):
        Session(art)


def test_runtime_failure_after_checks_is_an_input_error(tmp_path):
    # spatial dims are symbolic, but the Reshape inside only works for 32x32: ORT fails mid-run
    model = make_model(
        [helper.make_node("Reshape", ["pixels", "shape"], ["flat"])],
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("flat", TensorProto.FLOAT, ["batch", 3072])],
        [numpy_helper.from_array(np.array([-1, 3072], np.int64), "shape")],
    )
    with Session(write_artifact(tmp_path / "reshape", model)) as s:
        assert s.run({"pixels": _x(2, 3, 32, 32)})["flat"].shape == (2, 3072)
        with pytest.raises(
            InvalidInputError, match=r"onnxruntime failed running model\.onnx on pixels\(1, 3, 16, 16\)"
        ):
            s.run({"pixels": _x(1, 3, 16, 16)})


def test_closed_session_refuses_to_run(color_artifact):
    s = Session(color_artifact)
    with s:
        pass
    with pytest.raises(ConfigError, match="closed"):
        s.run({"pixels": _x(1, 3, 32, 32)})
    assert "closed" in repr(s)


def test_options_are_validated(color_artifact):
    with pytest.raises(ConfigError, match="did you mean 'extended'"):
        Session(color_artifact, options=SessionOptions(graph_optimization="extnded"))
    with pytest.raises(ConfigError, match="did you mean 'optimized_model_filepath'"):
        Session(color_artifact, options=SessionOptions(extra=(("optimized_model_path", "x.onnx"),)))
    with pytest.raises(ConfigError, match="threads given both"):
        Session(color_artifact, threads=2, options=SessionOptions(threads=1))
    with pytest.raises(ConfigError, match="threads must be a positive int"):
        Session(color_artifact, threads=0)


def test_profiling_writes_a_trace_where_asked(color_artifact, tmp_path):
    opts = SessionOptions(threads=1, enable_profiling=True, profile_dir=str(tmp_path / "prof"))
    with Session(color_artifact, options=opts) as s:
        s.run({"pixels": _x(1, 3, 32, 32)})
        trace = Path(s.end_profiling())
    assert trace.parent == tmp_path / "prof"
    events = json.loads(trace.read_text())
    assert any(e.get("name") == "model_run" for e in events)
    with Session(color_artifact) as s:
        assert s.end_profiling() is None


def test_optimized_model_is_written_through_extra_option(color_artifact, tmp_path):
    dest = tmp_path / "opt.onnx"
    opts = SessionOptions(graph_optimization="basic", extra=(("optimized_model_filepath", str(dest)),))
    with Session(color_artifact, options=opts):
        pass
    assert dest.stat().st_size > 0


def test_check_feeds_returns_contiguous_arrays():
    info = [TensorInfo(name="x", shape=(None, 4), dtype="float32")]
    x = np.zeros((4, 2), np.float32).T
    out = check_feeds(info, {"x": x})
    assert out["x"].flags.c_contiguous
    np.testing.assert_array_equal(out["x"], x)
    with pytest.raises(InputMismatchError, match="feeds must be a dict"):
        check_feeds(info, [x])


def test_check_feeds_flags_nchw_given_to_a_channels_last_model():
    info = [TensorInfo(name="x", shape=("batch", 16, 16, 3), dtype="float32")]
    with pytest.raises(InputMismatchError, match=r"channels-first \(NCHW\) given, the model wants NHWC"):
        check_feeds(info, {"x": np.zeros((1, 3, 16, 16), np.float32)})


def test_concrete_shape_fills_batch_and_names_other_symbolic_dims():
    assert concrete_shape(TensorInfo(name="x", shape=("batch", 3, 32, 32), dtype="float32"), batch=8) == (8, 3, 32, 32)
    spatial = TensorInfo(name="x", shape=("batch", 3, "height", "width"), dtype="float32")
    assert concrete_shape(spatial, batch=2, resolution=64) == (2, 3, 64, 64)
    with pytest.raises(DynamicShapeError, match=r"height \(axis 2\), width \(axis 3\).*--resolution"):
        concrete_shape(spatial)
    with pytest.raises(DynamicShapeError, match=r"frames \(axis 1\).*--batch"):
        concrete_shape(TensorInfo(name="wave", shape=(1, "frames"), dtype="float32"))


def test_probe_in_subprocess_runs_a_good_model(color_artifact):
    assert probe_in_subprocess(color_artifact.model_path) == {"outputs": [[1, 5]]}


def test_probe_turns_a_native_crash_into_a_model_file_error(tmp_path):
    # a real child killed by SIGSEGV, as onnxruntime is when a malformed model trips a native bug
    crash = "import os, signal, sys; sys.stdout.flush(); os.kill(os.getpid(), signal.SIGSEGV)"
    with pytest.raises(ModelFileError, match=r"onnxruntime crashed loading .*model.onnx \(SIGSEGV\)"):
        _run_probe(tmp_path / "model.onnx", crash, timeout=60)


def test_probe_reports_a_refused_model(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="onnxruntime refused the model"):
        probe_in_subprocess(bad)


_TORCH_BLOCKED = textwrap.dedent(
    """
    import json, sys
    from importlib.abc import MetaPathFinder

    class NoTorch(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch.") or name.startswith("torchvision"):
                raise ImportError(f"torch is blocked in this test: {name}")
            return None

    sys.meta_path.insert(0, NoTorch())
    import numpy as np
    import edgeformer

    art, image = sys.argv[1], sys.argv[2]
    with edgeformer.Session(art, threads=1) as s:
        out = s.run({"pixels": np.zeros((2, 3, 32, 32), np.float32)})
    top = edgeformer.load(art, threads=1).predict(image, top_k=2)
    print(json.dumps({"shape": list(out["logits"].shape), "top": [p.to_dict() for p in top],
                      "torch_loaded": any(m == "torch" or m.startswith("torch.") for m in sys.modules)}))
    """
)


def test_session_and_predict_work_with_torch_blocked(color_artifact, tmp_path):
    from PIL import Image

    image = tmp_path / "red pixel ü.png"
    Image.new("RGB", (40, 48), (250, 10, 10)).save(image)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", _TORCH_BLOCKED, str(color_artifact.path), str(image)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["shape"] == [2, 5]
    assert result["top"][0]["label"] == "red"
    assert result["torch_loaded"] is False


def test_allow_spinning_is_an_accepted_ort_option():
    import onnxruntime as ort

    from edgeformer.errors import ConfigError
    from edgeformer.runtimes.base import SessionOptions
    from edgeformer.runtimes.ort import ort_options

    so = ort_options(ort, SessionOptions(threads=2, extra=(("allow_spinning", False),)))
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(ConfigError, match="must be bool"):
        ort_options(ort, SessionOptions(extra=(("allow_spinning", "no"),)))
