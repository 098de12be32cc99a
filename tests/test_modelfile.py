"""Model files are untrusted: kind by content, external data confined to the model's folder, checker errors named."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeformer.artifact import Artifact
from edgeformer.errors import ModelFileError, UnsafeInputError
from edgeformer.modelfile import (
    check_external_data,
    graph_io,
    load_onnx,
    manifest_for_bare_file,
    onnxruntime_refuses,
    require_onnx,
    sniff,
)

W = np.arange(16, dtype=np.float32).reshape(4, 4)


def tiny_model(opset: int = 18, ir_version: int = 8, weight: TensorProto | None = None) -> onnx.ModelProto:
    """``y = x @ W`` with a symbolic batch dimension."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="matmul_0")],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[weight if weight is not None else numpy_helper.from_array(W, "W")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)


def external_weight(location: str, offset: int = 0, length: int | None = None) -> TensorProto:
    """A ``W`` initializer whose data lives in ``location`` (nothing is written here)."""
    t = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, 4], data_location=TensorProto.EXTERNAL)
    entries = {"location": location, "offset": str(offset), "length": str(W.nbytes if length is None else length)}
    for k, v in entries.items():
        t.external_data.add(key=k, value=v)
    return t


def write(path, proto: onnx.ModelProto):
    path.write_bytes(proto.SerializeToString())  # raw bytes: onnx.save would try to resolve external data
    return path


@pytest.fixture
def good(tmp_path):
    return write(tmp_path / "model.onnx", tiny_model())


# --- kind by content ---------------------------------------------------------------------------------
def _png_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def test_sniff_names_kinds_by_content_not_suffix(tmp_path, good):
    from safetensors.numpy import save_file

    cases = {
        "png.onnx": _png_bytes(),
        "jpeg.onnx": b"\xff\xd8\xff\xe0" + b"\0" * 64,
        "arr.onnx": b"\x93NUMPY\x01\x00" + b"\0" * 64,
        "engine.onnx": b"ftrt" + b"\0" * 64,
        "wrapped.engine": len(b'{"imgsz": 640}').to_bytes(4, "little") + b'{"imgsz": 640}' + b"ftrt" + b"\0" * 8,
        "ir.onnx": b'<?xml version="1.0"?>\n<net name="m" version="11">',
        "junk.onnx": b"\x07\x07 definitely not a model",
        "empty.onnx": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    save_file({"w": W}, str(tmp_path / "weights.onnx"))
    kinds = {name: sniff(tmp_path / name) for name in [*cases, "weights.onnx"]}
    assert kinds == {
        "png.onnx": "png",
        "jpeg.onnx": "jpeg",
        "arr.onnx": "npy",
        "engine.onnx": "tensorrt",
        "wrapped.engine": "tensorrt",
        "ir.onnx": "openvino",
        "junk.onnx": "unknown",
        "empty.onnx": "empty",
        "weights.onnx": "safetensors",
    }
    assert sniff(good) == "onnx"
    assert sniff(tmp_path) == "directory"


def test_sniff_tells_torch_checkpoints_apart(tmp_path):
    torch = pytest.importorskip("torch")
    state = {"w": torch.zeros(2)}
    torch.save(state, tmp_path / "zip.onnx")
    torch.save(state, tmp_path / "legacy.onnx", _use_new_zipfile_serialization=False)
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "hi")
    assert sniff(tmp_path / "zip.onnx") == "torch-zip"
    assert sniff(tmp_path / "legacy.onnx") == "torch-pickle"
    assert sniff(tmp_path / "other.zip") == "zip"
    cut = (tmp_path / "zip.onnx").read_bytes()
    (tmp_path / "cut.pt").write_bytes(cut[: len(cut) // 2])
    assert sniff(tmp_path / "cut.pt") == "truncated"


@pytest.mark.parametrize("keep", [0.5, 0.9, 12])
def test_truncated_onnx_is_reported_as_truncated(tmp_path, good, keep):
    data = good.read_bytes()
    n = keep if isinstance(keep, int) else int(len(data) * keep)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[:n])
    assert sniff(cut) == "truncated"
    with pytest.raises(ModelFileError, match="truncated ONNX model"):
        load_onnx(cut)


def test_png_named_onnx_says_it_is_an_image_and_where_images_go(tmp_path):
    path = tmp_path / "cat.onnx"
    path.write_bytes(_png_bytes())
    with pytest.raises(ModelFileError, match=r"PNG image.*edgeformer predict") as e:
        load_onnx(path)
    assert e.value.exit_code == 3 and str(path) in str(e.value)


def test_torch_zip_named_onnx_points_to_export_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "weights.onnx"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(ModelFileError, match=r"PyTorch checkpoint; pass it with --checkpoint to `edgeformer export`"):
        load_onnx(path)
    with pytest.raises(ModelFileError, match="--checkpoint"):
        Artifact.load(path)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"empty \(0 bytes\)"):
        require_onnx(tmp_path / "empty.onnx")
    with pytest.raises(ModelFileError, match="no such file"):
        load_onnx(tmp_path / "absent.onnx")


# --- external data -----------------------------------------------------------------------------------
def _with_data(tmp_path, location: str, data: bytes | None = W.tobytes(), **kw):
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    if data is not None:
        (folder / "w.bin").write_bytes(data)
    return write(folder / "model.onnx", tiny_model(weight=external_weight(location, **kw)))


def test_external_data_inside_the_folder_loads(tmp_path):
    path = _with_data(tmp_path, "w.bin")
    proto = load_onnx(path)
    np.testing.assert_array_equal(numpy_helper.to_array(proto.graph.initializer[0]), W)


@pytest.mark.parametrize("location", ["../outside.bin", "sub/../../outside.bin", "..\\outside.bin"])
def test_external_data_leaving_the_folder_is_refused(tmp_path, location):
    (tmp_path / "outside.bin").write_bytes(W.tobytes())  # exists, so only the path rule can refuse it
    path = _with_data(tmp_path, location)
    with pytest.raises(UnsafeInputError, match="leaves the model's folder") as e:
        load_onnx(path)
    assert e.value.exit_code == 4


def test_external_data_with_absolute_path_is_refused(tmp_path):
    target = tmp_path / "abs.bin"
    target.write_bytes(W.tobytes())
    with pytest.raises(UnsafeInputError, match="absolute"):
        load_onnx(_with_data(tmp_path, str(target)))


def test_external_data_through_a_symlink_is_refused(tmp_path):
    (tmp_path / "secret.bin").write_bytes(W.tobytes())
    path = _with_data(tmp_path, "link.bin", data=None)
    os.symlink(tmp_path / "secret.bin", path.parent / "link.bin")
    with pytest.raises(UnsafeInputError, match="symlink"):
        load_onnx(path)


def test_external_data_in_a_symlinked_folder_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "w.bin").write_bytes(W.tobytes())
    path = _with_data(tmp_path, "sub/w.bin", data=None)
    os.symlink(tmp_path / "elsewhere", path.parent / "sub")
    with pytest.raises(UnsafeInputError, match="symlink"):
        load_onnx(path)


def test_external_data_hard_link_is_refused(tmp_path):
    (tmp_path / "secret.bin").write_bytes(W.tobytes())
    path = _with_data(tmp_path, "w.bin", data=None)
    os.link(tmp_path / "secret.bin", path.parent / "w.bin")
    with pytest.raises(UnsafeInputError, match="hard links"):
        load_onnx(path)


@pytest.mark.parametrize(("offset", "length"), [(1000, 64), (32, 64), (0, 1 << 40)])
def test_external_data_past_the_end_of_the_file(tmp_path, offset, length):
    path = _with_data(tmp_path, "w.bin", offset=offset, length=length)
    with pytest.raises(ModelFileError, match="past the end of the file"):
        load_onnx(path)


def test_external_data_shorter_than_the_tensor(tmp_path):
    path = _with_data(tmp_path, "w.bin", data=W.tobytes()[:16], length=16)
    with pytest.raises(ModelFileError, match="needs 64 bytes"):
        load_onnx(path)


def test_missing_external_data_file(tmp_path):
    path = _with_data(tmp_path, "w.bin", data=None)
    with pytest.raises(ModelFileError, match="missing"):
        load_onnx(path)


def test_external_data_is_checked_before_it_is_read(tmp_path):
    """A FIFO would block any reader forever; refusing it proves nothing was opened."""
    path = _with_data(tmp_path, "pipe.bin", data=None)
    os.mkfifo(path.parent / "pipe.bin")
    with pytest.raises(UnsafeInputError, match="not a regular file"):
        check_external_data(onnx.load(str(path), load_external_data=False), path.parent)


# --- checker and versions ----------------------------------------------------------------------------
def test_checker_failure_names_node_and_op(tmp_path):
    proto = tiny_model()
    proto.graph.node.append(helper.make_node("Relu", ["y"], ["z"], name="relu_bad", alpha=1.0))
    proto.graph.output[0].name = "z"
    with pytest.raises(ModelFileError, match=r"fails the ONNX checker: node relu_bad \(Relu\)"):
        load_onnx(write(tmp_path / "bad.onnx", proto))


def test_shape_inference_failure_names_node_and_op(tmp_path):
    proto = tiny_model(weight=numpy_helper.from_array(np.zeros((3, 4), np.float32), "W"))
    with pytest.raises(ModelFileError, match=r"node matmul_0 \(MatMul\)"):
        load_onnx(write(tmp_path / "bad.onnx", proto))


def test_opset_newer_than_onnx_supports(tmp_path):
    newest = onnx.defs.onnx_opset_version()
    path = write(tmp_path / "new.onnx", tiny_model(opset=newest + 1, ir_version=onnx.IR_VERSION))
    with pytest.raises(ModelFileError, match=rf"opset {newest + 1} .*newer than onnx {onnx.__version__}.*--opset"):
        load_onnx(path)


def test_ir_version_newer_than_onnx_supports(tmp_path):
    path = write(tmp_path / "new.onnx", tiny_model(ir_version=onnx.IR_VERSION + 1))
    with pytest.raises(ModelFileError, match=rf"IR version {onnx.IR_VERSION + 1} is newer than onnx"):
        load_onnx(path)


def test_opset_newer_than_onnxruntime_supports(tmp_path):
    newest = onnx.defs.onnx_opset_version()
    if onnxruntime_refuses(8, (("ai.onnx", newest),)) is None:
        pytest.skip("the installed onnxruntime supports every opset the installed onnx does")
    path = write(tmp_path / "new.onnx", tiny_model(opset=newest, ir_version=8))
    with pytest.raises(ModelFileError, match=rf"opset {newest} .*newer than onnxruntime .*--opset"):
        load_onnx(path)


# --- graph metadata, bare files, paths ---------------------------------------------------------------
def test_graph_io_keeps_symbolic_dims_as_strings(good):
    inputs, outputs = graph_io(load_onnx(good))
    assert [(t.name, t.shape, t.dtype) for t in inputs] == [("x", ("batch", 4), "float32")]
    assert [(t.name, t.shape, t.dtype) for t in outputs] == [("y", ("batch", 4), "float32")]


def test_unicode_and_space_paths_end_to_end(tmp_path):
    folder = tmp_path / "modèles é 模型" / "a b"
    folder.mkdir(parents=True)
    (folder / "poids 1 ü.bin").write_bytes(W.tobytes())
    path = write(folder / "mon modèle.onnx", tiny_model(weight=external_weight("poids 1 ü.bin")))
    manifest = manifest_for_bare_file(path)
    assert manifest.main_file == "mon modèle.onnx" and manifest.preprocessing is None
    assert set(manifest.files) == {"mon modèle.onnx", "poids 1 ü.bin"}
    art = Artifact.load(path)
    assert art.model_path == path and art.manifest.inputs[0].shape == ("batch", 4)
    art.verify()
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": np.ones((2, 4), np.float32)})
    np.testing.assert_allclose(y[0], np.ones((2, 4), np.float32) @ W)
