"""Model files are untrusted input: say what a file is, and load ONNX only after checking it.

:func:`sniff` names a file's kind from its bytes (never its suffix), so a PNG or a torch checkpoint
passed where an ONNX model is expected is reported as what it is, with the command that takes it.
:func:`load_onnx` refuses external data that escapes the model's folder (``../x``, absolute paths,
symlinks, hard links) or lies outside its data file, *before* reading a byte of it; then it runs the
full ONNX checker and shape inference and compares opset and IR versions with the installed onnx and
onnxruntime. Bare ``.onnx`` files get a manifest from their embedded metadata
(:func:`read_embedded_manifest`) or, for files from elsewhere, a minimal one read from the graph.

Example::

    proto = load_onnx("model.onnx")           # ModelFileError / UnsafeInputError with the reason
    inputs, outputs = graph_io(proto)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

import onnx
from onnx import TensorProto

from .errors import ModelFileError, UnsafeInputError
from .manifest import ONNX_METADATA_KEY, Manifest, TensorSpec, sha256_file

log = logging.getLogger(__name__)

# Beyond this a ModelProto cannot be serialized, so the checker must read the file by path.
_PROTO_LIMIT = 2**31 - 1
# ModelProto's top-level field numbers (onnx.proto3); a protobuf with only these is an ONNX model.
_ONNX_FIELDS = {1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 25, 26}
# ops that only a quantized graph has: a model holding one is int8 (guess_precision) and is not quantized again
QUANT_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "MatMulInteger",
        "ConvInteger",
        "DynamicQuantizeLinear",
        "MatMulNBits",
        "QGemm",
        "QLinearAdd",
    }
)

_CHECKPOINT = "a PyTorch checkpoint; pass it with --checkpoint to `edgeformer export`"
_KINDS = {  # kind: what it is and which command takes it
    "onnx": "an ONNX model",
    "torch-zip": _CHECKPOINT,
    "torch-pickle": _CHECKPOINT.replace("checkpoint", "checkpoint (legacy pickle)", 1),
    "safetensors": "a safetensors checkpoint; pass it with --checkpoint to `edgeformer export`",
    "png": "a PNG image, not a model; images go to `edgeformer predict` or to `edgeformer quantize --calib`",
    "jpeg": "a JPEG image, not a model; images go to `edgeformer predict` or to `edgeformer quantize --calib`",
    "npy": "a NumPy array, not a model; arrays go to `edgeformer predict` or to `edgeformer quantize --calib`",
    "npz": "a NumPy archive, not a model; arrays go to `edgeformer predict` or to `edgeformer quantize --calib`",
    "zip": "a zip archive that is not a PyTorch checkpoint; unpack it and pass the model file inside",
    "tensorrt": "a TensorRT engine; it cannot be re-exported or quantized, so pass the artifact folder "
    "`edgeformer compile --format tensorrt` wrote to `edgeformer profile --backend tensorrt`",
    "openvino": "an OpenVINO IR; pass the artifact folder `edgeformer compile --format openvino` wrote to "
    "`edgeformer profile --backend openvino`",
    "coreml": "a CoreML model; pass the artifact folder `edgeformer export --format coreml` wrote to "
    "`edgeformer profile --backend coreml` (macOS)",
    "ort": "an ONNX Runtime (.ort) model; pass the artifact folder `edgeformer compile --format ort` wrote to "
    "`edgeformer profile`",
    "tflite": "a TensorFlow Lite model, which edgeformer does not read; export the source model to ONNX instead",
    "artifact": "an edgeformer artifact folder; pass the folder itself, not a file inside it",
    "directory": "a folder without artifact.json; pass the model file, or the folder an edgeformer step wrote",
    "empty": "empty (0 bytes); re-download or re-export it",
    "truncated": "truncated; re-download or re-export it",
    "unknown": "not a model file edgeformer recognises; expected an ONNX model (`edgeformer export` writes one)",
}


# --- what is this file? ---------------------------------------------------------------------------
def sniff(path: str | Path) -> str:
    """Name the kind of ``path`` from its content, never its suffix.

    Returns one of ``onnx``, ``torch-zip``, ``torch-pickle``, ``safetensors``, ``png``, ``jpeg``, ``npy``,
    ``npz``, ``zip``, ``tensorrt``, ``openvino``, ``coreml``, ``ort``, ``tflite``, ``artifact``,
    ``directory``, ``empty``, ``truncated`` or ``unknown``. A missing path raises :class:`ModelFileError`.
    """
    return _sniff(Path(path))[0]


def require_onnx(path: str | Path) -> None:
    """Raise :class:`ModelFileError` saying what ``path`` is, and which command takes it, unless it is ONNX."""
    path = Path(path)
    kind, detail = _sniff(path)
    if kind != "onnx":
        raise ModelFileError(f"{path}: expected an ONNX model, but this is {_describe(kind, detail)}.")


def _describe(kind: str, detail: str = "") -> str:
    text = _KINDS[kind]
    if kind == "truncated" and detail:
        return f"a truncated {detail}; re-download or re-export it"
    if kind == "unknown" and detail:
        return f"{text} (it starts with {detail})"
    return text


def _sniff(path: Path) -> tuple[str, str]:
    """``(kind, detail)``; ``detail`` says what a truncated file was, or shows an unknown file's first bytes."""
    if not path.exists():
        raise ModelFileError(f"{path}: no such file; check the path.")
    if path.is_dir():
        if (path / "artifact.json").is_file():
            return "artifact", ""
        if (path / "Manifest.json").is_file() and path.suffix == ".mlpackage":
            return "coreml", ""
        return "directory", ""
    size = path.stat().st_size
    if size == 0:
        return "empty", ""
    with path.open("rb") as f:
        head = f.read(512)
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return "png", ""
        if head.startswith(b"\xff\xd8\xff"):
            return "jpeg", ""
        if head.startswith(b"\x93NUMPY"):
            return "npy", ""
        if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
            return _sniff_zip(path)
        if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle protocol 2..5
            return "torch-pickle", ""
        if head.startswith(b"ftrt") or _wrapped_tensorrt(f, head):
            return "tensorrt", ""
        if head[4:8] == b"TFL3":
            return "tflite", ""
        if head[4:8] == b"ORTM":
            return "ort", ""
        if head.lstrip().startswith(b"<?xml") or head.lstrip().startswith(b"<net"):
            return ("openvino", "") if b"<net" in head else ("unknown", repr(head[:16]))
        if len(head) >= 9 and head[8:9] == b"{":
            header_len = int.from_bytes(head[:8], "little")
            if header_len < 100_000_000:  # a real safetensors header; anything else is not one
                return ("safetensors", "") if 8 + header_len <= size else ("truncated", "safetensors file")
        return _sniff_protobuf(f, size, head)


def _sniff_zip(path: Path) -> tuple[str, str]:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    # zipfile raises more than BadZipFile on a damaged directory (NotImplementedError for a "zip file version 13.1",
    # found by fuzz/modelfile.py); the block only lists names, so any failure means an unreadable archive
    except Exception:
        return "truncated", "zip archive (a PyTorch checkpoint?) without its central directory"
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "torch-zip", ""
    if names and all(n.endswith(".npy") for n in names):
        return "npz", ""
    return "zip", ""


def _wrapped_tensorrt(f, head: bytes) -> bool:
    """Ultralytics-style engines: u32 JSON length, JSON metadata, then the ``ftrt`` plan."""
    n = int.from_bytes(head[:4], "little")
    if head[4:5] != b"{" or n > 1 << 20:
        return False
    f.seek(4 + n)
    return f.read(4) == b"ftrt"


def _sniff_protobuf(f, size: int, head: bytes) -> tuple[str, str]:
    """Walk the top-level protobuf fields (seeking over payloads) to tell ONNX, CoreML and truncation apart."""
    fields: list[int] = []
    f.seek(0)
    pos = 0
    while pos < size:
        tag, pos = _varint(f, pos, size)
        if tag is None:
            break
        number, wire = tag >> 3, tag & 7
        if number == 0 or wire not in (0, 1, 2, 5):
            return "unknown", repr(head[:16])
        if wire == 0:
            value, pos = _varint(f, pos, size)
            if value is None:
                break
        else:
            if wire == 2:
                length, pos = _varint(f, pos, size)
                if length is None:
                    break
            else:
                length = 8 if wire == 1 else 4
            pos += length
            f.seek(min(pos, size))  # a 10-byte varint length is past any offset seek() takes (fuzz/modelfile.py)
        fields.append(number)
        if pos > size:
            break
    else:
        fields_set = set(fields)
        if fields_set <= _ONNX_FIELDS and 7 in fields_set:
            return "onnx", ""
        if fields and fields[0] == 1 and any(n >= 200 for n in fields_set):
            return "coreml", ""
        if fields_set <= _ONNX_FIELDS and fields[:1] == [1]:
            return "truncated", "ONNX model (it ends before its graph)"
        return "unknown", repr(head[:16])
    # ran past the end: a truncated protobuf if it started like an ONNX model
    if fields[:1] == [1] and set(fields) <= _ONNX_FIELDS:
        return "truncated", f"ONNX model ({size} bytes; a field runs past the end of the file)"
    return "unknown", repr(head[:16])


def _varint(f, pos: int, size: int) -> tuple[int | None, int]:
    value = shift = 0
    for _ in range(10):
        if pos >= size:
            return None, pos + 1
        byte = f.read(1)[0]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return None, pos + size  # an 11-byte varint does not exist: not a protobuf


# --- external data -------------------------------------------------------------------------------
def _all_tensors(proto: onnx.ModelProto) -> Iterator[TensorProto]:
    """Every TensorProto that may carry external data: initializers, sparse parts, attribute tensors."""
    graphs = [proto.graph]
    for info in proto.training_info:
        graphs += [info.initialization, info.algorithm]
    nodes = [n for fn in proto.functions for n in fn.node]
    while graphs or nodes:
        if graphs:
            g = graphs.pop()
            yield from g.initializer
            for sp in g.sparse_initializer:
                yield from (sp.values, sp.indices)
            nodes.extend(g.node)
            continue
        for attr in nodes.pop().attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sp in [attr.sparse_tensor, *attr.sparse_tensors]:
                yield from (sp.values, sp.indices)
            if attr.HasField("g"):
                graphs.append(attr.g)
            graphs.extend(attr.graphs)


def check_external_data(proto: onnx.ModelProto, base_dir: str | Path, source: str = "model") -> dict[str, Path]:
    """Validate every external-data reference of ``proto`` without reading the data.

    A location must be a relative path inside ``base_dir`` reached without symlinks, naming a regular
    file with one link whose size covers the tensor's offset and length.

    Returns:
        ``{location: path}`` of the referenced data files.

    Raises:
        UnsafeInputError: a location escapes the folder (``..``, absolute), or goes through a symlink
            or names a hard-linked or special file.
        ModelFileError: a data file is missing, or an offset/length lies past its end.
    """
    base = Path(base_dir)
    seen: dict[str, Path] = {}
    for t in _all_tensors(proto):
        if t.data_location != TensorProto.EXTERNAL:
            continue
        entries = {e.key: e.value for e in t.external_data}
        location = entries.get("location", "")
        where = f"{source}: tensor {t.name!r}"
        # bytes: protobuf's form of a string that is not UTF-8, which onnx's data loader then chokes on
        if isinstance(t.name, bytes) or any(isinstance(x, bytes) for kv in entries.items() for x in kv):
            raise ModelFileError(f"{where}: its name or an external-data entry is not UTF-8 text; re-export the model.")
        if not location:
            raise ModelFileError(f"{where} is stored externally but names no data file; re-export the model.")
        try:
            offset = int(entries.get("offset", 0))
            length = int(entries["length"]) if "length" in entries else None
        except ValueError as e:
            raise ModelFileError(f"{where}: malformed external-data offset/length ({e}); re-export the model.") from e
        if offset < 0 or (length is not None and length < 0):
            raise ModelFileError(f"{where}: negative external-data offset/length; re-export the model.")
        path = seen.get(location) or _safe_data_path(base, location, where)
        seen[location] = path
        size = path.stat().st_size
        end = offset + (length if length is not None else 0)
        if offset > size or end > size:
            raise ModelFileError(
                f"{where}: external data {location!r} [{offset}:{end}] lies past the end of the file ({size} "
                "bytes); the data file is truncated or does not belong to this model."
            )
        needed = _nbytes(t)
        available = length if length is not None else size - offset
        if needed is not None and available < needed:
            raise ModelFileError(
                f"{where}: needs {needed} bytes of external data but {location!r} holds {available} from offset "
                f"{offset}; the data file is truncated or does not belong to this model."
            )
    return seen


def _safe_data_path(base: Path, location: str, where: str) -> Path:
    posix = PurePosixPath(location.replace("\\", "/"))
    if "\x00" in location or posix.is_absolute() or PureWindowsPath(location).drive or location.startswith("\\"):
        raise UnsafeInputError(
            f"{where}: external data location {location!r} is absolute; refused. "
            "Data files must sit in the model's folder (re-export with relative locations)."
        )
    if ".." in posix.parts:
        raise UnsafeInputError(f"{where}: external data location {location!r} leaves the model's folder; refused.")
    current = base
    for part in posix.parts:
        if part == ".":
            continue
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            raise ModelFileError(
                f"{where}: external data file {location!r} is missing from {base}; copy it next to the model."
            ) from None
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeInputError(
                f"{where}: external data path {location!r} goes through a symlink ({current}); "
                "refused. Copy the real file into the model's folder."
            )
    st = os.lstat(current)
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(f"{where}: external data location {location!r} is a folder, not a file.")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeInputError(f"{where}: external data {location!r} is not a regular file (device, pipe?); refused.")
    if st.st_nlink > 1:
        raise UnsafeInputError(
            f"{where}: external data {location!r} has {st.st_nlink} hard links, so it may be a "
            "file from outside the model's folder; refused. Copy it (cp, not ln) and retry."
        )
    if base.resolve() not in current.resolve().parents:  # defence in depth; the checks above should imply it
        raise UnsafeInputError(f"{where}: external data {location!r} resolves outside {base}; refused.")
    return current


def _nbytes(t: TensorProto) -> int | None:
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return None
    if t.data_type in (TensorProto.STRING,) or itemsize == 0:
        return None
    n = 1
    for d in t.dims:
        n *= d
    if t.data_type in (TensorProto.INT4, TensorProto.UINT4):
        return (n + 1) // 2
    return n * itemsize


# --- loading ---------------------------------------------------------------------------------------
def load_onnx(path: str | Path, *, full_check: bool = True) -> onnx.ModelProto:
    """Load an ONNX model after checking its kind, versions and external data; then run the checker.

    Args:
        path: the ``.onnx`` file; external data files must sit in its folder.
        full_check: run ``onnx.checker`` with strict shape inference (the default) and return the model
            with inferred shapes; ``False`` runs only the structural check.

    Raises:
        ModelFileError: wrong kind, truncated, opset/IR newer than the installed tools, missing or
            short external data, or a checker failure (naming the node and op).
        UnsafeInputError: external data escaping the model's folder.
    """
    return _load_checked(Path(path), full_check)[0]


def _load_checked(path: Path, full_check: bool) -> tuple[onnx.ModelProto, dict[str, Path]]:
    require_onnx(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError or RuntimeError depending on the backend
        raise ModelFileError(f"{path}: not a readable ONNX model ({_first_line(e)}); re-export it.") from e
    check_versions(proto, source=str(path))
    data_files = check_external_data(proto, path.parent, source=str(path))
    if data_files:
        try:
            onnx.load_external_data_for_model(proto, str(path.parent))
        except (OSError, ValueError, onnx.checker.ValidationError) as e:
            raise ModelFileError(f"{path}: cannot read external data ({_first_line(e)}).") from e
    big = path.stat().st_size + sum(p.stat().st_size for p in data_files.values()) > _PROTO_LIMIT
    try:
        # the path form reads the file itself: the only one that works past protobuf's 2 GB limit
        onnx.checker.check_model(str(path) if big else proto, full_check=full_check)
        if full_check and not big:
            proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ModelFileError(
            f"{path}: fails the ONNX checker: {_checker_message(e)}; fix or re-export the model."
        ) from e
    # the checker's C++ side also raises plain ValueErrors (fuzz/modelfile.py): "Invalid tensor data type 111.",
    # and a UnicodeDecodeError when its own message quotes a name that is not UTF-8
    except UnicodeDecodeError as e:
        raise ModelFileError(
            f"{path}: fails the ONNX checker on a name or string that is not valid UTF-8; fix or re-export the model."
        ) from e
    except ValueError as e:
        raise ModelFileError(f"{path}: fails the ONNX checker: {_first_line(e)}; fix or re-export the model.") from e
    return proto, data_files


def check_versions(proto: onnx.ModelProto, source: str = "model") -> None:
    """Refuse an IR or opset version newer than the installed onnx and onnxruntime support."""
    onnx_ir, onnx_opset, onnx_ml = onnx.IR_VERSION, onnx.defs.onnx_opset_version(), onnx.helper.VERSION_TABLE[-1][3]
    opsets = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    hint = "upgrade onnx (pip install -U onnx)"
    if proto.ir_version > onnx_ir:
        raise ModelFileError(
            f"{source}: IR version {proto.ir_version} is newer than onnx {onnx.__version__} "
            f"supports ({onnx_ir}); {hint}, or re-export with an older exporter."
        )
    for domain, newest in (("ai.onnx", onnx_opset), ("ai.onnx.ml", onnx_ml)):
        if opsets.get(domain, 0) > newest:
            raise ModelFileError(
                f"{source}: opset {opsets[domain]} ({domain}) is newer than onnx {onnx.__version__} "
                f"supports ({newest}); {hint}, or re-export with --opset {newest}."
            )
    std = tuple(sorted((d, v) for d, v in opsets.items() if d in ("ai.onnx", "ai.onnx.ml")))
    problem = onnxruntime_refuses(proto.ir_version, std)
    if problem:
        raise ModelFileError(f"{source}: {problem}")


@functools.lru_cache(maxsize=32)
def onnxruntime_refuses(ir_version: int, opsets: tuple[tuple[str, int], ...]) -> str | None:
    """Ask the installed onnxruntime whether it accepts these versions; it exposes no API for its maxima.

    An Identity graph stamped with the model's IR version and opsets costs a millisecond to load and
    fails exactly as the real model would, with ORT's own figures in the message.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    from onnx import helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    imports = [helper.make_opsetid("" if d == "ai.onnx" else d, v) for d, v in opsets] or [helper.make_opsetid("", 1)]
    probe = helper.make_model(graph, opset_imports=imports, ir_version=ir_version)
    try:
        ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own Fail/InvalidGraph classes
        text = str(e)
        if m := re.search(r"max supported IR version: (\d+)", text):
            return (
                f"IR version {ir_version} is newer than onnxruntime {ort.__version__} supports ({m[1]}); "
                "upgrade onnxruntime (pip install -U onnxruntime), or re-export with an older exporter."
            )
        if m := re.search(r"Opset (\d+) is under development.*?domain (\S+) is till opset (\d+)", text, re.S):
            return (
                f"opset {m[1]} ({m[2]}) is newer than onnxruntime {ort.__version__} supports ({m[3]}); "
                f"upgrade onnxruntime (pip install -U onnxruntime), or re-export with --opset {m[3]}."
            )
        if "opset" in text.lower() or "ir version" in text.lower():
            return f"onnxruntime {ort.__version__} refuses its IR/opset versions ({_first_line(e)})."
    return None


def _checker_message(e: Exception) -> str:
    text = str(e)
    m = re.search(r"Name: (\S*) OpType: (\S+)", text) or re.search(r"name: (\S*) OpType: (\S+)", text)
    if m:
        node, op = m[1], m[2]
    elif m := re.search(r"op_type:([\w.]+)(?:, node name: ([^)]*))?", text):
        op, node = m[1], m[2] or ""
    else:
        return _first_line(e)
    reason = re.sub(r"\[ShapeInferenceError\]\s*|Inference error\(s\):\s*|\(op_type:[^)]*\):?\s*", "", text)
    reason = reason.split("==> Context")[0].strip().splitlines()[0].rstrip(".: ")
    return f"node {node or '(unnamed)'!s} ({op}): {reason}"


def _first_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


# --- graph metadata and manifests ------------------------------------------------------------------
def graph_io(proto: onnx.ModelProto) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The graph's inputs (initializers excluded) and outputs; symbolic dims are strings, unknown ones ``"?"``."""
    initializers = {t.name for t in proto.graph.initializer}
    inputs = tuple(_spec(v) for v in proto.graph.input if v.name not in initializers)
    return inputs, tuple(_spec(v) for v in proto.graph.output)


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tt = value.type.tensor_type
    dims: list[int | str] = []
    for d in tt.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name if value.type.HasField("tensor_type") else ""
    except (KeyError, TypeError, ValueError):
        dtype = onnx.TensorProto.DataType.Name(tt.elem_type).lower()
    return TensorSpec(name=value.name, shape=tuple(dims), dtype=dtype or value.type.WhichOneof("value") or "unknown")


def embed_manifest(proto: onnx.ModelProto, manifest: Manifest) -> None:
    """Store ``manifest`` (minus file hashes, which cannot cover the file itself) in ``metadata_props``."""
    data = manifest.to_dict()
    data.pop("files", None)
    text = json.dumps(data, sort_keys=True, default=str)
    for prop in proto.metadata_props:
        if prop.key == ONNX_METADATA_KEY:
            prop.value = text
            return
    proto.metadata_props.add(key=ONNX_METADATA_KEY, value=text)


def read_embedded_manifest(proto: onnx.ModelProto, source: str = "model") -> Manifest | None:
    """The manifest stored by :func:`embed_manifest`, or ``None`` for ONNX files from elsewhere."""
    for prop in proto.metadata_props:
        if prop.key == ONNX_METADATA_KEY:
            try:
                data = json.loads(prop.value)
            # ValueError: also bad UTF-8 (protobuf hands a proto2 string that is not UTF-8 over as bytes) and an
            # int past 4300 digits; RecursionError: arrays nested thousands deep
            except (ValueError, RecursionError) as e:
                raise ModelFileError(
                    f"{source}: embedded edgeformer manifest is corrupt ({e}); re-export the model."
                ) from e
            return Manifest.load(data, source=f"{source} (embedded manifest)")
    return None


def manifest_for_bare_file(path: str | Path) -> Manifest:
    """A manifest for a model file given without its artifact folder (used by ``Artifact.load``).

    The file is validated with :func:`load_onnx`; its embedded manifest is used when present, else a
    minimal one is read from the graph, with no preprocessing (inputs are fed as arrays). ``files``
    holds the sha256 of the model and every external data file.
    """
    path = Path(path)
    kind, detail = _sniff(path)
    if kind != "onnx":
        raise ModelFileError(f"{path}: cannot be loaded as a bare model file: it is {_describe(kind, detail)}.")
    proto, data_files = _load_checked(path, full_check=True)
    files = {path.name: sha256_file(path)}
    for location, data_path in data_files.items():
        files[PurePosixPath(location.replace("\\", "/")).as_posix()] = sha256_file(data_path)
    embedded = read_embedded_manifest(proto, source=str(path))
    if embedded is not None:
        return dataclasses.replace(embedded, main_file=path.name, files=files)
    inputs, outputs = graph_io(proto)
    producer = f"{proto.producer_name} {proto.producer_version}".strip()
    return Manifest(
        format="onnx",
        precision=guess_precision(proto),
        model_name=path.stem,
        main_file=path.name,
        task="unknown",
        inputs=inputs,
        outputs=outputs,
        preprocessing=None,
        labels=None,
        step="import",
        files=files,
        extra={"producer": producer} if producer else {},
    )


def guess_precision(proto: onnx.ModelProto) -> str:
    """``int8`` for quantized graphs, else the dominant float type of the initializers."""
    if any(n.op_type in QUANT_OPS for n in proto.graph.node):
        return "int8"
    counts = {TensorProto.FLOAT16: 0, TensorProto.BFLOAT16: 0, TensorProto.FLOAT: 0}
    for t in proto.graph.initializer:
        if t.data_type in counts:
            counts[t.data_type] += 1
    best = max(counts, key=lambda k: counts[k])
    return {TensorProto.FLOAT16: "fp16", TensorProto.BFLOAT16: "bf16"}.get(best, "fp32") if counts[best] else "fp32"
