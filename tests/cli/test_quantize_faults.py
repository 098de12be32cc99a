"""``edgeformer quantize`` on bad input, through the CLI (typer's CliRunner): each case ends in its documented
exit code and one ``error (...)`` line with no traceback and nothing written, or succeeds and says what it
skipped or changed (FAULTS.md, "Calibration and evaluation data").

The models are the tiny ONNX graphs of tests/quant (run by the real ONNX Runtime); ``--no-search`` keeps
the successful runs to a few seconds.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from quant.conftest import AUDIO, RES, attention_model, save_image, save_wav, write_artifact  # tests/ is on sys.path
from typer.testing import CliRunner

import edgeformer
from edgeformer.artifact import Artifact
from edgeformer.cli.app import app
from edgeformer.inputs import ImageInput
from edgeformer.quant import QuantConfig, SearchConfig, open_calibration

runner = CliRunner()


# --- helpers -----------------------------------------------------------------------------------
def quantize_cli(artifact: Path, calib: Path | str, out: Path, *extra: str):
    args = ["quantize", str(artifact), "--calib", str(calib), "--out", str(out), "--no-search", *extra]
    return runner.invoke(app, args)


def assert_fails(result, code: int, out: Path, *needles: str) -> str:
    """Exit ``code``, one ``error (...)`` line naming ``needles`` as the last line, no traceback, no output."""
    assert result.exit_code == code, (result.exit_code, result.output)
    # the command wrapper exits with SystemExit; any other exception escaped it (a bug: exit 1, traceback)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error (")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.edgeformer-tmp-*"))  # nothing half-written
    return errors[0]


def quantize_ok(artifact: Path, calib: Path | str, out: Path, *extra: str) -> dict:
    """Run the CLI, expect success, return the written manifest."""
    result = quantize_cli(artifact, calib, out, *extra)
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads((out / "artifact.json").read_text())


def qdq_scales(model_path: Path) -> list[np.ndarray]:
    model = onnx.load(str(model_path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return [inits[n.input[1]] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]


def make_unreadable(path: Path) -> Path:
    """Make ``path`` a file that exists but cannot be read: mode 000, or as root (who reads anything) a link to
    ``/proc/self/mem``, which fails with EIO for every reader; skip where neither works."""
    path.write_bytes(b"x")
    path.chmod(0)
    if _readable(path):
        path.unlink()
        try:
            path.symlink_to("/proc/self/mem")
        except OSError:
            pytest.skip("cannot make an unreadable file here")
        if _readable(path):
            pytest.skip("cannot make an unreadable file here")
    return path


def _readable(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            f.read(1)
        return True
    except OSError:
        return False


def waveform_model() -> onnx.ModelProto:
    """A keyword-spotting-shaped model on the raw waveform: MatMul, Relu, Gemm."""
    rng = np.random.default_rng(0)
    n = AUDIO.num_samples
    inits = [
        numpy_helper.from_array((rng.standard_normal((n, 32)) * n**-0.5).astype(np.float32), "fc1.w"),
        numpy_helper.from_array((rng.standard_normal((32, 10)) * 32**-0.5).astype(np.float32), "fc2.w"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fc2.b"),
    ]
    nodes = [
        helper.make_node("MatMul", ["wave", "fc1.w"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["hr"], name="relu"),
        helper.make_node("Gemm", ["hr", "fc2.w", "fc2.b"], ["logits"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "kws",
        [helper.make_tensor_value_info("wave", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI points the root logger at CliRunner's stderr, which is closed after each run: later tests
    would log into a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "image": write_artifact(attention_model(), root / "image").path,
        "audio": write_artifact(waveform_model(), root / "audio", preprocessing=AUDIO).path,
        "constant": write_artifact(attention_model(constant_branch=True), root / "constant").path,
        "dynamic": write_artifact(attention_model(dynamic=True), root / "dynamic", preprocessing=None).path,
    }


@pytest.fixture(scope="module")
def arrays(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("arrays") / "calib.npy"
    np.save(path, np.random.default_rng(1).standard_normal((40, 3, RES, RES)).astype(np.float32))
    return path


def sample_folder(folder: Path, kind: str, n: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        if kind == "image":
            save_image(folder / f"ok_{i}.png", "RGB", rng)
        else:
            save_wav(folder / f"ok_{i}.wav", AUDIO.sample_rate, AUDIO.clip_seconds, rng)
    return folder


def damage(folder: Path, kind: str, how: str) -> str:
    """Add one bad sample to ``folder``; returns its name."""
    name = f"bad.{'png' if kind == 'image' else 'wav'}"
    if how == "truncated":
        good = next(folder.glob(f"ok_0.{'png' if kind == 'image' else 'wav'}")).read_bytes()
        (folder / name).write_bytes(good[: len(good) // 2])
    else:
        make_unreadable(folder / name)
    return name


# --- folders -----------------------------------------------------------------------------------
def test_empty_calibration_folder_exits_3(models, tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "q"
    assert_fails(quantize_cli(models["image"], tmp_path / "empty", out), 3, out, "CalibrationError", "no image files")


def test_missing_calibration_path_exits_3(models, tmp_path):
    out = tmp_path / "q"
    assert_fails(quantize_cli(models["image"], tmp_path / "nope", out), 3, out, "does not exist")


def test_unlistable_calibration_folder_exits_3_instead_of_looking_empty(models, tmp_path):
    folder = sample_folder(tmp_path / "imgs", "image")
    folder.chmod(0)
    try:
        if os.access(folder, os.R_OK):
            pytest.skip("running as root: permissions do not stop reading")
        out = tmp_path / "q"
        assert_fails(quantize_cli(models["image"], folder, out), 3, out, "cannot list", "permission")
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("kind", ["image", "audio"])
@pytest.mark.parametrize("how", ["truncated", "unreadable"])
def test_bad_sample_fails_by_default_and_is_skipped_and_counted_with_skip(models, tmp_path, kind, how):
    folder = sample_folder(tmp_path / "data", kind)
    name = damage(folder, kind, how)
    out = tmp_path / "q"
    line = assert_fails(quantize_cli(models[kind], folder, out), 3, out, "CalibrationError", name)
    assert "--on-bad-sample skip" in line
    calib = quantize_ok(models[kind], folder, out, "--on-bad-sample", "skip")["calibration"]
    # the seeded draw puts the bad file among the calibration or the held-out samples: counted either way
    assert calib["skipped"] + calib["holdout_skipped"] == 1
    assert [s.split(":")[0] for s in calib["skipped_samples"]] == [name]
    assert calib["used"] == calib["sampled"] - calib["skipped"]


def test_a_bad_file_drawn_for_the_fidelity_check_fails_too(models, tmp_path):
    folder = sample_folder(tmp_path / "imgs", "image")
    (folder / "0_bad.png").write_bytes(b"\x89PNG truncated")  # sorts first: sample 0
    inputs, pre = Artifact.load(models["image"]).manifest.inputs, ImageInput(resolution=RES)

    def held_out(seed: int) -> bool:
        cfg = QuantConfig(seed=seed, on_bad_sample="skip")
        return open_calibration(folder, inputs=inputs, preprocessing=pre, config=cfg).summary.holdout_skipped == 1

    seed = next(s for s in range(50) if held_out(s))  # a seed whose draw holds the bad file out
    out = tmp_path / "q"
    assert_fails(quantize_cli(models["image"], folder, out, "--seed", str(seed)), 3, out, "0_bad.png")
    calib = quantize_ok(models["image"], folder, out, "--seed", str(seed), "--on-bad-sample", "skip")
    assert calib["calibration"]["holdout_skipped"] == 1 and calib["calibration"]["skipped"] == 0
    assert calib["calibration"]["skipped_samples"][0].endswith("(held out)")


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "L"])
def test_cmyk_16bit_and_grayscale_images_are_converted(models, tmp_path, mode):
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    for i in range(8):
        save_image(folder / f"{i}.{'jpg' if mode == 'CMYK' else 'png'}", mode, rng)
    manifest = quantize_ok(models["image"], folder, tmp_path / "q")
    calib, ranges = manifest["calibration"], manifest["extra"]["ranges"]
    assert calib["skipped"] == 0 and calib["used"] == calib["sampled"] > 0
    # a 16-bit image clipped to 8 bits instead of scaled is flat white: the input would have a constant range
    assert "input" not in ranges["widened"]


# --- arrays ------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".npy", ".npz"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_input_exits_3_naming_the_sample_even_with_skip(models, tmp_path, suffix, bad):
    x = np.random.default_rng(0).standard_normal((10, 3, RES, RES)).astype(np.float32)
    x[3, 0, 1, 1] = bad
    path = tmp_path / f"x{suffix}"
    if suffix == ".npy":
        np.save(path, x)
    else:
        np.savez(path, input=x)
    out = tmp_path / "q"
    assert_fails(
        quantize_cli(models["image"], path, out, "--on-bad-sample", "skip"), 3, out, f"x{suffix}[3]", "NaN/Inf"
    )


@pytest.mark.parametrize("case", ["truncated.npz", "truncated.npy", "empty.npy", "empty.npz", "garbage.npz"])
def test_corrupt_array_file_exits_3(models, arrays, tmp_path, case):
    kind, suffix = case.split(".")
    path = tmp_path / case
    if suffix == "npz":
        np.savez(tmp_path / "good.npz", input=np.load(arrays))
        good = (tmp_path / "good.npz").read_bytes()
    else:
        good = arrays.read_bytes()
    path.write_bytes({"truncated": good[: len(good) // 2], "empty": b"", "garbage": b"garbage " * 20}[kind])
    out = tmp_path / "q"
    line = assert_fails(quantize_cli(models["image"], path, out), 3, out, "CalibrationError", case)
    assert "allow_pickle" not in line  # numpy's advice for what it takes for a pickle: never give it


def test_unreadable_array_file_exits_3(models, tmp_path):
    path = make_unreadable(tmp_path / "x.npy")
    out = tmp_path / "q"
    assert_fails(quantize_cli(models["image"], path, out), 3, out, "CalibrationError", "cannot read")


def test_float64_arrays_are_converted_but_integer_arrays_are_refused(models, arrays, tmp_path):
    np.save(tmp_path / "f64.npy", np.load(arrays).astype(np.float64))  # numpy's default float
    assert quantize_ok(models["image"], tmp_path / "f64.npy", tmp_path / "q64")["precision"] == "int8"
    np.save(tmp_path / "u8.npy", np.zeros((8, 3, RES, RES), np.uint8))
    out = tmp_path / "q8"
    assert_fails(quantize_cli(models["image"], tmp_path / "u8.npy", out), 3, out, "uint8", "float32")


# --- numerics ----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["constant branch", "all-zero data"])
def test_constant_activations_get_a_minimum_range_never_a_zero_or_nan_scale(models, arrays, tmp_path, case):
    if case == "constant branch":  # a conv with zero weights: its output is its bias whatever the input
        model, calib, constant = models["constant"], arrays, "const"
    else:
        model, calib, constant = models["image"], tmp_path / "zeros.npy", "input"
        np.save(calib, np.zeros((12, 3, RES, RES), np.float32))
    out = tmp_path / "q"
    result = quantize_cli(model, calib, out)
    assert result.exit_code == 0, result.output
    assert "constant" in result.stderr  # the warning
    manifest = json.loads((out / "artifact.json").read_text())
    assert constant in manifest["extra"]["ranges"]["widened"]
    scales = qdq_scales(out / "model.onnx")
    assert scales and all(np.isfinite(s).all() and (s > 0).all() for s in scales)


def test_the_cli_writes_the_model_the_api_writes_for_the_same_inputs(models, arrays, tmp_path):
    manifest = quantize_ok(models["image"], arrays, tmp_path / "cli")  # --no-search: the preset, search off
    config = QuantConfig.for_target("ort-cpu", search=SearchConfig(enabled=False))
    api = edgeformer.quantize(models["image"], config, calib=arrays, out=tmp_path / "api", cache=None)  # computed
    assert (tmp_path / "cli" / "model.onnx").read_bytes() == api.model_path.read_bytes()
    assert manifest["step_config"] == json.loads(api.manifest.to_json())["step_config"]


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_too_few_samples_for_the_method_fails_or_falls_back_and_says_so(models, arrays, tmp_path, method):
    out = tmp_path / "q"
    few = ("--method", method, "--calib-size", "5")
    line = assert_fails(quantize_cli(models["image"], arrays, out, *few), 3, out, "only 5", "--too-few-samples minmax")
    assert method in line
    # with the search: --no-search is the core, which writes no report, and the report must say it too
    result = quantize_cli(models["image"], arrays, out, *few, "--too-few-samples", "minmax", "--search")
    assert result.exit_code == 0, result.output
    assert f"fallback from {method}" in result.stdout  # the CLI summary says so ...
    calib = json.loads((out / "artifact.json").read_text())["calibration"]
    assert (calib["method"], calib["method_requested"]) == ("minmax", method)
    assert any("falls back" in w for w in calib["warnings"])
    report = (out / "quant_report.md").read_text()  # ... and so does the report
    assert f"method minmax (fallback from {method}" in report and "falls back" in report


# --- models ------------------------------------------------------------------------------------
def test_already_quantized_input_exits_3(models, arrays, tmp_path):
    int8 = tmp_path / "int8"
    quantize_ok(models["image"], arrays, int8)
    for source in (int8, int8 / "model.onnx"):  # the artifact, and its model as a bare file
        out = tmp_path / "twice"
        assert_fails(quantize_cli(source, arrays, out), 3, out, "InvalidInputError", "already quantized")


def test_dynamic_model_with_synthetic_calibration_exits_3_listing_the_dims(models, tmp_path):
    out = tmp_path / "q"
    line = assert_fails(quantize_cli(models["dynamic"], "synthetic", out), 3, out, "DynamicShapeError")
    assert "height" in line and "width" in line and "--resolution" in line
