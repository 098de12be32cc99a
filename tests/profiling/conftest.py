"""Small real ONNX artifacts for the profiling tests, built with onnx.helper (no torch, no exporter)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeformer.artifact import ArtifactWriter, Manifest, TensorSpec


def make_conv_model(shape: tuple, channels: int = 8, classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """Conv -> Relu -> Conv -> GlobalAveragePool -> Flatten -> Gemm: a tiny image classifier."""
    rng = np.random.default_rng(seed)
    cin = shape[1]

    def init(name, *dims):
        return numpy_helper.from_array((rng.standard_normal(dims) * 0.1).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="stem_conv"),
        helper.make_node("Relu", ["c1"], ["r1"], name="stem_relu"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="body_conv"),
        helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], transB=1, name="head"),
    ]
    inits = [
        init("w1", channels, cin, 3, 3),
        init("b1", channels),
        init("w2", channels, channels, 3, 3),
        init("b2", channels),
        init("wf", classes, channels),
        init("bf", classes),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [shape[0], classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def write_artifact(dest: Path, shape: tuple, name: str = "tiny_cnn", parity: dict | None = None, seed: int = 0):
    """An artifact folder around :func:`make_conv_model`, written with the real ArtifactWriter."""
    with ArtifactWriter(dest, overwrite=True) as w:
        onnx.save(make_conv_model(shape, seed=seed), w.dir / "model.onnx")
        return w.commit(
            Manifest(
                format="onnx",
                precision="fp32",
                model_name=name,
                main_file="model.onnx",
                inputs=(TensorSpec(name="x", shape=tuple(shape), dtype="float32"),),
                outputs=(TensorSpec(name="logits", shape=(shape[0], 10), dtype="float32"),),
                extra={"parity": parity} if parity is not None else {},
            )
        )


@pytest.fixture
def make_onnx():
    """``make_onnx(shape)``: the tiny classifier as an ``onnx.ModelProto``."""
    return make_conv_model


@pytest.fixture
def make_artifact():
    """``make_artifact(dest, shape, name=..., parity=...)``: write a tiny ONNX artifact."""
    return write_artifact


@pytest.fixture
def tiny_artifact(tmp_path):
    """Dynamic batch, static 32x32 spatial dims."""
    return write_artifact(tmp_path / "tiny", ("batch", 3, 32, 32))


@pytest.fixture
def spatial_dynamic_artifact(tmp_path):
    """Symbolic batch, height and width."""
    return write_artifact(tmp_path / "dyn", ("batch", 3, "height", "width"))
