"""OpenVINO target: real OpenVINO, NNCF and ONNX Runtime on small real models; no mocks.

The fast tests use a tiny transformer-shaped ONNX graph built with onnx.helper (conv stem, LayerNorm,
softmax attention, pooled classifier) and its QDQ twin from onnxruntime's ``quantize_static``; the
zoo tests (slow) export a narrowed SHViT at 64x64. The builders here are shared by the other compile
tests of this folder.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgeformer
from edgeformer.artifact import Artifact, ArtifactWriter, Manifest
from edgeformer.compare import CheckRecord, ort_runner
from edgeformer.compile.openvino import OpenVinoConfig, calibration_feeds, check_source, compile_openvino
from edgeformer.errors import (
    BackendUnavailableError,
    CalibrationError,
    ConfigError,
    InputMismatchError,
    ModelFileError,
    OutputExistsError,
    QualityGateError,
)
from edgeformer.export.parity import parity_inputs
from edgeformer.inputs import ImageInput
from edgeformer.manifest import RuntimeSettings
from edgeformer.modelfile import graph_io
from edgeformer.runtimes import SessionOptions
from edgeformer.runtimes.openvino import OpenVinoBackend, available, precision_problem

REASON = available()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"OpenVINO cannot run here: {REASON}")
SIDE = 8
IMAGE = ImageInput(resolution=SIDE, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0, interpolation="bilinear")
LABELS = tuple("abcdefghij")


# --- shared builders: real tiny models and artifacts -------------------------------------------------------
def tiny_model(channels: int = 16, classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """pixels (N, 3, 8, 8) -> conv+relu -> tokens -> LayerNorm -> 1-head softmax attention (+residual) -> mean -> fc."""
    rng = np.random.default_rng(seed)
    c = channels

    def w(name: str, *shape: int, scale: float = 1.0) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["pixels", "W1", "B1"], ["c"], pads=[1, 1, 1, 1], name="stem"),
        helper.make_node("Relu", ["c"], ["cr"], name="stem_act"),
        helper.make_node("Reshape", ["cr", "tokens_shape"], ["t0"], name="flatten"),
        helper.make_node("Transpose", ["t0"], ["t"], perm=[0, 2, 1], name="to_tokens"),
        helper.make_node("LayerNormalization", ["t", "ln_s", "ln_b"], ["ln"], axis=-1, name="norm"),
        helper.make_node("MatMul", ["ln", "Wq"], ["q"], name="q"),
        helper.make_node("MatMul", ["ln", "Wk"], ["k"], name="k"),
        helper.make_node("MatMul", ["ln", "Wv"], ["v"], name="v"),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1], name="kt"),
        helper.make_node("MatMul", ["q", "kt"], ["s0"], name="scores"),
        helper.make_node("Mul", ["s0", "scale"], ["s"], name="scale"),
        helper.make_node("Softmax", ["s"], ["a"], axis=-1, name="softmax"),
        helper.make_node("MatMul", ["a", "v"], ["av"], name="attend"),
        helper.make_node("Add", ["t", "av"], ["r"], name="residual"),
        helper.make_node("ReduceMean", ["r", "axis1"], ["p"], keepdims=0, name="pool"),
        helper.make_node("MatMul", ["p", "Wfc"], ["m"], name="fc"),
        helper.make_node("Add", ["m", "Bfc"], ["logits"], name="fc_bias"),
    ]
    inits = [
        w("W1", c, 3, 3, 3, scale=0.4),
        w("B1", c, scale=0.1),
        numpy_helper.from_array(np.array([0, c, SIDE * SIDE], dtype=np.int64), "tokens_shape"),
        numpy_helper.from_array(np.ones(c, dtype=np.float32), "ln_s"),
        numpy_helper.from_array(np.zeros(c, dtype=np.float32), "ln_b"),
        w("Wq", c, c, scale=c**-0.5),
        w("Wk", c, c, scale=c**-0.5),
        w("Wv", c, c, scale=c**-0.5),
        numpy_helper.from_array(np.array(c**-0.5, dtype=np.float32), "scale"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        w("Wfc", c, classes, scale=1.0),
        w("Bfc", classes, scale=0.1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_former",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10  # what onnxruntime 1.20+ reads
    onnx.checker.check_model(model, full_check=True)
    return model


def write_artifact(dest: Path, model: onnx.ModelProto, precision: str = "fp32", name: str = "tiny") -> Artifact:
    """``model`` as a real artifact folder, written with the real ArtifactWriter."""
    inputs, outputs = graph_io(model)
    with ArtifactWriter(dest) as w:
        onnx.save(model, w.dir / "model.onnx")
        return w.commit(
            Manifest(
                format="onnx",
                precision=precision,
                model_name=name,
                main_file="model.onnx",
                inputs=inputs,
                outputs=outputs,
                preprocessing=IMAGE,
                labels=LABELS,
            )
        )


def qdq_artifact(dest: Path, fp32: Artifact, shapes: dict[str, tuple[int, ...]] | None = None) -> Artifact:
    """A QDQ int8 artifact from ``fp32`` by onnxruntime's static quantizer (symmetric int8, per channel)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            feeds = parity_inputs(shapes or {"pixels": (1, 3, SIDE, SIDE)}, kind="image", samples=32, seed=7)
            self._it = iter(feeds.values())

        def get_next(self):
            return next(self._it, None)

    tmp = dest.parent / f"{dest.name}.qdq.onnx"
    quantize_static(
        str(fp32.model_path),
        str(tmp),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": True},
    )
    try:
        return write_artifact(dest, onnx.load(str(tmp)), precision="int8", name=fp32.manifest.model_name)
    finally:
        tmp.unlink()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Artifact:
    return write_artifact(tmp_path_factory.mktemp("src") / "tiny", tiny_model())


@pytest.fixture(scope="module")
def tiny_qdq(tmp_path_factory, tiny) -> Artifact:
    return qdq_artifact(tmp_path_factory.mktemp("src") / "tiny-int8", tiny)


@pytest.fixture(scope="module")
def ir(tmp_path_factory, tiny) -> Artifact:
    """The fp32 IR of ``tiny``, compiled once for the tests that only read or run it."""
    return compile_openvino(tiny, OpenVinoConfig(), tmp_path_factory.mktemp("ir") / "ir")


def ov_op_types(artifact: Artifact) -> set[str]:
    import openvino as ov

    return {op.get_type_name() for op in ov.Core().read_model(str(artifact.model_path)).get_ops()}


def weight_types(artifact: Artifact) -> set[str]:
    import openvino as ov

    model = ov.Core().read_model(str(artifact.model_path))
    return {op.get_element_type().get_type_name() for op in model.get_ops() if op.get_type_name() == "Constant"}


def bf16_problem() -> str | None:
    import openvino as ov

    return precision_problem(ov.Core(), "CPU", "bf16")


# --- fp32 -------------------------------------------------------------------------------------------------
def test_fp32_ir_matches_the_onnx_and_records_its_lineage(tiny, ir):
    art = ir
    m = art.manifest
    assert (m.format, m.precision, m.main_file, m.step) == ("openvino", "fp32", "model.xml", "compile")
    assert set(m.files) == {"model.xml", "model.bin"}
    assert m.parent_sha == tiny.sha and m.preprocessing == IMAGE and m.labels == LABELS
    assert m.inputs == tiny.manifest.inputs and m.outputs == tiny.manifest.outputs
    assert m.step_config["precision"] == "fp32" and m.step_config["device"] == "CPU"
    assert m.runtime == RuntimeSettings(
        device="CPU", inference_precision="f32", performance_hint="LATENCY", num_streams=1
    )
    assert "FP32" in m.extra["compile_machine"]["optimization_capabilities"]
    fid = m.fidelity
    assert fid.cosine >= 0.99999 and fid.outputs["logits"].top1_agreement == 1.0
    assert fid.outputs["logits"].max_abs < 1e-3
    assert "f16" not in weight_types(art)  # OpenVINO's default would have stored fp16 weights
    Artifact.load(art.path)  # hashes verify


def test_compress_to_fp16_halves_the_weights_and_keeps_fidelity(tiny, ir, tmp_path):
    full = ir
    half = compile_openvino(tiny, OpenVinoConfig(compress_to_fp16=True), tmp_path / "f16")
    assert "f16" in weight_types(half)
    assert (half.path / "model.bin").stat().st_size < 0.6 * (full.path / "model.bin").stat().st_size
    # fp16 weights carry ~3 significant digits; the computation itself stays f32
    assert half.manifest.fidelity.cosine >= 0.999


# --- bf16 -------------------------------------------------------------------------------------------------
def test_bf16_is_a_recorded_runtime_hint_honoured_or_refused(tiny, tmp_path):
    art = compile_openvino(tiny, OpenVinoConfig(precision="bf16"), tmp_path / "bf16")
    m = art.manifest
    assert m.precision == "bf16" and m.runtime.inference_precision == "bf16"
    assert "f16" not in weight_types(art)  # the IR is fp32: bf16 is applied when a device compiles it
    problem = bf16_problem()
    if problem:  # e.g. AVX2-only CPUs: OpenVINO would run f32 silently, so nothing may claim bf16 here
        assert "BF16" not in m.extra["compile_machine"]["optimization_capabilities"]
        assert "cannot run bf16" in m.fidelity.skipped
        with pytest.raises(BackendUnavailableError, match="cannot run bf16") as e:
            edgeformer.Session(art, backend="openvino")
        assert e.value.exit_code == 5
    else:
        # bf16 keeps 8 mantissa bits (~0.4% relative error per op); on this 6-matmul graph the logits'
        # cosine stays far above 0.99, while a wrong layout or a dropped op gives < 0.9
        assert m.fidelity.cosine >= 0.99
        with edgeformer.Session(art, backend="openvino") as s:
            assert s._open.inference_precision == "bf16"


def test_bf16_with_a_cosine_gate_refuses_when_it_cannot_be_measured(tiny, tmp_path):
    if bf16_problem() is None:
        pytest.skip("this CPU runs bf16, so the gate can be measured")
    with pytest.raises(QualityGateError, match="cannot run here"):
        compile_openvino(tiny, OpenVinoConfig(precision="bf16", min_cosine=0.99), tmp_path / "gated")
    assert not (tmp_path / "gated").exists()


# --- int8 -------------------------------------------------------------------------------------------------
def test_int8_from_a_qdq_model_runs_its_scales_as_fake_quantize(tiny_qdq, tmp_path):
    art = compile_openvino(tiny_qdq, OpenVinoConfig(precision="int8"), tmp_path / "int8")
    assert art.manifest.precision == "int8" and art.manifest.extra["int8_from"] == "qdq"
    assert "FakeQuantize" in ov_op_types(art)
    # the parent runs the same Q/DQ scales in ORT: only rounding-order differences remain
    assert art.manifest.fidelity.cosine >= 0.999


@pytest.mark.slow
def test_int8_with_nncf_on_synthetic_data_warns_and_records_it(tiny, tmp_path, caplog):
    cfg = OpenVinoConfig(precision="int8", nncf=True, calib_size=16)
    with caplog.at_level(logging.WARNING, logger="edgeformer.compile.openvino"):
        art = compile_openvino(tiny, cfg, tmp_path / "nncf")
    assert any("SYNTHETIC" in r.getMessage() for r in caplog.records)
    extra, calibration = art.manifest.extra, art.manifest.calibration
    assert extra["int8_from"] == "nncf" and calibration.source == "synthetic"
    assert calibration.samples == 16 and "SYNTHETIC" in calibration.warning
    assert extra["nncf"]["model_type"] == "transformer"
    assert "FakeQuantize" in ov_op_types(art)
    # vs the fp32 parent this is quantization error, not a compile error: on noise-calibrated scales the
    # tiny model's logits measure cosine 0.986-0.990 (16-64 samples, either preset); a conversion that breaks
    # the graph (a wrong layout or order) measures below 0.5
    assert art.manifest.fidelity.cosine >= 0.97


@pytest.mark.slow
def test_int8_with_nncf_reads_a_npy_calibration_set_and_gates_on_cosine(tiny, tmp_path):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(3).standard_normal((12, 3, SIDE, SIDE)).astype(np.float32))
    art = compile_openvino(tiny, OpenVinoConfig(precision="int8", nncf=True, calib=calib), tmp_path / "nncf")
    record = art.manifest.calibration
    # 12 samples, a quarter (3) held out as `edgeformer quantize` holds them out: NNCF calibrates on 9
    assert (record.source, record.kind, record.samples) == (str(calib), "arrays", 9)
    with pytest.raises(QualityGateError, match="nothing was written"):
        compile_openvino(
            tiny, OpenVinoConfig(precision="int8", nncf=True, calib=calib, min_cosine=0.9999999), tmp_path / "gated"
        )
    assert not (tmp_path / "gated").exists()


@pytest.mark.parametrize(
    ("make", "error", "needle"),
    [
        (lambda d: d.joinpath("missing"), CalibrationError, "does not exist"),
        (lambda d: _npy(d, np.zeros((4, 3, 5, 5), np.float32)), CalibrationError, "(3, 8, 8)"),
        (lambda d: _npy(d, np.full((2, 3, SIDE, SIDE), np.nan, np.float32)), CalibrationError, "NaN"),
        (lambda d: _npy(d, np.zeros((3, 3, SIDE, SIDE), np.uint8)), CalibrationError, "uint8"),
        (lambda d: d.joinpath("empty").mkdir() or d / "empty", CalibrationError, "no image"),
    ],
)
def test_bad_calibration_data_is_refused_naming_the_problem(tiny, tmp_path, make, error, needle):
    cfg = OpenVinoConfig(precision="int8", nncf=True, calib=make(tmp_path))
    with pytest.raises(error, match=needle.replace("(", r"\(").replace(")", r"\)")) as e:
        compile_openvino(tiny, cfg, tmp_path / "out")
    assert e.value.exit_code == 3 and not (tmp_path / "out").exists()


def test_an_image_folder_is_read_through_the_recorded_preprocessing(tiny, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    cfg = OpenVinoConfig(precision="int8", nncf=True, calib=tmp_path, calib_size=4)
    feeds, record = calibration_feeds(tiny, cfg)
    assert len(feeds) == 4 and record.samples == 4 and record.kind == "images" and record.found == 5
    x = feeds[0]["pixels"]
    assert x.shape == (1, 3, SIDE, SIDE) and x.dtype == np.float32
    assert -1.0 <= x.min() < 0 < x.max() <= 1.0  # normalized with the recorded mean/std of 0.5


def _npy(folder: Path, array: np.ndarray) -> Path:
    path = folder / "calib.npy"
    np.save(path, array)
    return path


# --- source and config checks -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source_precision", "fields", "needle"),
    [
        ("fp32", {"precision": "int8"}, "pass --nncf"),
        ("int8", {"precision": "int8", "nncf": True}, "already quantized"),
        ("int8", {"precision": "fp32"}, "pass --precision int8"),
        ("int8", {"precision": "bf16"}, "pass --precision int8"),
        ("fp16", {"precision": "fp32"}, "fp32 or int8"),
    ],
)
def test_source_that_cannot_give_the_precision_is_refused(source_precision, fields, needle):
    art = Artifact(Path("a"), Manifest(format="onnx", precision=source_precision, model_name="m", main_file="m.onnx"))
    with pytest.raises(ConfigError, match=needle):
        check_source(art, OpenVinoConfig(**fields))


def test_a_non_onnx_artifact_is_refused(tmp_path, ir):
    with pytest.raises(ModelFileError, match="compiles ONNX artifacts, this one is 'openvino'"):
        compile_openvino(ir, OpenVinoConfig(), tmp_path / "again")


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"precision": "fp16"}, "precision 'fp16' is not one of fp32, bf16, int8"),
        ({"nncf": True}, "nncf quantizes to int8"),
        ({"calib": "imgs"}, "calib is read by NNCF only"),
        ({"performance_hint": "FAST"}, "performance_hint 'FAST'"),
        ({"num_streams": 0}, "num_streams must be an int >= 1"),
        ({"calib_size": True, "precision": "int8", "nncf": True}, "calib_size must be an int"),
        ({"min_cosine": 2}, "min_cosine must be a number in [-1, 1]"),
        ({"device": ""}, "device must be an OpenVINO device name"),
        ({"device": "AUTO:GPU,CPU"}, "name one (CPU, GPU, NPU)"),
    ],
)
def test_config_rejects_invalid_values(fields, needle):
    with pytest.raises(ConfigError) as e:
        OpenVinoConfig(**fields)
    assert needle in str(e.value) and e.value.exit_code == 2


def test_config_is_frozen_and_keeps_a_str_calib_as_path():
    cfg = OpenVinoConfig(precision="int8", nncf=True, calib="imgs")
    assert cfg.calib == Path("imgs")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.precision = "fp32"  # type: ignore[misc]


def test_existing_output_is_refused_without_overwrite(tiny, tmp_path):
    (tmp_path / "ir").mkdir()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        compile_openvino(tiny, OpenVinoConfig(), tmp_path / "ir")
    art = compile_openvino(tiny, OpenVinoConfig(check_fidelity=False), tmp_path / "ir", overwrite=True)
    assert art.manifest.fidelity == CheckRecord(skipped="check_fidelity=False")
    with pytest.raises(OutputExistsError, match="overlaps the input"):
        compile_openvino(tiny, OpenVinoConfig(), tiny.path)


def test_a_device_not_present_gets_the_ir_but_no_fidelity(tiny, tmp_path):
    import openvino as ov

    if "NPU" in ov.Core().available_devices:
        pytest.skip("this machine has an NPU")
    art = compile_openvino(tiny, OpenVinoConfig(device="NPU"), tmp_path / "npu")
    assert art.manifest.extra["compile_machine"]["present"] is False
    assert "'NPU' is not present here" in art.manifest.fidelity.skipped
    with pytest.raises(BackendUnavailableError, match="never falls back") as e:
        edgeformer.Session(art, backend="openvino")
    assert e.value.exit_code == 5


# --- the session API --------------------------------------------------------------------------------------
def test_session_runs_like_onnxruntime_on_a_dynamic_batch(ir, tiny):
    x = np.random.default_rng(0).standard_normal((3, 3, SIDE, SIDE)).astype(np.float32)
    with edgeformer.Session(ir, backend="openvino", threads=1) as s:
        assert s.provider == "CPU"
        assert [(i.name, i.shape, i.dtype) for i in s.inputs] == [("pixels", ("batch", 3, SIDE, SIDE), "float32")]
        assert [(o.name, o.shape) for o in s.outputs] == [("logits", ("batch", 10))]
        first = s.run({"pixels": x})["logits"]
        kept = first.copy()
        s.run({"pixels": -x})  # the infer request reuses its buffers; results handed out must not change
        np.testing.assert_array_equal(first, kept)
    want = ort_runner(tiny.model_path)({"pixels": x})["logits"]
    np.testing.assert_allclose(first, want, rtol=1e-4, atol=1e-4)


def test_session_checks_feeds_before_openvino_sees_them(ir):
    with edgeformer.Session(ir, backend="openvino") as s, pytest.raises(InputMismatchError, match="NHWC"):
        s.run({"pixels": np.zeros((1, SIDE, SIDE, 3), np.float32)})


def test_predictor_applies_the_recorded_preprocessing(ir):
    predictor = edgeformer.load(ir, backend="openvino")
    image = np.random.default_rng(1).integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8)
    top = predictor.predict(image, top_k=3)
    assert len(top) == 3 and all(p.label in LABELS for p in top)


@pytest.mark.parametrize(
    ("options", "error", "needle"),
    [
        (SessionOptions(providers=("CPU", "GPU")), ConfigError, "one device per session"),
        (SessionOptions(providers=("AUTO",)), ConfigError, "name one device"),
        (SessionOptions(providers=("GPU.3",)), BackendUnavailableError, "'GPU.3' is not present"),
        (SessionOptions(enable_profiling=True), ConfigError, "backend 'ort'"),
        (SessionOptions(extra=(("num_stream", 2),)), ConfigError, "did you mean 'num_streams'"),
        (SessionOptions(extra=(("num_streams", "2"),)), ConfigError, "must be int"),
        (SessionOptions(threads=0), ConfigError, "threads must be a positive int"),
    ],
)
def test_session_refuses_what_it_cannot_honour(ir, options, error, needle):
    with pytest.raises(error, match=needle):
        OpenVinoBackend().open(ir, options)


def test_an_onnx_artifact_on_the_openvino_backend_points_to_the_right_one(tiny):
    with pytest.raises(ConfigError, match="use backend='ort'"):
        edgeformer.Session(tiny, backend="openvino")


def test_importing_the_target_does_not_import_openvino():
    code = "import sys, edgeformer.compile.openvino, edgeformer.runtimes.openvino; print('openvino' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- a zoo model (slow: the export alone takes tens of seconds on 2 cores) ------------------------------------
SHVIT_TINY = {
    "embed_dims": (32, 64, 96),
    "depths": (1, 2, 2),
    "partial_dims": (8, 16, 24),
    "qk_dims": (16, 16, 16),
    "mlp_ratios": ((2.0,), (2.0, 2.0), (2.0, 2.0)),
    "attention": ((False,), (True, True), (True, True)),
    "num_classes": 10,
}


@pytest.fixture(scope="module")
def shvit(tmp_path_factory) -> Artifact:
    from edgeformer.export.onnx import OnnxExportConfig

    out = tmp_path_factory.mktemp("zoo") / "shvit"
    return edgeformer.export("shvit_s1", out=out, config=OnnxExportConfig(resolution=64), **SHVIT_TINY)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_zoo_model_compiles_at_every_precision(shvit, tmp_path, precision):
    cfg = OpenVinoConfig(precision=precision, nncf=precision == "int8", calib_size=32)
    try:
        art = compile_openvino(shvit, cfg, tmp_path / precision)
    except BackendUnavailableError as e:  # OpenVINO's own crash, caught by the child-process probe (exit 5)
        assert precision == "int8" and "OpenVINO crashed" in str(e) and not (tmp_path / precision).exists()
        pytest.skip(f"OpenVINO cannot run NNCF int8 SHViT on this CPU: {e}")
    fid = art.manifest.fidelity
    if precision == "fp32":
        assert fid.cosine >= 0.999
    elif precision == "bf16" and bf16_problem():
        assert "cannot run bf16" in fid.skipped
    elif precision == "bf16":  # 8 mantissa bits: rounding error only
        assert fid.cosine >= 0.99
    else:
        # int8 error vs the fp32 parent. Random-init weights (nothing is downloaded in tests) leave this SHViT's
        # logits near-degenerate (~1e-5), so int8 noise weighs more than on a trained model: measured 0.91 here
        # (0.99 on other inits); a conversion that breaks the graph measures below 0.5
        assert fid.cosine >= 0.85
    x = parity_inputs({"input": (2, 3, 64, 64)}, samples=1)["random-0"]
    if fid.skipped is None:
        with edgeformer.Session(art, backend="openvino", threads=2) as s:
            assert s.run(x)["logits"].shape == (2, 10)


@pytest.mark.slow
def test_zoo_qdq_int8_that_disagrees_with_its_parent_is_flagged(shvit, tmp_path):
    # OpenVINO 2026.4's int8 path on AVX2 CPUs measured cosine ~0 against ORT running the same QDQ SHViT; whatever
    # this OpenVINO does with it, a disagreeing IR must carry the warning and an agreeing one must not
    qdq = qdq_artifact(tmp_path / "shvit-int8", shvit, shapes={"input": (1, 3, 64, 64)})
    fid = compile_openvino(qdq, OpenVinoConfig(precision="int8"), tmp_path / "ir").manifest.fidelity
    assert (fid.warning is not None) == (fid.cosine is None or fid.cosine < 0.9)  # None: NaN/Inf outputs
    if fid.warning is not None:
        assert "--nncf" in fid.warning


def test_nncf_never_calibrates_on_the_samples_edgeformer_holds_out(tiny, tmp_path):
    """bench times NNCF beside edgeformer's INT8 and checks both on the held-out samples: NNCF must not see them."""
    from edgeformer.quant import QuantConfig, open_calibration

    n = 40
    x = np.stack([np.full((3, SIDE, SIDE), i / n, np.float32) for i in range(n)])  # sample i is the constant i/n
    path = _npy(tmp_path, x)
    feeds, _ = calibration_feeds(tiny, OpenVinoConfig(precision="int8", nncf=True, calib=path, calib_size=n))
    held = open_calibration(
        path, inputs=tiny.manifest.inputs, preprocessing=tiny.manifest.preprocessing, config=QuantConfig()
    ).holdout
    ids = lambda fs: {round(float(next(iter(f.values())).ravel()[0]) * n) for f in fs}  # noqa: E731
    assert len(held) == QuantConfig().fidelity_samples and len(feeds) == n - len(held)
    assert ids(feeds).isdisjoint(ids(held)) and ids(feeds) | ids(held) == set(range(n))


def test_the_int8_probe_runs_a_good_ir_and_reports_a_failing_one(tiny, tmp_path):
    from edgeformer.runtimes.openvino import probe_in_subprocess

    ir = compile_openvino(tiny, OpenVinoConfig(precision="fp32"), tmp_path / "ir")
    feeds = {"a": {t.name: np.zeros((1, *t.shape[1:]), np.float32) for t in ir.manifest.inputs}}
    probe_in_subprocess(ir.model_path, "CPU", "f32", feeds)  # runs in a child, returns quietly
    (tmp_path / "broken.xml").write_text("<net>")
    with pytest.raises(BackendUnavailableError, match="OpenVINO failed running"):
        probe_in_subprocess(tmp_path / "broken.xml", "CPU", "f32", feeds)
