"""Fixtures for the quantization tests: small real ONNX models (built with onnx.helper, run by real ORT)
and artifacts wrapping them, plus image/wav folders with the awkward formats real data has."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from edgeformer.artifact import Artifact, ArtifactWriter, Manifest
from edgeformer.inputs import AudioInput, ImageInput
from edgeformer.modelfile import embed_manifest, graph_io

RES = 16


def attention_model(
    *, dynamic: bool = False, constant_branch: bool = False, sqrt_of_input: bool = False, seed: int = 0
) -> onnx.ModelProto:
    """Stem conv, pointwise conv, LayerNorm, single-head attention (q·kᵀ, Softmax, attn·v), residual, head.

    ``constant_branch`` adds a conv with zero weights (its output is the constant bias) into the residual;
    ``sqrt_of_input`` feeds ``Sqrt(x)`` into the stem, so negative inputs give NaN activations.
    """
    rng = np.random.default_rng(seed)

    def w(name, *shape, scale=None):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        arr = rng.standard_normal(shape).astype(np.float32) * (scale or fan_in**-0.5)
        return numpy_helper.from_array(arr, name)

    c, tokens = 32, (RES // 2) ** 2
    inits = [
        w("stem.w", 16, 3, 3, 3),
        w("stem.b", 16, scale=0.1),
        w("pw.w", c, 16, 1, 1),
        w("pw.b", c, scale=0.1),
        numpy_helper.from_array(np.ones(c, np.float32), "ln.g"),
        numpy_helper.from_array(np.zeros(c, np.float32), "ln.b"),
        w("q.w", c, 16),
        w("k.w", c, 16),
        w("v.w", c, c),
        w("proj.w", c, c),
        w("head.w", 10, c),
        w("head.b", 10, scale=0.1),
        numpy_helper.from_array(np.array([1, c, tokens], np.int64), "shape3"),
        numpy_helper.from_array(np.array(0.25, np.float32), "scale"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    x = "input"
    nodes = []
    if sqrt_of_input:
        nodes.append(helper.make_node("Sqrt", ["input"], ["sqrt_in"], name="sqrt_in"))
        x = "sqrt_in"
    nodes += [
        helper.make_node("Conv", [x, "stem.w", "stem.b"], ["stem"], name="stem", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["stem"], ["stem_r"], name="stem_relu"),
        helper.make_node("Conv", ["stem_r", "pw.w", "pw.b"], ["pw"], name="pw"),
        helper.make_node("Reshape", ["pw", "shape3"], ["flat"], name="flatten"),
        helper.make_node("Transpose", ["flat"], ["tok"], name="to_tokens", perm=[0, 2, 1]),
        helper.make_node("LayerNormalization", ["tok", "ln.g", "ln.b"], ["ln"], name="ln", axis=-1),
        helper.make_node("MatMul", ["ln", "q.w"], ["q"], name="q"),
        helper.make_node("MatMul", ["ln", "k.w"], ["k"], name="k"),
        helper.make_node("MatMul", ["ln", "v.w"], ["v"], name="v"),
        helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["qk"], name="attn_qk"),
        helper.make_node("Mul", ["qk", "scale"], ["qk_s"], name="attn_scale"),
        helper.make_node("Softmax", ["qk_s"], ["attn"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["attn", "v"], ["av"], name="attn_av"),
        helper.make_node("MatMul", ["av", "proj.w"], ["proj"], name="proj"),
        helper.make_node("Add", ["tok", "proj"], ["res"], name="residual"),
    ]
    last = "res"
    if constant_branch:
        inits += [
            numpy_helper.from_array(np.zeros((c, c, 1, 1), np.float32), "const.w"),
            numpy_helper.from_array(np.full(c, 0.5, np.float32), "const.b"),
        ]
        nodes += [
            helper.make_node("Conv", ["pw", "const.w", "const.b"], ["const"], name="const_conv"),
            helper.make_node("Reshape", ["const", "shape3"], ["const_flat"], name="const_flatten"),
            helper.make_node("Transpose", ["const_flat"], ["const_tok"], name="const_tokens", perm=[0, 2, 1]),
            helper.make_node("Add", ["res", "const_tok"], ["res_c"], name="add_const"),
        ]
        last = "res_c"
    nodes += [
        helper.make_node("ReduceMean", [last, "axis1"], ["pooled"], name="pool", keepdims=0),
        helper.make_node("Gemm", ["pooled", "head.w", "head.b"], ["logits"], name="head", transB=1),
    ]
    in_shape = ["batch", 3, "height", "width"] if dynamic else [1, 3, RES, RES]
    graph = helper.make_graph(
        nodes,
        "attention_model",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [in_shape[0], 10])],
        inits,
    )
    if dynamic:  # the reshape to a fixed token count would contradict dynamic sizes; keep shapes symbolic
        graph.initializer.remove(next(t for t in graph.initializer if t.name == "shape3"))
        graph.initializer.append(numpy_helper.from_array(np.array([0, c, -1], np.int64), "shape3"))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model


def write_artifact(
    model: onnx.ModelProto, dest: Path, *, preprocessing=None, precision: str = "fp32", name: str = "tiny"
) -> Artifact:
    """Wrap ``model`` as an ONNX artifact, the way the exporter does."""
    inputs, outputs = graph_io(model)
    manifest = Manifest(
        format="onnx",
        precision=precision,
        model_name=name,
        main_file="model.onnx",
        inputs=inputs,
        outputs=outputs,
        preprocessing=preprocessing if preprocessing is not None else ImageInput(resolution=RES),
        labels=tuple(f"c{i}" for i in range(10)),
    )
    with ArtifactWriter(dest) as w:
        embed_manifest(model, manifest)
        onnx.save(model, str(w.dir / "model.onnx"))
        return w.commit(manifest)


def save_image(path: Path, mode: str, rng: np.random.Generator, size=(20, 18)) -> Path:
    """An image of ``mode`` with random content: RGB, L, CMYK, RGBA, P or I;16 (16-bit grayscale PNG)."""
    w, h = size
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
    elif mode == "P":
        img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert("P")
    else:
        channels = len(Image.new(mode, (1, 1)).getbands())
        arr = rng.integers(0, 255, (h, w, channels) if channels > 1 else (h, w), dtype=np.uint8)
        img = Image.fromarray(arr, mode=mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def save_wav(path: Path, rate: int, seconds: float, rng: np.random.Generator) -> Path:
    samples = (rng.standard_normal(int(rate * seconds)) * 3000).clip(-32768, 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.tobytes())
    return path


AUDIO = AudioInput(
    sample_rate=8000, clip_seconds=0.25, n_fft=128, win_length=100, hop_length=40, n_mels=16, f_max=4000.0
)


@pytest.fixture
def artifact(tmp_path) -> Artifact:
    return write_artifact(attention_model(), tmp_path / "fp32")


@pytest.fixture
def image_folder(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    for i in range(24):
        save_image(folder / f"img_{i:02d}.png", "RGB", rng)
    return folder


@pytest.fixture
def calib_npz(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path / "calib.npz"
    np.savez(path, input=rng.standard_normal((40, 3, RES, RES)).astype(np.float32))
    return path
