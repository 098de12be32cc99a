"""TensorRT target: everything that runs without a GPU is tested for real here; engine builds skip without one.

The models are small real ONNX graphs (onnx.helper, no torch) written as real artifacts with the real
ArtifactWriter; ORT runs them on CPU wherever a reference is needed.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib.util
import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgeformer
from edgeformer.artifact import Artifact, ArtifactWriter, Manifest, TensorSpec
from edgeformer.compare import ort_runner
from edgeformer.compile import tensorrt as trt_export
from edgeformer.compile.tensorrt import (
    BuildPlan,
    InputProfile,
    TensorRtConfig,
    build_plan,
    check_source,
    compile_tensorrt,
    describe_parser_errors,
    optimization_profile,
    qdq_problems,
    to_fp16,
)
from edgeformer.compile.tensorrt_cache import quarantine, write_bytes_atomic
from edgeformer.errors import (
    BackendUnavailableError,
    ConfigError,
    DynamicShapeError,
    InputMismatchError,
    ModelFileError,
    OutputExistsError,
)
from edgeformer.export.parity import compare_on, parity_inputs
from edgeformer.inputs import ImageInput
from edgeformer.modelfile import graph_io
from edgeformer.runtimes import get_backend
from edgeformer.runtimes import tensorrt as trt_runtime
from edgeformer.runtimes.tensorrt import (
    NO_TENSORRT,
    check_engine_compatible,
    describe_import_failure,
    engine_mismatches,
    gpu_reason,
    trt_major,
)

REASON = trt_runtime.available()
needs_tensorrt = pytest.mark.skipif(REASON is not None, reason=f"TensorRT cannot run here: {REASON}")
IMAGE = ImageInput(resolution=8, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0)


# --- real tiny models and artifacts -------------------------------------------------------------------
def image_model(batch: int | str = "batch", side: int | str = 8) -> onnx.ModelProto:
    """pixels (N, 3, S, S) -> conv 3x3 -> relu -> spatial mean -> linear -> logits (N, 5)."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["pixels", "W"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("ReduceMean", ["r", "axes"], ["p"], keepdims=0, name="pool"),
        helper.make_node("MatMul", ["p", "M"], ["m"], name="fc"),
        helper.make_node("Add", ["m", "B"], ["logits"], name="bias"),
    ]
    inits = [
        numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.5).astype(np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal((4, 5)).astype(np.float32), "M"),
        numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "B"),
        numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [batch, 3, side, side])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 5])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10  # what onnxruntime 1.20+ reads
    onnx.checker.check_model(model, full_check=True)
    return model


def qdq_model(zero_point: int, zp_type: int = TensorProto.INT8) -> onnx.ModelProto:
    """x (N, 4) -> QuantizeLinear/DequantizeLinear (scale 0.05, ``zero_point``) -> MatMul -> y (N, 2)."""
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q_x"),
        helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="dq_x"),
        helper.make_node("MatMul", ["xd", "W"], ["y"], name="fc"),
    ]
    inits = [
        numpy_helper.from_array(np.array(0.05, dtype=np.float32), "s"),
        helper.make_tensor("zp", zp_type, [], [zero_point]),
        numpy_helper.from_array(np.ones((4, 2), dtype=np.float32), "W"),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    return model


def write_artifact(dest: Path, model: onnx.ModelProto, precision: str = "fp32") -> Artifact:
    inputs, outputs = graph_io(model)
    with ArtifactWriter(dest) as w:
        onnx.save(model, w.dir / "model.onnx")
        return w.commit(
            Manifest(
                format="onnx",
                precision=precision,
                model_name="tiny",
                main_file="model.onnx",
                inputs=inputs,
                outputs=outputs,
                preprocessing=IMAGE,
                labels=tuple("abcde"),
            )
        )


def spec(shape: tuple, name: str = "pixels") -> TensorSpec:
    return TensorSpec(name=name, shape=shape, dtype="float32")


def in_memory(fmt: str, precision: str) -> Artifact:
    """A manifest-only artifact for the pure source checks (they read nothing but the manifest)."""
    return Artifact(Path("art"), Manifest(format=fmt, precision=precision, model_name="m", main_file="model.onnx"))


# --- config -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"precision": "int4"}, "precision 'int4' is not one of fp32, fp16, int8"),
        ({"min_batch": 4, "opt_batch": 2, "max_batch": 8}, "1 <= min_batch <= opt_batch <= max_batch, got 4 / 2 / 8"),
        ({"min_batch": 1, "opt_batch": 9, "max_batch": 8}, "got 1 / 9 / 8"),
        ({"min_batch": 0}, "got 0 / 1 / 8"),
        ({"workspace_mb": 0}, "workspace_mb must be > 0, got 0"),
        ({"workspace_mb": -64}, "workspace_mb must be > 0, got -64"),
        ({"max_batch": True}, "max_batch must be an int, got True"),
        ({"builder_optimization_level": 6}, "builder_optimization_level must be 0..5, got 6"),
        ({"resolution": 0}, "resolution must be a positive int, got 0"),
        ({"min_cosine": 1.5}, "min_cosine must be a number in [-1, 1]"),
    ],
)
def test_config_rejects_invalid_values(fields, needle):
    with pytest.raises(ConfigError) as e:
        TensorRtConfig(**fields)
    assert needle in str(e.value)
    assert e.value.exit_code == 2


def test_config_lists_every_problem_at_once():
    with pytest.raises(ConfigError) as e:
        TensorRtConfig(precision="fp64", workspace_mb=0, min_batch=3, opt_batch=2)
    text = str(e.value)
    assert "precision 'fp64'" in text and "workspace_mb must be > 0" in text and "got 3 / 2 / 8" in text


def test_config_is_frozen_and_keeps_a_str_cache_path_as_path(tmp_path):
    cfg = TensorRtConfig(timing_cache=str(tmp_path / "trt.cache"))
    assert cfg.timing_cache == tmp_path / "trt.cache"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.precision = "fp32"  # type: ignore[misc]
    with pytest.raises(ConfigError, match="timing_cache must be a file path"):
        TensorRtConfig(timing_cache=tmp_path)


# --- optimization profile -----------------------------------------------------------------------------
def test_profile_of_a_static_input_is_its_shape():
    (p,) = optimization_profile([spec((1, 3, 8, 8))], TensorRtConfig())
    assert p == InputProfile(name="pixels", min=(1, 3, 8, 8), opt=(1, 3, 8, 8), max=(1, 3, 8, 8), dynamic=False)


def test_profile_spans_min_opt_max_batch_from_a_real_artifact(tmp_path):
    art = write_artifact(tmp_path / "dyn", image_model())
    (p,) = optimization_profile(art.manifest.inputs, TensorRtConfig(min_batch=2, opt_batch=4, max_batch=16))
    assert (p.min, p.opt, p.max, p.dynamic) == ((2, 3, 8, 8), (4, 3, 8, 8), (16, 3, 8, 8), True)


def test_profile_shares_the_batch_across_inputs():
    inputs = [spec(("batch", 3, 8, 8), "image"), spec(("batch", 1), "scale")]
    a, b = optimization_profile(inputs, TensorRtConfig(max_batch=4))
    assert (a.max, b.max, b.min) == ((4, 3, 8, 8), (4, 1), (1, 1))


def test_profile_refuses_symbolic_image_sides_naming_the_dims_and_the_flag():
    with pytest.raises(DynamicShapeError) as e:
        optimization_profile([spec(("batch", 3, "height", "width"))], TensorRtConfig())
    text = str(e.value)
    assert "'pixels'" in text and "height (axis 2)" in text and "width (axis 3)" in text
    assert "--resolution" in text and "every dim but the batch" in text
    assert e.value.exit_code == 3


def test_profile_takes_symbolic_sides_from_resolution():
    (p,) = optimization_profile([spec(("batch", 3, "h", "w"))], TensorRtConfig(resolution=16, max_batch=2))
    assert (p.min, p.max) == ((1, 3, 16, 16), (2, 3, 16, 16))


def test_profile_refuses_a_symbolic_non_spatial_dim():
    with pytest.raises(DynamicShapeError, match=r"samples \(axis 1\).*re-export with a static shape"):
        optimization_profile([spec(("batch", "samples"), "waveform")], TensorRtConfig(resolution=None))


def test_profile_refuses_a_fixed_batch_outside_the_requested_range():
    (p,) = optimization_profile([spec((4, 3, 8, 8))], TensorRtConfig())  # 4 lies in the default 1..8
    assert p.max == (4, 3, 8, 8)
    with pytest.raises(ConfigError, match=r"fixed batch of 4, outside --min-batch 1 \.\. --max-batch 2"):
        optimization_profile([spec((4, 3, 8, 8))], TensorRtConfig(max_batch=2))


def test_profile_refuses_a_resolution_the_model_cannot_use():
    with pytest.raises(ConfigError, match="--resolution 16 applies to symbolic image sides"):
        optimization_profile([spec(("batch", 3, 8, 8))], TensorRtConfig(resolution=16))


# --- TensorRT 10 vs 11 ----------------------------------------------------------------------------------
def plan(major: int, typing: str, flags: tuple[str, ...] = (), fp16: bool = False) -> BuildPlan:
    return BuildPlan(major=major, typing=typing, builder_flags=flags, convert_to_fp16=fp16)


@pytest.mark.parametrize(
    ("version", "precision", "source", "expected"),
    [
        ("10.8.0.43", "fp32", "fp32", plan(10, "weak")),
        ("10.8.0.43", "fp16", "fp32", plan(10, "weak", ("FP16",))),
        ("10.0.0b6", "int8", "int8", plan(10, "weak", ("INT8",))),
        ("11.4.0.106", "fp32", "fp32", plan(11, "strong")),
        ("11.4.0.106", "fp16", "fp32", plan(11, "strong", fp16=True)),
        ("11.0.0", "fp16", "fp16", plan(11, "strong")),
        ("11.4.0.106", "int8", "int8", plan(11, "strong")),
        ("12.0.1", "int8", "mixed", plan(12, "strong")),
    ],
)
def test_build_plan_picks_flags_on_10_and_typed_onnx_on_11(version, precision, source, expected):
    assert build_plan(version, precision, source) == expected


def test_build_plan_refuses_tensorrt_older_than_10():
    with pytest.raises(BackendUnavailableError, match=r"needs TensorRT >= 10, this is 8\.6\.1") as e:
        build_plan("8.6.1", "fp16", "fp32")
    assert e.value.exit_code == 5


@pytest.mark.parametrize(("version", "major"), [("10.8.0.43", 10), ("11.4.0.106", 11), ("10.0.0b6", 10)])
def test_trt_major_reads_the_version_string(version, major):
    assert trt_major(version) == major


def test_trt_major_refuses_an_unreadable_version():
    with pytest.raises(BackendUnavailableError, match="cannot read the TensorRT version 'dev'"):
        trt_major("dev")


# --- source precision and QDQ -----------------------------------------------------------------------------
def test_int8_needs_a_quantized_artifact_and_names_the_command():
    with pytest.raises(ConfigError, match=r"edgeformer quantize art --preset tensorrt.*--precision int8"):
        check_source(in_memory("onnx", "fp32"), "int8")


@pytest.mark.parametrize(("source", "precision"), [("int8", "fp16"), ("mixed", "fp32"), ("fp16", "fp32")])
def test_source_precision_that_the_engine_would_misreport_is_refused(source, precision):
    with pytest.raises(ConfigError):
        check_source(in_memory("onnx", source), precision)


@pytest.mark.parametrize(
    ("source", "precision"), [("fp32", "fp32"), ("fp32", "fp16"), ("fp16", "fp16"), ("int8", "int8"), ("mixed", "int8")]
)
def test_source_precision_that_can_be_built_passes(source, precision):
    check_source(in_memory("onnx", source), precision)


def test_only_onnx_artifacts_compile():
    with pytest.raises(ModelFileError, match="TensorRT compiles ONNX artifacts, this one is 'openvino'"):
        check_source(in_memory("openvino", "fp32"), "fp32")


def test_qdq_check_accepts_symmetric_int8_and_names_asymmetric_nodes():
    assert qdq_problems(qdq_model(0)) == []
    assert qdq_problems(qdq_model(3)) == [
        "q_x (QuantizeLinear) has a non-zero zero point",
        "dq_x (DequantizeLinear) has a non-zero zero point",
    ]
    assert qdq_problems(qdq_model(128, TensorProto.UINT8))[0] == "q_x (QuantizeLinear) uses uint8"
    # the models are real: ORT runs them, so the check looks at graphs a quantizer could write
    ort_runner_fn = ort_runner_for(qdq_model(3))
    assert ort_runner_fn({"x": np.ones((2, 4), np.float32)})["y"].shape == (2, 2)


def ort_runner_for(model: onnx.ModelProto):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda feeds: {o.name: v for o, v in zip(sess.get_outputs(), sess.run(None, dict(feeds)), strict=True)}


# --- compile on a machine without TensorRT ------------------------------------------------------------------
def test_compile_checks_arguments_before_looking_for_a_gpu(tmp_path):
    fp32 = write_artifact(tmp_path / "fp32", image_model())
    with pytest.raises(ConfigError, match="QDQ"):
        compile_tensorrt(fp32, TensorRtConfig(precision="int8"), tmp_path / "out")
    sym = write_artifact(tmp_path / "sym", image_model(side="side"))
    with pytest.raises(DynamicShapeError, match="--resolution"):
        compile_tensorrt(sym, TensorRtConfig(), tmp_path / "out")
    (tmp_path / "taken").mkdir()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        compile_tensorrt(fp32, TensorRtConfig(), tmp_path / "taken")
    with pytest.raises(ConfigError, match="takes a TensorRtConfig"):
        compile_tensorrt(fp32, {"precision": "fp16"}, tmp_path / "out")  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(REASON is None, reason="TensorRT is usable here")
def test_compile_without_tensorrt_is_exit_5_with_the_reason_and_writes_nothing(tmp_path):
    art = write_artifact(tmp_path / "src", image_model())
    with pytest.raises(BackendUnavailableError) as e:
        compile_tensorrt(art, TensorRtConfig(precision="fp16", max_batch=4), tmp_path / "engine")
    assert str(e.value) == f"TensorRT compile cannot run here: {REASON}"
    assert e.value.exit_code == 5
    assert not (tmp_path / "engine").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]  # no temp folder left behind


# --- availability -------------------------------------------------------------------------------------------
def test_gpu_reason_names_each_missing_piece():
    assert gpu_reason(platform="linux", device_nodes=False, nvidia_smi=None, libcuda=False) == (
        "TensorRT needs an NVIDIA GPU with a CUDA driver; none found "
        "(no /dev/nvidia0, nvidia-smi missing, libcuda not loadable)"
    )
    assert gpu_reason(platform="linux", device_nodes=False, nvidia_smi="/usr/bin/nvidia-smi", libcuda=True) == (
        "TensorRT needs an NVIDIA GPU with a CUDA driver; none found (no /dev/nvidia0)"
    )
    no_driver = gpu_reason(platform="linux", device_nodes=True, nvidia_smi=None, libcuda=False)
    assert no_driver is not None and "install the NVIDIA driver" in no_driver
    assert "macOS" in gpu_reason(platform="darwin", device_nodes=False, nvidia_smi=None, libcuda=False)
    assert gpu_reason(platform="linux", device_nodes=True, nvidia_smi=None, libcuda=True) is None
    assert gpu_reason(platform="win32", device_nodes=False, nvidia_smi=None, libcuda=True) is None


def test_import_failure_of_the_bindings_names_the_missing_library():
    err = ImportError("libnvonnxparser.so.10: cannot open shared object file: No such file or directory")
    assert describe_import_failure(err) == (
        "the tensorrt Python bindings are installed but cannot load libnvonnxparser.so.10: the TensorRT libraries "
        "are missing. Install the full TensorRT (pip install 'edgeformer[tensorrt]' where NVIDIA's library wheel "
        "can be downloaded, or NVIDIA's tar/deb packages) and put its lib folder on the library path"
    )
    assert describe_import_failure(ImportError("bad magic")) == (
        "tensorrt is installed but fails to import (bad magic): reinstall it with pip install 'edgeformer[tensorrt]'"
    )


def _libcuda_loadable() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None
    or Path("/dev/nvidia0").exists()
    or shutil.which("nvidia-smi") is not None
    or _libcuda_loadable()
    or not sys.platform.startswith("linux"),
    reason="this machine has part of the NVIDIA stack; the exact message differs",
)
def test_available_gives_the_exact_reason_on_a_cpu_machine_without_tensorrt(tmp_path):
    expected = (
        "TensorRT needs an NVIDIA GPU with a CUDA driver; none found (no /dev/nvidia0, nvidia-smi missing, libcuda "
        "not loadable); the tensorrt package is not installed: pip install 'edgeformer[tensorrt]' (NVIDIA's "
        "TensorRT wheels and cuda-python; the TensorRT library wheel downloads from NVIDIA's servers, which must "
        "be reachable from this machine)"
    )
    assert trt_runtime.available() == expected
    assert trt_export.available() == expected
    assert get_backend("tensorrt").available() == expected
    with pytest.raises(BackendUnavailableError) as e:
        trt_runtime.import_tensorrt()
    assert str(e.value) == NO_TENSORRT and e.value.exit_code == 5
    # the public Session refuses with the same reason, exit 5, before reading the model
    art = write_artifact(tmp_path / "src", image_model())
    with pytest.raises(BackendUnavailableError) as e:
        edgeformer.Session(art, backend="tensorrt")
    assert str(e.value) == f"backend 'tensorrt' cannot run here: {expected}"
    assert e.value.exit_code == 5


def test_importing_the_tensorrt_modules_imports_neither_tensorrt_nor_cuda_nor_torch():
    # a meta-path finder records every *attempt*, so even an import guarded by try/except would be caught
    code = textwrap.dedent(
        """
        import sys
        attempts = []
        class Recorder:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorrt", "cuda", "torch", "pycuda"):
                    attempts.append(name)
                return None
        sys.meta_path.insert(0, Recorder())
        import edgeformer.compile.tensorrt, edgeformer.runtimes.tensorrt
        from edgeformer.runtimes import get_backend
        get_backend("tensorrt")
        print(attempts)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# --- engine compatibility -----------------------------------------------------------------------------------
BUILT = {"tensorrt": "10.8.0.43", "gpu": "NVIDIA L4", "compute_capability": "8.9", "cuda_driver": "12.4"}


def test_engine_on_the_machine_that_built_it_is_compatible():
    assert engine_mismatches(BUILT, {**BUILT, "cuda_driver": "12.6"}) == []  # a newer driver is fine


def test_engine_for_another_gpu_or_tensorrt_lists_every_mismatch():
    here = {"tensorrt": "10.9.0.34", "gpu": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}
    assert engine_mismatches(BUILT, here) == [
        "built for TensorRT 10.8.0.43, this machine has 10.9.0.34",
        "built for GPU NVIDIA L4, this machine has NVIDIA A100-SXM4-80GB",
        "built for compute capability 8.9, this machine has 8.0",
    ]
    assert engine_mismatches({}, here)[0] == "the manifest does not record the TensorRT it was built for"


def test_incompatible_engine_is_refused_with_exit_5_and_the_rebuild_command():
    with pytest.raises(BackendUnavailableError) as e:
        check_engine_compatible(BUILT, {**BUILT, "tensorrt": "11.4.0.106"}, "build/l1-trt")
    text = str(e.value)
    assert text.startswith("build/l1-trt: this TensorRT engine cannot run here: built for TensorRT 10.8.0.43")
    assert "rebuild with `edgeformer compile PARENT_ONNX_ARTIFACT --format tensorrt` on this machine" in text
    assert e.value.exit_code == 5
    check_engine_compatible(BUILT, BUILT, "same machine")  # no error


# --- the TensorRT 11 fp16 path: the ONNX itself is cast -------------------------------------------------------
def test_fp16_conversion_keeps_float32_io_and_fragile_ops_and_stays_close(tmp_path):
    model = image_model()
    half = to_fp16(model)
    onnx.checker.check_model(half, full_check=True)
    inputs, outputs = graph_io(half)
    assert [t.dtype for t in (*inputs, *outputs)] == ["float32", "float32"]
    floats = {t.name: t.data_type for t in half.graph.initializer if t.name in ("W", "M", "B")}
    assert set(floats.values()) == {TensorProto.FLOAT16}
    pool = next(n for n in half.graph.node if n.op_type == "ReduceMean")
    cast_in = next(n for n in half.graph.node if pool.input[0] in n.output)
    assert cast_in.op_type == "Cast" and helper.get_attribute_value(cast_in.attribute[0]) == TensorProto.FLOAT
    assert {t.data_type for t in model.graph.initializer if t.name != "axes"} == {TensorProto.FLOAT}  # input untouched
    onnx.save(half, tmp_path / "half.onnx")
    feeds = parity_inputs({"pixels": (4, 3, 8, 8)}, kind="image", samples=3, seed=0)
    report = compare_on(ort_runner_for(model), ort_runner(tmp_path / "half.onnx"), feeds).to_dict()
    assert report["samples"] == 4 and report["problem"] is None  # random-0..2 and natural
    assert report["outputs"]["logits"]["cosine"] > 0.999
    assert report["outputs"]["logits"]["top1_agreement"] == 1.0
    assert 0 < report["outputs"]["logits"]["max_abs"] < 0.05


def test_fidelity_reports_a_wrong_model():
    ref = ort_runner_for(image_model())

    def flipped(feeds):
        return {"logits": -ref(feeds)["logits"]}

    feeds = parity_inputs({"pixels": (8, 3, 8, 8)}, kind="image", samples=2, seed=1)
    report = compare_on(ref, flipped, feeds).to_dict()
    assert report["cosine"] == pytest.approx(-1.0)
    assert report["outputs"]["logits"]["top1_agreement"] < 0.5
    missing = compare_on(ref, lambda f: {}, feeds)
    assert missing.to_dict()["outputs"]["logits"]["problem"] == "missing from the candidate's outputs"
    assert missing.meets(min_cosine=-1.0)  # the loosest gate still fails


def test_names_moved_out_of_the_module_stay_importable_from_it():
    assert (trt_export.quarantine, trt_export.write_bytes_atomic) == (quarantine, write_bytes_atomic)


# --- timing cache files and parser messages -------------------------------------------------------------------
def test_cache_writes_are_atomic_and_a_corrupt_cache_is_quarantined(tmp_path, caplog):
    path = tmp_path / "caches" / "trt.cache"
    path.parent.mkdir()
    write_bytes_atomic(path, b"first")
    write_bytes_atomic(path, b"second")
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["trt.cache"]  # no temp file left
    with caplog.at_level(logging.WARNING):
        moved = quarantine(path, "TensorRT could not read it")
    assert not path.exists() and moved.read_bytes() == b"second" and moved.name.startswith("trt.cache.corrupt-")
    assert "TensorRT could not read it" in caplog.text and str(moved) in caplog.text


def test_parser_errors_list_each_node_and_op():
    text = describe_parser_errors([("stft_0", "STFT", "No importer registered for op: STFT"), ("", "", "bad graph")])
    assert text == "node stft_0 (STFT): No importer registered for op: STFT; node ? (?): bad graph"


# --- with a GPU and TensorRT -----------------------------------------------------------------------------------
@needs_tensorrt
@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_builds_runs_and_matches_onnx(tmp_path, precision):
    src = write_artifact(tmp_path / "src", image_model())
    cache = tmp_path / "cache" / "trt.cache"
    cfg = TensorRtConfig(precision=precision, min_batch=1, opt_batch=2, max_batch=4, timing_cache=cache)
    art = compile_tensorrt(src, cfg, tmp_path / "engine")
    m = Artifact.load(art.path).manifest
    assert (m.format, m.precision, m.parent_sha, m.step) == ("tensorrt", precision, src.sha, "compile")
    assert {"tensorrt", "gpu", "compute_capability", "cuda_driver", "cuda_runtime"} <= set(m.extra)
    assert m.extra["profile"]["pixels"]["max"] == [4, 3, 8, 8]
    assert m.fidelity.outputs["logits"].cosine > (0.9999 if precision == "fp32" else 0.99)
    assert cache.is_file() and cache.stat().st_size > 0
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    with edgeformer.Session(art, backend="tensorrt") as s:
        assert s.provider == "cuda:0" and s.inputs[0].shape == ("batch", 3, 8, 8)
        got = s.run({"pixels": x})["logits"]
        want = ort_runner(src.model_path)({"pixels": x})["logits"]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 if precision == "fp32" else 5e-2)
        with pytest.raises(InputMismatchError, match="outside the engine's profile"):
            s.run({"pixels": np.zeros((5, 3, 8, 8), np.float32)})
    foreign = Artifact(art.path, dataclasses.replace(art.manifest, extra={**art.manifest.extra, "gpu": "Other"}))
    with pytest.raises(BackendUnavailableError, match="rebuild with `edgeformer compile"):
        edgeformer.Session(foreign, backend="tensorrt")
    # built again (not copied from the step cache): reuses and re-saves the shared timing cache
    again = compile_tensorrt(src, cfg, tmp_path / "engine2", cache=None)
    assert again.manifest.fidelity.cosine == pytest.approx(m.fidelity.cosine, abs=0.01)
