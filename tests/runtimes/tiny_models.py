"""Small real ONNX models (onnx.helper, no torch) wrapped as real artifacts with the real ArtifactWriter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeformer.artifact import Artifact, ArtifactWriter, Manifest, TensorSpec
from edgeformer.inputs import AudioInput, ImageInput

# columns: red, green, blue, "dark" (negative brightness), constant; a red image must come out "red"
COLOR_W = np.array([[1, 0, 0, -1, 0], [0, 1, 0, -1, 0], [0, 0, 1, -1, 0]], dtype=np.float32)
COLOR_B = np.array([0, 0, 0, 0, 0.5], dtype=np.float32)
COLOR_LABELS = ("red", "green", "blue", "dark", "constant")


def make_model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10  # what onnxruntime 1.20+ reads; onnx's newest IR is ahead of ORT
    onnx.checker.check_model(model, full_check=True)
    return model


def color_model(batch: int | str = "batch", resolution: int | str = 32, fp16: bool = False) -> onnx.ModelProto:
    """pixels (N, 3, R, R) -> channel means -> linear layer -> logits (N, 5); ``fp16``: float16 input."""
    cast = [helper.make_node("Cast", ["pixels"], ["pixels32"], to=TensorProto.FLOAT)] if fp16 else []
    return make_model(
        [
            *cast,
            helper.make_node("GlobalAveragePool", ["pixels32" if fp16 else "pixels"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["mm"]),
            helper.make_node("Add", ["mm", "B"], ["logits"]),
        ],
        [
            helper.make_tensor_value_info(
                "pixels", TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT, [batch, 3, resolution, resolution]
            )
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 5])],
        [numpy_helper.from_array(COLOR_W, "W"), numpy_helper.from_array(COLOR_B, "B")],
    )


def color_reference(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=(2, 3)) @ COLOR_W + COLOR_B


def two_input_model() -> onnx.ModelProto:
    """image (N, 3, 8, 8) float32 and scale (N, 1) float32 -> out = mean(image) * scale."""
    return make_model(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("ReduceMean", ["flat", "axes"], ["m"], keepdims=1),
            helper.make_node("Mul", ["m", "scale"], ["out"]),
        ],
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 8, 8]),
            helper.make_tensor_value_info("scale", TensorProto.FLOAT, ["batch", 1]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )


def write_artifact(
    dest: Path,
    model: onnx.ModelProto,
    *,
    preprocessing: ImageInput | AudioInput | None = None,
    labels: tuple[str, ...] | None = None,
    fmt: str = "onnx",
    model_bytes: bytes | None = None,
) -> Artifact:
    """Wrap ``model`` (or raw ``model_bytes``) as an artifact folder with the real ArtifactWriter."""
    with ArtifactWriter(dest) as w:
        if model_bytes is None:
            onnx.save(model, w.dir / "model.onnx")
        else:
            (w.dir / "model.onnx").write_bytes(model_bytes)
        io = model.graph if model is not None else None
        return w.commit(
            Manifest(
                format=fmt,
                precision="fp32",
                model_name="tiny",
                main_file="model.onnx",
                inputs=tuple(_spec(v) for v in io.input) if io else (),
                outputs=tuple(_spec(v) for v in io.output) if io else (),
                preprocessing=preprocessing,
                labels=labels,
            )
        )


def _spec(v: onnx.ValueInfoProto) -> TensorSpec:
    dims = tuple(d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim)
    return TensorSpec(name=v.name, shape=dims, dtype="float32")
