"""ORT target: ONNX Runtime's offline graph optimizer on real tiny models; the outputs load back in onnxruntime."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import edgeformer
from edgeformer.artifact import Artifact, Manifest
from edgeformer.compare import ort_runner
from edgeformer.compile.ort_optimize import OrtOptimizeConfig, check_source, compile_ort
from edgeformer.errors import BackendUnavailableError, ConfigError, DynamicShapeError, ModelFileError, OutputExistsError
from edgeformer.manifest import RuntimeSettings
from edgeformer.modelfile import sniff

from .test_openvino import IMAGE, LABELS, SIDE, qdq_artifact, tiny_model, write_artifact


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Artifact:
    return write_artifact(tmp_path_factory.mktemp("src") / "tiny", tiny_model())


def domains(art: Artifact) -> set[str]:
    return {n.domain for n in onnx.load(str(art.model_path)).graph.node}


def feeds(batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    return {"pixels": np.random.default_rng(seed).standard_normal((batch, 3, SIDE, SIDE)).astype(np.float32)}


# --- levels, and what each bakes in ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("level", "contrib", "portable"),
    [
        ("basic", set(), "portable to any ONNX runtime"),
        ("extended", {"com.microsoft"}, "with CPUExecutionProvider only"),
        ("all", {"com.microsoft", "com.microsoft.nchwc"}, "on a CPU like this one only"),
    ],
)
def test_each_level_saves_a_faithful_model_and_records_where_it_runs(tiny, tmp_path, level, contrib, portable):
    art = compile_ort(tiny, OrtOptimizeConfig(graph_optimization=level, threads=1), tmp_path / level)
    m = art.manifest
    assert (m.format, m.precision, m.main_file, m.step, m.parent_sha) == (
        "ort",
        "fp32",
        "model.onnx",
        "compile",
        tiny.sha,
    )
    assert m.preprocessing == IMAGE and m.labels == LABELS and m.inputs == tiny.manifest.inputs
    assert domains(art) - {""} == contrib and set(m.extra["contrib_domains"]) == contrib
    assert portable in m.extra["portability"]
    assert m.extra["execution_provider"] == "CPUExecutionProvider" and m.extra["threads"] == 1
    load_level = "disable" if level == "all" else "all"  # the runtime applies layout transforms for its own CPU
    assert m.runtime == RuntimeSettings(graph_optimization=load_level, providers=("CPUExecutionProvider",), threads=1)
    assert m.fidelity.cosine >= 0.99999 and "session" not in m.extra and "fidelity" not in m.extra
    with edgeformer.Session(art, threads=1) as s:  # the runtime opens it like any ONNX artifact
        got = s.run(feeds())["logits"]
    np.testing.assert_allclose(got, ort_runner(tiny.model_path)(feeds())["logits"], rtol=1e-4, atol=1e-5)


def test_the_saved_model_embeds_its_manifest(tiny, tmp_path):
    art = compile_ort(tiny, OrtOptimizeConfig(), tmp_path / "opt")
    bare = Artifact.load(art.model_path)  # the bare file, without artifact.json
    saved = Artifact.load(art.path).manifest  # JSON both ways: tuples come back as lists
    assert (bare.manifest.format, bare.manifest.labels) == ("ort", LABELS)
    assert bare.manifest.preprocessing == saved.preprocessing and saved.preprocessing.resolution == SIDE
    assert bare.manifest.extra["graph_optimization"] == "extended"


def test_ort_format_is_written_and_loads_back_in_onnxruntime(tiny, tmp_path):
    art = compile_ort(tiny, OrtOptimizeConfig(graph_optimization="all", save_ort_format=True), tmp_path / "mobile")
    path = art.path / "model.ort"
    assert sniff(path) == "ort" and {"model.onnx", "model.ort", "model.required_operators.config"} <= set(
        art.manifest.files
    )
    record = art.manifest.extra["ort_format"]
    assert record["disabled_optimizers"] == ["NchwcTransformer"]  # x86 layouts stay out of the mobile format
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], feeds())
    np.testing.assert_allclose(got, ort_runner(tiny.model_path)(feeds())["logits"], rtol=1e-4, atol=1e-5)
    assert art.manifest.fidelity.other_files["model.ort"].cosine >= 0.99999
    ops = (art.path / "model.required_operators.config").read_text()
    assert "ai.onnx;" in ops and "Softmax" in ops and str(tmp_path) not in ops  # relocatable: no temp paths


def test_fp16_keeps_float32_inputs_and_outputs(tiny, tmp_path):
    art = compile_ort(tiny, OrtOptimizeConfig(precision="fp16"), tmp_path / "fp16")
    proto = onnx.load(str(art.model_path))
    halves = [t.name for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert {"Wq", "Wk", "Wv", "Wfc"} <= set(halves)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert art.manifest.precision == "fp16" and "LayerNormalization" in art.manifest.extra["fp16"]["kept_fp32"]
    # fp16 weights and activations: ~3 significant digits, so the logits agree to well within 1e-3 in cosine
    assert art.manifest.fidelity.cosine >= 0.999


def test_int8_optimizes_a_qdq_model(tiny, tmp_path):
    qdq = qdq_artifact(tmp_path / "int8-src", tiny)
    art = compile_ort(qdq, OrtOptimizeConfig(precision="int8"), tmp_path / "int8")
    assert art.manifest.precision == "int8"
    assert art.manifest.fidelity.cosine >= 0.999  # the same Q/DQ scales, fused into int8 kernels


# --- refusals ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "precision", "error", "needle"),
    [
        (("onnx", "fp32"), "int8", ConfigError, "explicitly quantized"),
        (("onnx", "int8"), "fp32", ConfigError, "pass --precision int8"),
        (("onnx", "fp16"), "fp32", ConfigError, "would not restore"),
        (("onnx", "bf16"), "fp32", ConfigError, "takes fp32, fp16 or int8"),
        (("openvino", "fp32"), "fp32", ModelFileError, "optimizes ONNX artifacts"),
    ],
)
def test_source_that_cannot_give_the_precision_is_refused(source, precision, error, needle):
    fmt, prec = source
    art = Artifact(Path("a"), Manifest(format=fmt, precision=prec, model_name="m", main_file="m.onnx"))
    with pytest.raises(error, match=needle):
        check_source(art, precision)


@pytest.mark.parametrize(
    ("provider", "needle"),
    [
        ("CUDAExecutionProvider", "not available in this onnxruntime"),
        ("CPUExecutionProvder", "did you mean 'CPUExecutionProvider'"),
    ],
)
def test_a_provider_not_here_is_unavailable_not_replaced(tiny, tmp_path, provider, needle):
    if provider in ort.get_available_providers():
        pytest.skip(f"{provider} is available here")
    with pytest.raises(BackendUnavailableError, match=needle) as e:
        compile_ort(tiny, OrtOptimizeConfig(execution_provider=provider), tmp_path / "x")
    assert e.value.exit_code == 5 and not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"graph_optimization": "ful"}, "graph_optimization 'ful' is not one of basic, extended, all"),
        ({"precision": "bf16"}, "precision 'bf16' is not one of fp32, fp16, int8"),
        ({"threads": 0}, "threads must be a positive int"),
        ({"save_ort_format": "yes"}, "save_ort_format must be True or False"),
        ({"fidelity_samples": 0}, "fidelity_samples must be an int >= 1"),
        ({"min_cosine": -2}, "min_cosine must be a number in [-1, 1]"),
    ],
)
def test_config_rejects_invalid_values(fields, needle):
    with pytest.raises(ConfigError) as e:
        OrtOptimizeConfig(**fields)
    assert needle in str(e.value)


def test_config_is_frozen_and_defaults_to_the_portable_level():
    cfg = OrtOptimizeConfig()
    assert cfg.graph_optimization == "extended"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.threads = 2  # type: ignore[misc]


def test_existing_output_is_refused_and_the_input_is_never_the_output(tiny, tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        compile_ort(tiny, OrtOptimizeConfig(), tmp_path / "taken")
    with pytest.raises(OutputExistsError, match="overlaps the input"):
        compile_ort(tiny, OrtOptimizeConfig(), tiny.path, overwrite=True)
    assert Artifact.load(tiny.path).sha == tiny.sha


def test_symbolic_sides_without_a_recorded_resolution_skip_fidelity_not_the_build(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("ReduceMean", ["r", "axes"], ["y"], keepdims=0),
        ],
        "sides",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [
            numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "W"),
            numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    onnx.save(model, tmp_path / "sides.onnx")
    src = Artifact.load(tmp_path / "sides.onnx")  # from elsewhere: no preprocessing recorded
    art = compile_ort(src, OrtOptimizeConfig(), tmp_path / "opt")
    assert "--resolution N" in art.manifest.fidelity.skipped
    with pytest.raises(DynamicShapeError, match="records no resolution"):
        compile_ort(src, OrtOptimizeConfig(min_cosine=0.999), tmp_path / "gated")
    assert not (tmp_path / "gated").exists()
