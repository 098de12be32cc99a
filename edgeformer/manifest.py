"""The manifest: what an artifact is, where it came from, and how to feed it, as typed records.

Every field that a later step, the runtime or a device agent reads has a type here, and ``from_dict`` is
strict (one mechanism for all records: :mod:`edgeformer.records`): an unknown key or a wrong type is an
error naming the file and the field, never a value that fails three steps later.

Schema history:
    1: preprocessing as a free dict; arch, label_set, checkpoint, parity, fidelity, calibration and runtime
       settings inside ``extra``. Still read: :func:`_upgrade_v1` moves those keys to their typed fields, but
       for parity and fidelity, whose dicts have another shape than :class:`~edgeformer.compare.CheckRecord`:
       they stay in ``extra`` as written (``parity_v1``, ``fidelity_v1``).
    2: typed ``preprocessing`` (an input spec), ``lineage``, ``parity``, ``fidelity``, ``calibration``,
       ``runtime``; ``extra`` keeps only step-specific facts that nothing reads back.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .compare import CheckRecord
from .errors import ConfigError, ModelFileError
from .inputs import AudioInput, ImageInput, input_spec_from_dict
from .records import Record

SCHEMA_VERSION = 2
MANIFEST_NAME = "artifact.json"
ONNX_METADATA_KEY = "edgeformer.manifest"
# the tools whose versions shape an artifact; the step cache keys on them too
TOOLS = (
    "edgeformer",
    "torch",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "onnxslim",
    "openvino",
    "coremltools",
    "tensorrt",
    "nncf",
    "numpy",
)


@dataclass(frozen=True, kw_only=True)
class TensorSpec(Record):
    """A model input or output: dims are ints or symbolic names (``"batch"``)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str  # numpy dtype name: "float32", "int64", ...


@dataclass(frozen=True, kw_only=True)
class Checkpoint(Record):
    """The weights file a model was built with, matched by content (the name is only a hint)."""

    file: str
    sha256: str


@dataclass(frozen=True, kw_only=True)
class Lineage(Record):
    """What the model was built from, so a later step can rebuild it (CoreML re-traces the torch model)."""

    family: str | None = None  # zoo family ("shvit"); None for your own module
    arch: dict[str, Any] | None = None  # the family's architecture fields, JSON form (lists for tuples)
    label_set: str | None = None  # a label set known to edgeformer.data.labels
    checkpoint: Checkpoint | None = None


@dataclass(frozen=True, kw_only=True)
class CalibrationRecord(Record):
    """What calibration actually used (quantize; OpenVINO int8 records the first six fields and ``samples``)."""

    source: str
    kind: str = "unknown"  # "images" | "audio" | "arrays" | "synthetic" | "reader"
    found: int = 0  # candidate samples in the source
    ignored_files: int = 0  # files in the folder with other extensions
    sampled: int = 0  # drawn for calibration
    used: int = 0  # read successfully in the last pass
    skipped: int = 0  # of the calibration samples: used + skipped == sampled
    skipped_samples: tuple[str, ...] = ()  # the first few, with the reason
    holdout: int = 0
    holdout_skipped: int = 0  # held-out samples skipped (on_bad_sample="skip"); the fidelity check had fewer
    fidelity_on: str = "held-out samples"
    method: str = "minmax"
    method_requested: str = "minmax"
    warnings: tuple[str, ...] = ()
    samples: int | None = None  # OpenVINO: samples fed to NNCF / the QDQ calibration
    seed: int | None = None  # synthetic data's seed
    warning: str | None = None  # OpenVINO: why the scales may not fit real data


@dataclass(frozen=True, kw_only=True)
class RuntimeSettings(Record):
    """How a compiled artifact must be opened: the runtime applies these unless the session overrides them."""

    device: str | None = None  # OpenVINO device ("CPU")
    inference_precision: str | None = None  # OpenVINO hint ("f32", "bf16")
    performance_hint: str | None = None  # OpenVINO "LATENCY" | "THROUGHPUT"
    num_streams: int | None = None
    graph_optimization: str | None = None  # ORT level to open an ORT-optimized model with
    providers: tuple[str, ...] | None = None
    threads: int | None = None


@dataclass(frozen=True, kw_only=True)
class Manifest(Record):
    """What an artifact is, where it came from, and how to feed it."""

    format: str  # "onnx" | "tensorrt" | "coreml" | "openvino" | "ort"
    precision: str  # "fp32" | "fp16" | "bf16" | "int8" | "mixed"
    model_name: str
    main_file: str  # path relative to the artifact folder
    task: str = "image-classification"
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    preprocessing: ImageInput | AudioInput | None = None
    labels: tuple[str, ...] | None = None
    lineage: Lineage = field(default_factory=Lineage)
    step: str = "export"
    step_config: dict[str, Any] = field(default_factory=dict)
    parent_sha: str | None = None
    # parity: the model vs what it was converted from, meant to be the same function (export: torch);
    # fidelity: the artifact vs its parent after a change of numerics (quantize: FP32; compile: the parent ONNX)
    parity: CheckRecord | None = None
    fidelity: CheckRecord | None = None
    calibration: CalibrationRecord | None = None
    runtime: RuntimeSettings | None = None
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    tool_versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # step-specific facts nothing reads back
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def load(cls, d: Any, source: str = "manifest") -> Manifest:
        """Read a manifest of any schema this release knows; a broken one is invalid input (exit 3).

        Raises:
            ModelFileError: not an object, a newer schema, unknown keys or wrong types (named).
        """
        if not isinstance(d, Mapping):
            raise ModelFileError(f"{source}: manifest is not a JSON object.")
        version = d.get("schema_version", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ModelFileError(
                f"{source}: manifest schema {version!r} is newer than this edgeformer understands "
                f"({SCHEMA_VERSION}); upgrade edgeformer."
            )
        if version < 2:
            extra = d.get("extra") or {}  # the upgrade unpacks these two as objects
            if not isinstance(extra, Mapping) or not isinstance(extra.get("runtime") or {}, Mapping):
                raise ModelFileError(
                    f"{source}: schema-1 manifest whose extra or extra.runtime is not an object; "
                    "re-export the artifact."
                )
            d = _upgrade_v1(d)
        if isinstance(d.get("preprocessing"), Mapping):  # parsed once, here, with the required-field check
            d = {**d, "preprocessing": input_spec_from_dict(d["preprocessing"], where=f"{source}: preprocessing")}
        try:
            return cls.from_dict(d, where=source)
        except ConfigError as e:
            raise ModelFileError(f"{e}; re-export the artifact.") from e

    @property
    def sha(self) -> str | None:
        return self.files.get(self.main_file)


def _upgrade_v1(d: Mapping[str, Any]) -> dict[str, Any]:
    """Schema 1 (edgeformer 0.1.0 before the typed manifest) -> 2: move what ``extra`` carried to its field."""
    d, extra = dict(d), dict(d.get("extra") or {})
    checkpoint = extra.pop("checkpoint", None)
    d["lineage"] = {
        "arch": extra.pop("arch", None),
        "label_set": extra.pop("label_set", None),
        "checkpoint": checkpoint,
    }
    # old parity/fidelity dicts have other keys than CheckRecord (a list of outputs, "samples" naming the
    # inputs): kept in extra as they were written, under a name no reader takes for the typed record
    for key in ("parity", "fidelity"):
        if key in extra:
            extra[f"{key}_v1"] = extra.pop(key)
    if "calibration" in extra:
        d["calibration"] = extra.pop("calibration")
    runtime = extra.pop("runtime", None)
    session = extra.get("session")  # ORT-optimized artifacts said how to open them here
    if runtime or isinstance(session, Mapping):
        merged = {**(runtime or {})}
        if isinstance(session, Mapping):
            merged |= {k: session[k] for k in ("graph_optimization", "providers", "threads") if k in session}
        d["runtime"] = merged
    d["extra"] = extra
    d["schema_version"] = SCHEMA_VERSION
    return d


def tool_versions(names: Iterable[str] = TOOLS) -> dict[str, str]:
    """Installed versions of the Python distributions ``names``, read without importing them (absent: left out)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
