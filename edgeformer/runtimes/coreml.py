"""CoreML runtime: run ``coreml`` artifacts (an ``.mlpackage``) with coremltools' ``MLModel`` — macOS only.

Conversion runs anywhere (``edgeformer compile --format coreml`` works on Linux), but *prediction* calls
Apple's Core ML framework through coremltools' native extension, which only exists in the macOS wheels:
on Linux ``MLModel.predict`` raises "Model prediction is only supported on macOS", and coremltools has
no interpreter of its own for ML programs. So :func:`available` says why a session cannot open here, and
opening one off macOS raises :class:`~edgeformer.errors.BackendUnavailableError` (exit 5).

What *can* be read anywhere is the package's spec: :func:`inspect_package` (and :func:`summarize_spec`)
list the inputs, outputs, ML-program ops by type, the dtypes of compute ops and weights (which is how
an fp16 or int8-weight package is told apart from an fp32 one) and the metadata, including the
edgeformer manifest embedded under :data:`~edgeformer.artifact.ONNX_METADATA_KEY`.

Providers are Core ML compute-unit sets (``"all"``, ``"cpu_only"``, ``"cpu_and_gpu"``, ``"cpu_and_ne"``).
Core ML schedules each op on a unit inside the requested set and does not report which one ran, so the
session's ``provider`` is the set that was requested — never a wider one.

Example::

    with Session("build/l1-coreml", backend="coreml", providers=("cpu_and_ne",)) as s:
        logits = s.run({"input": x})["logits"]
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import logging
import platform
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..artifact import ONNX_METADATA_KEY, Manifest
from ..errors import BackendUnavailableError, ConfigError, InvalidInputError, ModelFileError, did_you_mean
from .base import Backend, BackendSession, SessionOptions, TensorInfo

if TYPE_CHECKING:
    from ..artifact import Artifact

log = logging.getLogger(__name__)

INSTALL = "pip install 'edgeformer[coreml]'"
# edgeformer's names -> coremltools.ComputeUnit member names
COMPUTE_UNITS = {"all": "ALL", "cpu_only": "CPU_ONLY", "cpu_and_gpu": "CPU_AND_GPU", "cpu_and_ne": "CPU_AND_NE"}
# MIL DataType enum values (coremltools/proto/MIL.proto) -> numpy names
_MIL_DTYPES = {
    1: "bool",
    10: "float16",
    11: "float32",
    12: "float64",
    13: "bfloat16",
    21: "int8",
    22: "int16",
    23: "int32",
    24: "int64",
    25: "int4",
    31: "uint8",
    32: "uint16",
    33: "uint32",
    34: "uint64",
    35: "uint4",
}
# FeatureTypes ArrayFeatureType.ArrayDataType (the model's I/O description) -> numpy names
_IO_DTYPES = {65568: "float32", 65600: "float64", 65552: "float16", 131104: "int32", 131080: "int8"}
# ops whose int weights are dequantized at load time: iOS16/17 and iOS18+ flavours of weight-only quantization
QUANTIZED_WEIGHT_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")


def platform_reason() -> str | None:
    """Why Core ML prediction cannot run on this OS, or ``None`` on macOS."""
    if sys.platform == "darwin":
        return None
    return f"CoreML prediction needs macOS (this is {platform.system() or sys.platform})"


def available() -> str | None:
    """``None`` when CoreML models can be *run* here, else the precise reason (OS first: no install fixes it)."""
    reason = platform_reason()
    if reason:
        return reason
    if importlib.util.find_spec("coremltools") is None:
        return f"coremltools is not installed: {INSTALL}"
    with quiet_coremltools():  # finding a submodule imports the package, which talks on import
        bridge = importlib.util.find_spec("coremltools.libcoremlpython")
    if bridge is None:
        return f"this coremltools has no native Core ML bridge (a source build?); reinstall the wheel: {INSTALL}"
    return None


@contextlib.contextmanager
def quiet_coremltools() -> Iterator[list[warnings.WarningMessage]]:
    """Keep coremltools' chatter (untested-version notes, missing native proxies on Linux, progress bars, tracer
    warnings) off the user's terminal; it is logged at DEBUG, and the warnings are yielded for the caller."""
    root = logging.getLogger("coremltools")
    level = root.level
    root.setLevel(logging.ERROR)
    stderr = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(stderr):
        warnings.simplefilter("always")
        try:
            yield caught
        finally:
            root.setLevel(level)
            for w in caught:
                log.debug("coremltools warning: %s", w.message)
            for line in stderr.getvalue().splitlines():
                if line.strip() and "%|" not in line:  # tqdm progress bars carry nothing worth keeping
                    log.debug("coremltools: %s", line.strip())


def import_coremltools() -> Any:
    """``coremltools``, imported quietly; raises :class:`BackendUnavailableError` naming the extra."""
    if (loaded := sys.modules.get("coremltools")) is not None:  # None there means "blocked": import to fail
        return loaded
    try:
        with quiet_coremltools():
            import coremltools
    except ImportError as e:
        raise BackendUnavailableError(f"CoreML needs coremltools: {INSTALL}") from e
    return coremltools


# --- reading a package's spec (any OS) -----------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PackageInfo:
    """What a CoreML spec holds: I/O, ML-program ops by type, compute/weight dtypes, metadata."""

    model_type: str  # "mlProgram" | "neuralNetwork" | ...
    spec_version: int
    opset: str  # "CoreML6" (iOS16), "CoreML7" (iOS17), "CoreML8" (iOS18)
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    ops: dict[str, int]  # op type -> count, consts included
    compute_dtypes: dict[str, int]  # dtype of each non-const op output -> count
    weight_dtypes: dict[str, int]  # dtype of const / constexpr-data tensors of >1 element -> element count
    quantized_weights: dict[str, int]  # dtype of the int data inside dequantize-at-load ops -> tensor count
    metadata: dict[str, str] = field(default_factory=dict)
    description: dict[str, str] = field(default_factory=dict)  # short_description, author, version, license

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["metadata"] = {k: v for k, v in self.metadata.items() if k != ONNX_METADATA_KEY}  # large, and recorded
        return d

    def precision_problems(self, precision: str) -> list[str]:
        """What contradicts ``precision`` ("fp32", "fp16", "int8" weights over fp16) in the dtype census."""
        compute, weights, quantized = self.compute_dtypes, self.weight_dtypes, self.quantized_weights
        problems = [] if self.model_type == "mlProgram" else [f"it is a {self.model_type}, not an mlProgram"]
        if precision == "fp32":
            problems += [
                f"{n} {what}"
                for what, n in (
                    ("fp16 op outputs", compute.get("float16")),
                    ("fp16 weight elements", weights.get("float16")),
                )
                if n
            ]
        else:
            problems += [] if compute.get("float16") else ["no fp16 op outputs"]
            problems += [f"{weights['float32']} fp32 weight elements"] if weights.get("float32") else []
        if precision == "int8" and not quantized.get("int8"):
            problems.append("no int8 weights (no dequantize-at-load ops)")
        if precision != "int8" and quantized:
            problems.append(f"quantized weights {quantized}")
        return problems

    def embedded_manifest(self, source: str = "package") -> Manifest | None:
        """The edgeformer manifest stored in the package metadata, or ``None`` for packages from elsewhere."""
        text = self.metadata.get(ONNX_METADATA_KEY)
        if text is None:
            return None
        try:
            return Manifest.load(json.loads(text), source=f"{source} (embedded manifest)")
        except json.JSONDecodeError as e:
            raise ModelFileError(f"{source}: embedded edgeformer manifest is corrupt ({e}); re-convert it.") from e


def summarize_spec(spec: Any) -> PackageInfo:
    """A :class:`PackageInfo` of a ``Model_pb2.Model`` (``mlmodel.get_spec()`` or ``ct.utils.load_spec``)."""
    model_type = spec.WhichOneof("Type") or "unknown"
    ops: Counter[str] = Counter()
    compute: Counter[str] = Counter()
    weights: Counter[str] = Counter()
    quantized: Counter[str] = Counter()
    opset = ""
    if model_type == "mlProgram":
        main = spec.mlProgram.functions.get("main")
        if main is not None:
            opset = main.opset
            for block in main.block_specializations.values():
                _count_ops(block, ops, compute, weights, quantized)
    meta = spec.description.metadata
    return PackageInfo(
        model_type=model_type,
        spec_version=int(spec.specificationVersion),
        opset=opset,
        inputs=tuple(_io_info(f) for f in spec.description.input),
        outputs=tuple(_io_info(f) for f in spec.description.output),
        ops=dict(ops.most_common()),
        compute_dtypes=dict(compute),
        weight_dtypes=dict(weights),
        quantized_weights=dict(quantized),
        metadata=dict(meta.userDefined),
        description={
            "short_description": meta.shortDescription,
            "author": meta.author,
            "version": meta.versionString,
            "license": meta.license,
        },
    )


def _count_ops(block: Any, ops: Counter, compute: Counter, weights: Counter, quantized: Counter) -> None:
    for op in block.operations:
        ops[op.type] += 1
        for nested in op.blocks:  # control flow carries its own blocks
            _count_ops(nested, ops, compute, weights, quantized)
        if op.type == "const":
            ttype = op.outputs[0].type.tensorType if op.outputs else None
            if ttype is not None and _numel(ttype) > 1:
                weights[_MIL_DTYPES.get(ttype.dataType, str(ttype.dataType))] += _numel(ttype)
            continue
        if op.type in QUANTIZED_WEIGHT_OPS:
            for v in _quantized_data(op):
                dtype = _MIL_DTYPES.get(v.type.tensorType.dataType, str(v.type.tensorType.dataType))
                quantized[dtype] += 1
                weights[dtype] += _numel(v.type.tensorType)
            continue
        for out in op.outputs:
            if out.type.HasField("tensorType"):
                compute[_MIL_DTYPES.get(out.type.tensorType.dataType, str(out.type.tensorType.dataType))] += 1


def _quantized_data(op: Any) -> list[Any]:
    """The int tensors of a dequantize-at-load op: an attribute on iOS16/17, an inline input value on iOS18+."""
    if "quantized_data" in op.attributes:
        return [op.attributes["quantized_data"]]
    if "data" in op.inputs:
        return [a.value for a in op.inputs["data"].arguments if a.HasField("value")]
    return []


def _numel(ttype: Any) -> int:
    n = 1
    for d in ttype.dimensions:
        n *= d.constant.size if d.HasField("constant") else 1
    return n


def _io_info(feature: Any) -> TensorInfo:
    kind = feature.type.WhichOneof("Type")
    if kind != "multiArrayType":
        return TensorInfo(name=feature.name, shape=(), dtype=kind or "unknown")  # images, dicts: not our exports
    arr = feature.type.multiArrayType
    return TensorInfo(
        name=feature.name, shape=tuple(int(d) for d in arr.shape), dtype=_IO_DTYPES.get(arr.dataType, str(arr.dataType))
    )


def package_path(artifact: Artifact) -> Path:
    """The ``.mlpackage`` folder of a ``coreml`` artifact (its ``main_file`` is a file inside the package)."""
    for p in (artifact.model_path, *artifact.model_path.parents):
        if p.suffix == ".mlpackage":
            return p
        if p == artifact.path:
            break
    raise ModelFileError(
        f"{artifact.path}: main_file {artifact.manifest.main_file!r} is not inside an .mlpackage; "
        "re-run `edgeformer compile --format coreml`."
    )


def inspect_package(path: str | Path) -> PackageInfo:
    """Read the spec of an ``.mlpackage`` (or ``.mlmodel``) without loading it into Core ML (works on Linux)."""
    path = Path(path)
    if not (path / "Manifest.json").is_file() and not path.is_file():
        raise ModelFileError(f"{path}: not a CoreML package (no Manifest.json); re-run the CoreML conversion.")
    ct = import_coremltools()
    try:
        with quiet_coremltools():
            spec = ct.utils.load_spec(str(path))
    except Exception as e:  # protobuf and package-format errors come in many types; all mean "unreadable"
        raise ModelFileError(
            f"{path}: coremltools {ct.__version__} cannot read this package ({e}); re-convert it."
        ) from e
    return summarize_spec(spec)


# --- backend and session (macOS) ---------------------------------------------------------------------
class CoreMlBackend(Backend):
    """Opens ``coreml`` artifacts (``.mlpackage``) with Core ML, through coremltools (macOS only)."""

    name = "coreml"
    formats = ("coreml",)

    def available(self) -> str | None:
        return available()

    def open(self, artifact: Artifact, options: SessionOptions) -> CoreMlSession:
        return CoreMlSession(artifact, options)


class CoreMlSession(BackendSession):
    """One ``coremltools.models.MLModel`` loaded for the requested compute units.

    The default compute units are those recorded at conversion (``step_config["compute_units"]``).
    """

    def __init__(self, artifact: Artifact, options: SessionOptions) -> None:
        reason = available()
        if reason:
            raise BackendUnavailableError(f"cannot open {artifact.path} on CoreML: {reason}.")
        if options.enable_profiling:
            raise ConfigError(
                "per-op profiling is not available on the CoreML backend; use Xcode's Core ML "
                "performance report (or coremltools' MLComputePlan)."
            )
        if options.extra:
            raise ConfigError(f"the CoreML backend takes no extra session options, got {dict(options.extra)}.")
        if options.threads is not None:
            log.debug("threads=%s does not apply to CoreML (Core ML schedules its own threads)", options.threads)
        units = _requested_units(options, artifact.manifest.step_config.get("compute_units", "all"))
        ct = import_coremltools()
        self.path = package_path(artifact)
        info = inspect_package(self.path)
        try:
            with quiet_coremltools():
                self._model = ct.models.MLModel(
                    str(self.path), compute_units=getattr(ct.ComputeUnit, COMPUTE_UNITS[units])
                )
        except Exception as e:  # Core ML reports compile/load failures as generic exceptions
            raise ModelFileError(
                f"{self.path}: Core ML cannot load this package ({e}); re-convert it with a "
                "minimum_deployment_target this macOS supports."
            ) from e
        self.inputs = list(info.inputs)
        self.outputs = list(info.outputs)
        self._dtypes = {o.name: o.dtype for o in self.outputs}
        self.provider = units

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            out = self._model.predict(dict(feeds))
        except Exception as e:  # Core ML raises plain exceptions for anything that goes wrong at run time
            shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in feeds.items())
            raise InvalidInputError(f"Core ML failed running {self.path.name} on {shapes}: {e}.") from e
        return {
            name: np.asarray(out[name]).astype(self._dtypes.get(name, "float32"), copy=False) for name in self._dtypes
        }

    def close(self) -> None:
        self._model = None


def _requested_units(options: SessionOptions, default: str) -> str:
    units = options.providers[0] if options.providers else default
    if units not in COMPUTE_UNITS:
        raise ConfigError(
            f"CoreML providers are compute units, one of {', '.join(COMPUTE_UNITS)}; got {units!r}"
            f"{did_you_mean(str(units), COMPUTE_UNITS)}."
        )
    return units


__all__ = [
    "COMPUTE_UNITS",
    "INSTALL",
    "QUANTIZED_WEIGHT_OPS",
    "CoreMlBackend",
    "CoreMlSession",
    "PackageInfo",
    "available",
    "import_coremltools",
    "inspect_package",
    "package_path",
    "platform_reason",
    "quiet_coremltools",
    "summarize_spec",
]
