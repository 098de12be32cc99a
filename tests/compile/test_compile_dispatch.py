"""The compile dispatcher: one table checks target, precision and options, picks the output, checks availability."""

from __future__ import annotations

import shutil
import subprocess
import sys

import onnx
import pytest

import edgeformer
from edgeformer.artifact import Artifact
from edgeformer.compile import targets as dispatch
from edgeformer.compile.ort_optimize import OrtOptimizeConfig
from edgeformer.compile.targets import (
    TARGETS,
    Target,
    build_config,
    default_out,
    input_paths,
    target_unavailable,
    targets_available,
    targets_help,
)
from edgeformer.errors import BackendUnavailableError, ConfigError, OutputExistsError
from edgeformer.runtimes import tensorrt as trt_runtime

from .test_openvino import tiny_model, write_artifact


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Artifact:
    return write_artifact(tmp_path_factory.mktemp("src") / "tiny", tiny_model())


# --- the table ---------------------------------------------------------------------------------------------
def test_the_table_names_every_target_with_importable_configs_where_present():
    assert set(TARGETS) == {"tensorrt", "coreml", "openvino", "ort"}
    assert TARGETS["tensorrt"][:4] == (
        "edgeformer.compile.tensorrt:compile_tensorrt",
        ("fp32", "fp16", "int8"),
        "tensorrt",
        "NVIDIA GPU + CUDA driver (Linux/Windows)",
    )
    for name, t in TARGETS.items():
        assert t.entry.endswith(f":compile_{name}") and t.precisions[0] == "fp32"
        assert t.config.partition(":")[0] == t.entry.partition(":")[0]  # config lives beside its compile function


def test_help_text_comes_from_the_table():
    text = targets_help()
    for name, t in TARGETS.items():
        assert f"{name}: {', '.join(t.precisions)}" in text
    assert "pip install 'edgeformer[openvino]'" in text


def test_targets_available_agrees_with_each_target():
    found = targets_available()
    assert set(found) == set(TARGETS)
    assert found["ort"] is None and found["openvino"] is None  # both are installed in the test environment
    trt_reason = trt_runtime.available()
    assert (found["tensorrt"] is None) == (trt_reason is None)
    if trt_reason:
        assert trt_reason in found["tensorrt"]


def test_a_target_whose_module_is_missing_names_its_extra(monkeypatch):
    row = Target("edgeformer.export.no_such_target:compile_fake", ("fp32",), "fake", "a fake device", "x:y")
    monkeypatch.setitem(TARGETS, "fake", row)
    reason = target_unavailable("fake")
    assert "edgeformer.export.no_such_target cannot be imported" in reason
    assert "pip install 'edgeformer[fake]'" in reason
    with pytest.raises(BackendUnavailableError, match="--format fake cannot run here") as e:
        build_config("fake")
    assert e.value.exit_code == 5


# --- validation before any work -------------------------------------------------------------------------------
def test_unknown_target_suggests_the_close_one(tiny):
    with pytest.raises(ConfigError, match="did you mean 'openvino'") as e:
        edgeformer.compile(tiny, target="openvno")
    assert e.value.exit_code == 2


def test_unsupported_precision_lists_the_supported_ones(tiny):
    with pytest.raises(ConfigError, match="does not support --precision bf16; it supports fp32, fp16, int8"):
        edgeformer.compile(tiny, target="ort", precision="bf16")


def test_unknown_option_is_an_error_never_dropped(tiny):
    with pytest.raises(ConfigError, match="'graph_optimisation'; did you mean 'graph_optimization'"):
        edgeformer.compile(tiny, target="ort", graph_optimisation="all")
    with pytest.raises(ConfigError, match="'nnfc'; did you mean 'nncf'"):
        edgeformer.compile(tiny, target="openvino", precision="int8", nnfc=True)


def test_options_are_checked_by_the_targets_config():
    assert build_config("ort", "fp16", threads=2) == OrtOptimizeConfig(precision="fp16", threads=2)
    assert build_config("ort").precision == "fp32"
    with pytest.raises(ConfigError, match="threads must be a positive int"):
        build_config("ort", threads=-1)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"config": OrtOptimizeConfig(), "threads": 2}, "not both"),
        ({"config": OrtOptimizeConfig(precision="fp16"), "precision": "fp32"}, "differs from config.precision"),
        ({"config": object()}, r"takes config=OrtOptimizeConfig\(...\), got object"),
    ],
)
def test_config_and_keywords_do_not_mix(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        build_config("ort", **kwargs)


def test_a_config_object_is_used_as_given(tiny, tmp_path):
    art = edgeformer.compile(tiny, target="ort", config=OrtOptimizeConfig(precision="fp16"), out=tmp_path / "o")
    assert art.manifest.precision == "fp16" and art.manifest.step_config["precision"] == "fp16"


def test_usage_errors_come_before_the_availability_check(tiny):
    # tensorrt cannot run on most CI machines; a typo must still be reported as a typo (exit 2)
    with pytest.raises(ConfigError, match="did you mean 'max_batch'"):
        edgeformer.compile(tiny, target="tensorrt", precision="fp16", max_bach=4)


def test_an_unavailable_target_exits_5_with_the_reason(tiny, tmp_path):
    reason = trt_runtime.available()
    if reason is None:
        pytest.skip("TensorRT can run here")
    with pytest.raises(BackendUnavailableError) as e:
        edgeformer.compile(tiny, target="tensorrt", precision="fp16", out=tmp_path / "engine")
    assert e.value.exit_code == 5 and reason in str(e.value) and "--format tensorrt cannot run here" in str(e.value)
    assert not (tmp_path / "engine").exists()


# --- output path -----------------------------------------------------------------------------------------------
def test_default_out_sits_beside_the_artifact_folder(tiny, tmp_path):
    src = tmp_path / "my model"
    shutil.copytree(tiny.path, src)
    art = edgeformer.compile(src, target="ort", precision="fp16")
    assert art.path == tmp_path / "my model-ort-fp16" and art.manifest.format == "ort"


def test_default_out_of_a_bare_model_file_uses_its_stem(tmp_path):
    onnx.save(tiny_model(), tmp_path / "net.onnx")
    art = edgeformer.compile(tmp_path / "net.onnx", target="ort")
    assert art.path == tmp_path / "net-ort-fp32"
    assert input_paths(Artifact.load(tmp_path / "net.onnx")) == [tmp_path / "net.onnx"]
    assert default_out(tmp_path / "net.onnx", "openvino", "int8") == tmp_path / "net-openvino-int8"


def test_existing_output_is_refused_unless_overwrite(tiny, tmp_path):
    first = edgeformer.compile(tiny, target="ort", out=tmp_path / "o")
    with pytest.raises(OutputExistsError, match="--overwrite") as e:
        edgeformer.compile(tiny, target="ort", out=tmp_path / "o")
    assert e.value.exit_code == 2
    again = edgeformer.compile(tiny, target="ort", out=tmp_path / "o", overwrite=True, graph_optimization="basic")
    assert again.manifest.extra["graph_optimization"] == "basic" != first.manifest.extra["graph_optimization"]


def test_the_input_is_never_the_output(tiny):
    with pytest.raises(OutputExistsError, match="overlaps the input"):
        edgeformer.compile(tiny, target="ort", out=tiny.path, overwrite=True)
    with pytest.raises(OutputExistsError, match="overlaps the input"):
        edgeformer.compile(tiny, target="ort", out=tiny.path / "inside", overwrite=True)


def test_dispatch_reaches_openvino(tiny, tmp_path):
    art = dispatch.compile(tiny, target="openvino", out=tmp_path / "ir", check_fidelity=False)
    assert (art.manifest.format, art.manifest.main_file) == ("openvino", "model.xml")


def test_importing_the_dispatcher_imports_no_vendor_sdk():
    code = (
        "import sys, edgeformer.compile.targets as c; c.targets_help(); "
        "print(sorted(m for m in ('openvino', 'tensorrt', 'coremltools', 'nncf') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
