"""ONNX artifact -> TensorRT engine artifact, built with the TensorRT Python API on this machine's GPU.

Precision works differently across TensorRT majors, and :func:`build_plan` is the one place that knows:

* TensorRT 10 (weakly typed networks): fp32 builds as is; fp16 sets ``BuilderFlag.FP16`` and lets the
  builder choose fp16 kernels; int8 sets ``BuilderFlag.INT8`` on an explicitly quantized (QDQ) model.
* TensorRT 11+ removed those flags and implicit calibration: every network is strongly typed and the
  precision comes from the ONNX itself. fp16 therefore converts the graph to fp16 first (I/O stays
  float32, numerically fragile reductions stay fp32); int8 is the QDQ model as is.

INT8 never calibrates inside TensorRT: it builds from the QDQ artifact ``edgeformer quantize --preset
tensorrt`` writes, so the same scales run on ORT and TensorRT and both majors give the same numerics.
Layers the QDQ model leaves in float run in fp32.

Dynamic batch becomes one optimization profile (min/opt/max from :class:`TensorRtConfig`); every other
dim must be concrete (symbolic height/width take ``resolution``). The timing cache is shared between
builds and processes: loaded before the build, merged under a lock file and replaced atomically after,
a corrupt one quarantined with a warning (:mod:`edgeformer.compile.tensorrt_cache`).

Example::

    art = compile_tensorrt(Artifact.load("build/l1"), TensorRtConfig(precision="fp16", max_batch=8),
                           out=Path("build/l1-trt"), overwrite=False)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..artifact import Artifact, Manifest, TensorSpec, check_output_path
from ..compare import CheckRecord, min_cosine_problem, ort_runner
from ..errors import BackendUnavailableError, ConfigError, DynamicShapeError, ModelFileError, QualityGateError
from ..export.parity import compare_on, parity_inputs
from ..modelfile import load_onnx
from ..records import Record
from ..runtimes.base import SessionOptions, TensorInfo
from ..runtimes.feeds import concrete_shape
from ..runtimes.tensorrt import (
    ENGINE_FACTS,
    TensorRtSession,
    available,
    cuda_call,
    cudart,
    device_facts,
    import_tensorrt,
    trt_logger,
    trt_major,
)
from ..runtimes.unsupported import tensorrt_parser_nodes
from ..scratch import scratch_dir
from ..steps import USE_DEFAULT_CACHE, StepSpec, artifact_sha, run_step
from .tensorrt_cache import attach_timing_cache, save_timing_cache
from .tensorrt_cache import quarantine as quarantine  # re-exported for existing imports
from .tensorrt_cache import write_bytes_atomic as write_bytes_atomic  # re-exported for existing imports

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
# kept in fp32 by the fp16 conversion: a mean of squares overflows fp16 (max 65504) once activations pass ~256
FP32_OPS = ("LayerNormalization", "ReduceMean", "ReduceSum", "Pow", "Sqrt", "Exp", "Log")
_QUANT = ("int8", "mixed")


@dataclass(frozen=True, kw_only=True)
class TensorRtConfig(Record):
    """How to build a TensorRT engine. Invalid values raise :class:`ConfigError` listing every problem.

    ``resolution`` sets symbolic height/width of NCHW inputs; ``timing_cache`` is a file shared by builds
    (created if missing); ``min_cosine`` turns the recorded fidelity into a gate (``None``: record only).
    """

    precision: Literal["fp32", "fp16", "int8"] = "fp16"
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 8
    resolution: int | None = None
    workspace_mb: int = 1024
    timing_cache: Path | None = None
    builder_optimization_level: int = 3  # TensorRT's default; 5 searches longest for the fastest kernels
    tf32: bool = True  # TensorRT's default for fp32 layers on Ampere+; False for bit-closer fp32 results
    device: int = 0
    check_fidelity: bool = True
    fidelity_samples: int = 3
    min_cosine: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.timing_cache, str):  # a str path means the same file; keep the field a Path
            object.__setattr__(self, "timing_cache", Path(self.timing_cache))
        problems = []
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)} (--precision)")
        ints = (
            "min_batch",
            "opt_batch",
            "max_batch",
            "workspace_mb",
            "device",
            "fidelity_samples",
            "builder_optimization_level",
        )
        wrong_type = [n for n in ints if not isinstance(getattr(self, n), int) or isinstance(getattr(self, n), bool)]
        problems += [f"{n} must be an int, got {getattr(self, n)!r}" for n in wrong_type]
        if not wrong_type:  # range checks only make sense on ints
            if self.min_batch < 1 or not self.min_batch <= self.opt_batch <= self.max_batch:
                problems.append(
                    f"batch sizes must satisfy 1 <= min_batch <= opt_batch <= max_batch, got {self.min_batch} / "
                    f"{self.opt_batch} / {self.max_batch} (--min-batch/--opt-batch/--max-batch)"
                )
            if self.workspace_mb <= 0:
                problems.append(f"workspace_mb must be > 0, got {self.workspace_mb} (--workspace-mb)")
            if not 0 <= self.builder_optimization_level <= 5:
                problems.append(f"builder_optimization_level must be 0..5, got {self.builder_optimization_level}")
            if self.device < 0:
                problems.append(f"device must be a GPU index >= 0, got {self.device}")
            if self.fidelity_samples < 1:
                problems.append(f"fidelity_samples must be >= 1, got {self.fidelity_samples}")
        res = self.resolution
        if res is not None and (isinstance(res, bool) or not isinstance(res, int) or res < 1):
            problems.append(f"resolution must be a positive int, got {self.resolution!r} (--resolution)")
        try:  # a path the OS refuses outright (a name past 255 bytes) is no file path either
            bad_cache = not isinstance(self.timing_cache, Path) or self.timing_cache.is_dir()
        except OSError:
            bad_cache = True
        if self.timing_cache is not None and bad_cache:
            problems.append(f"timing_cache must be a file path, got {self.timing_cache!r:.200}")
        if problem := min_cosine_problem(self.min_cosine):
            problems.append(problem)
        if problems:
            raise ConfigError("invalid TensorRT config: " + "; ".join(problems) + ".")


# --- pure planning: what to build, checked before any TensorRT call ---------------------------------
def check_source(artifact: Artifact, precision: str) -> None:
    """Refuse a source artifact that cannot become an engine of ``precision``, saying which command fixes it."""
    m, where = artifact.manifest, artifact.path
    if m.format != "onnx":
        raise ModelFileError(
            f"{where}: TensorRT compiles ONNX artifacts, this one is {m.format!r}; pass the ONNX artifact "
            "`edgeformer export` (or `edgeformer quantize --preset tensorrt`) wrote."
        )
    if precision == "int8" and m.precision not in _QUANT:
        raise ConfigError(
            f"{where} is {m.precision}; TensorRT INT8 builds from an explicitly quantized (QDQ) model: run "
            f"`edgeformer quantize {where} --preset tensorrt` and compile its output with --precision int8."
        )
    if m.precision in _QUANT and precision != "int8":
        raise ConfigError(
            f"{where} is quantized ({m.precision}, Q/DQ nodes), which TensorRT runs in int8 whatever the flag: "
            "pass --precision int8, or compile the float parent for fp32/fp16."
        )
    if m.precision not in ("fp32", "fp16", *_QUANT):
        raise ConfigError(f"{where} is {m.precision}; TensorRT compiles fp32, fp16 or int8 (QDQ) ONNX models.")
    if m.precision == "fp16" and precision == "fp32":
        raise ConfigError(
            f"{where} is fp16; an fp32 engine would not restore the lost precision: compile the fp32 "
            "parent, or pass --precision fp16."
        )


def qdq_problems(proto: Any) -> list[str]:
    """QDQ features TensorRT rejects: unsigned (uint8) or non-zero zero points, i.e. asymmetric quantization."""
    from onnx import TensorProto, numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    problems = []
    for node in proto.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        zp = inits.get(node.input[2])
        if zp is None:
            continue
        if zp.data_type == TensorProto.UINT8:
            problems.append(f"{node.name or node.output[0]} ({node.op_type}) uses uint8")
        elif np.any(numpy_helper.to_array(zp) != 0):
            problems.append(f"{node.name or node.output[0]} ({node.op_type}) has a non-zero zero point")
    return problems


@dataclass(frozen=True, kw_only=True)
class InputProfile:
    """One input's min/opt/max shapes; ``dynamic`` inputs go into the optimization profile."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]
    dynamic: bool


def optimization_profile(inputs: Sequence[TensorSpec], config: TensorRtConfig) -> tuple[InputProfile, ...]:
    """Shapes for every input: a symbolic leading dim spans min/opt/max batch, other dims must be concrete.

    Raises:
        DynamicShapeError: a symbolic non-batch dim that ``resolution`` does not set (named, with the flag).
        ConfigError: a static batch outside min..max batch, or ``resolution`` for a model without symbolic sides.
    """
    if not inputs:
        raise ModelFileError("the artifact's manifest lists no inputs; re-export the model.")
    profiles, errors, resolution_used = [], [], False
    for spec in inputs:
        info = TensorInfo(name=spec.name, shape=tuple(spec.shape), dtype=spec.dtype)
        lead = spec.shape[0] if spec.shape else None
        static_batch = isinstance(lead, int) and lead >= 0
        if static_batch and not config.min_batch <= lead <= config.max_batch:
            raise ConfigError(
                f"input {spec.name!r} has a fixed batch of {lead}, outside --min-batch {config.min_batch} .. "
                f"--max-batch {config.max_batch}; set them around {lead}, or re-export with a dynamic batch."
            )
        resolution_used |= len(spec.shape) == 4 and any(isinstance(spec.shape[a], str) for a in (2, 3))
        batches = (lead, lead, lead) if static_batch else (config.min_batch, config.opt_batch, config.max_batch)
        try:
            lo, opt, hi = (concrete_shape(info, batch=b, resolution=config.resolution) for b in batches)
        except DynamicShapeError as e:
            errors.append(str(e))
            continue
        dynamic = not all(isinstance(d, int) and d >= 0 for d in spec.shape)
        profiles.append(InputProfile(name=spec.name, min=lo, opt=opt, max=hi, dynamic=dynamic))
    if errors:
        raise DynamicShapeError(
            "a TensorRT engine needs a concrete size for every dim but the batch: " + " ".join(errors)
        )
    if config.resolution is not None and not resolution_used:
        raise ConfigError(
            f"--resolution {config.resolution} applies to symbolic image sides, and this model has none; "
            "drop it, or re-export the model at that resolution."
        )
    return tuple(profiles)


@dataclass(frozen=True, kw_only=True)
class BuildPlan:
    """The TensorRT API path for a precision: network typing, builder flags, and whether to cast the ONNX to fp16."""

    major: int
    typing: Literal["weak", "strong"]
    builder_flags: tuple[str, ...]
    convert_to_fp16: bool


def build_plan(trt_version: str, precision: str, source_precision: str) -> BuildPlan:
    """Choose the TensorRT 10 (builder flags) or 11+ (strongly typed, precision in the ONNX) path."""
    major = trt_major(trt_version)
    if major < 10:
        raise BackendUnavailableError(
            f"edgeformer needs TensorRT >= 10, this is {trt_version}: pip install 'edgeformer[tensorrt]'"
        )
    if major == 10:
        flags = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8",)}[precision]
        return BuildPlan(major=major, typing="weak", builder_flags=flags, convert_to_fp16=False)
    return BuildPlan(
        major=major,
        typing="strong",
        builder_flags=(),
        convert_to_fp16=precision == "fp16" and source_precision == "fp32",
    )


def to_fp16(proto: Any) -> Any:
    """A copy of ``proto`` in fp16 with float32 inputs/outputs and :data:`FP32_OPS` kept in fp32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(FP32_OPS))
    _toposort(converted.graph)  # the converter appends its I/O casts at the end; the checker requires order
    return converted


def _toposort(graph: Any) -> None:
    produced_by = {out: i for i, n in enumerate(graph.node) for out in n.output}
    deps = [{produced_by[x] for x in _node_inputs(n) if x in produced_by} for n in graph.node]
    order, placed = [], set()
    for _ in range(len(graph.node)):  # each pass places at least one node of a DAG
        ready = [i for i in range(len(graph.node)) if i not in placed and deps[i] <= placed]
        if not ready:
            break
        order += ready
        placed.update(ready)
    if len(order) != len(graph.node):
        raise ModelFileError("the fp16 conversion produced a cyclic graph; compile with --precision fp32.")
    nodes = [graph.node[i] for i in order]
    del graph.node[:]
    graph.node.extend(nodes)


def _node_inputs(node: Any) -> Iterator[str]:
    yield from node.input
    for attr in node.attribute:  # If/Loop bodies read outer-scope values
        for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            for inner in sub.node:
                yield from _node_inputs(inner)


def describe_parser_errors(errors: Sequence[tuple[str, str, str]]) -> str:
    """One line per ``(node name, op, description)`` error of the ONNX parser."""
    return "; ".join(f"node {name or '?'} ({op or '?'}): {desc}" for name, op, desc in errors) or "no details"


# --- the build ------------------------------------------------------------------------------------------
def compile_tensorrt(
    artifact: Artifact, config: TensorRtConfig, out: Path, overwrite: bool = False, *, cache: Any = USE_DEFAULT_CACHE
) -> Artifact:
    """Build a TensorRT engine from an ONNX artifact and write it as a new ``tensorrt`` artifact.

    Everything that can be checked without TensorRT is checked first (config, source precision, shapes,
    output path), so a CPU machine reports a wrong argument as such and not as a missing GPU. Cached by the
    input's sha256, ``config`` and the GPU it is built for (an engine runs on that GPU model only;
    :mod:`edgeformer.steps`); ``cache=None`` rebuilds.

    Raises:
        ConfigError: bad config, or a precision the source cannot give (int8 needs a QDQ artifact).
        DynamicShapeError: a symbolic dim other than the batch with no size (``resolution`` sets image sides).
        ModelFileError: not an ONNX artifact, or TensorRT cannot parse/build it (failing nodes listed).
        BackendUnavailableError: no TensorRT, cuda-python or NVIDIA GPU here (exit 5).
        QualityGateError: fidelity below ``config.min_cosine``.
    """
    if not isinstance(config, TensorRtConfig):
        raise ConfigError(f"compile_tensorrt takes a TensorRtConfig, got {type(config).__name__}.")
    check_source(artifact, config.precision)
    profile = optimization_profile(artifact.manifest.inputs, config)
    check_output_path(Path(out), [artifact.path], overwrite)  # before CUDA is touched (run_step checks it again)
    facts: dict[str, Any] | None = None
    if available() is None:  # else the build reports it
        trt, rt = import_tensorrt(), cudart()
        cuda_call(rt, rt.cudaSetDevice(config.device), f"selecting GPU {config.device}")  # TensorRT builds for it
        facts = device_facts(trt, config.device)
    # an engine is for one TensorRT version (in the tool versions) and one GPU model: both key the cache
    gpu = {k: facts[k] for k in ENGINE_FACTS if k in facts} if facts is not None else None
    spec = StepSpec(
        step="compile:tensorrt",
        input_sha=artifact_sha(artifact) if facts is not None else None,
        config={**config.to_dict(), "gpu": gpu},
    )

    def build(folder: Path) -> Manifest:
        if facts is None:
            raise BackendUnavailableError(f"TensorRT compile cannot run here: {available()}")
        return _build_artifact(artifact, config, folder, profile, facts)

    return run_step(spec, build, out=out, guard=[artifact.path], overwrite=overwrite, cache=cache)


def _build_artifact(
    artifact: Artifact, config: TensorRtConfig, folder: Path, profile: Sequence[InputProfile], facts: dict[str, Any]
) -> Manifest:
    """Build the engine into ``folder`` and check its fidelity; the manifest to commit."""
    proto = load_onnx(artifact.model_path)  # external data is vetted here, before TensorRT reads any of it
    bad = qdq_problems(proto) if artifact.precision in _QUANT else []
    if bad:
        raise ConfigError(
            f"{artifact.path}: TensorRT needs symmetric int8 quantization; {'; '.join(bad[:5])}. "
            "Re-quantize with `edgeformer quantize --preset tensorrt`."
        )
    trt = import_tensorrt()
    plan = build_plan(trt.__version__, config.precision, artifact.precision)
    with scratch_dir("trt-build", folder.parent, beside=folder.name) as tmp:
        source = artifact.model_path
        if plan.convert_to_fp16:
            import onnx

            source, fp16 = Path(tmp) / "model_fp16.onnx", to_fp16(proto)
            onnx.save(fp16, source, save_as_external_data=fp16.ByteSize() > 2**31 - 1)  # protobuf's size limit
        start = time.perf_counter()
        (folder / "model.engine").write_bytes(_build(trt, source, profile, plan, config))
        m = artifact.manifest
        extra: dict[str, Any] = {
            **facts,
            "network": f"{plan.typing}ly typed",
            "builder_flags": list(plan.builder_flags),
            "converted_to_fp16": plan.convert_to_fp16,
            "profile": {p.name: {"min": p.min, "opt": p.opt, "max": p.max} for p in profile},
            "build_seconds": round(time.perf_counter() - start, 2),
        }
        manifest = artifact.child_manifest(
            step="compile",
            format="tensorrt",
            precision=m.precision if m.precision in _QUANT else config.precision,
            main_file="model.engine",
            step_config=config.to_dict(),
            extra=extra,
        )
        report = (
            _check_fidelity(artifact, Artifact(folder, manifest), profile, config)
            if config.check_fidelity
            else CheckRecord(skipped="check_fidelity=False")
        )
        return dataclasses.replace(manifest, fidelity=report)


def _build(
    trt: Any, onnx_path: Path, profile: Sequence[InputProfile], plan: BuildPlan, config: TensorRtConfig
) -> bytes:
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    # no flags: explicit batch is the only mode since TensorRT 10, and 11 types every network strongly
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        # the parser leaves the name or operator empty for some errors: its node index finds them in the graph
        rows = tensorrt_parser_nodes(
            [(e.node(), e.node_name(), e.node_operator(), e.desc()) for e in errors], onnx_path
        )
        listed = describe_parser_errors([(node.name, node.op_type, desc) for node, desc in rows])
        raise ModelFileError(
            f"TensorRT {trt.__version__} cannot parse {onnx_path.name}: {listed}. These ops or "
            "attributes are unsupported by TensorRT; use --format ort or openvino, or change the model."
        )
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    if names != {p.name for p in profile}:
        raise ModelFileError(
            f"the manifest's inputs {sorted(p.name for p in profile)} differ from the graph's "
            f"{sorted(names)}; re-export the artifact."
        )
    bconfig = builder.create_builder_config()
    bconfig.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mb << 20)
    bconfig.builder_optimization_level = config.builder_optimization_level
    for flag in plan.builder_flags:
        bconfig.set_flag(getattr(trt.BuilderFlag, flag))
    if not config.tf32 and hasattr(trt.BuilderFlag, "TF32"):
        bconfig.clear_flag(trt.BuilderFlag.TF32)
    if any(p.dynamic for p in profile):
        opt_profile = builder.create_optimization_profile()
        for p in profile:
            opt_profile.set_shape(p.name, p.min, p.opt, p.max)
        bconfig.add_optimization_profile(opt_profile)
    if config.timing_cache is not None:
        attach_timing_cache(bconfig, config.timing_cache)
    plan_bytes = builder.build_serialized_network(network, bconfig)
    if plan_bytes is None:
        raise ModelFileError(
            f"TensorRT could not build an engine from {onnx_path.name}: "
            f"{'; '.join(logger.errors[-3:]) or 'no reason given'}. If it ran out of memory, raise "
            "--workspace-mb or lower --max-batch."
        )
    if config.timing_cache is not None:
        save_timing_cache(bconfig, config.timing_cache)
    return bytes(plan_bytes)


def _check_fidelity(
    parent: Artifact, engine: Artifact, profile: Sequence[InputProfile], config: TensorRtConfig
) -> CheckRecord:

    shapes = {p.name: p.opt for p in profile}
    dtypes = {t.name: t.dtype for t in parent.manifest.inputs}
    kind = getattr(parent.manifest.preprocessing, "kind", None)
    inputs = parity_inputs(shapes, kind=kind, samples=config.fidelity_samples, seed=0, dtypes=dtypes)
    session = TensorRtSession(engine, SessionOptions(providers=(f"cuda:{config.device}",)))
    try:
        agreement = compare_on(ort_runner(parent.model_path), session.run, inputs)
    finally:
        session.close()
    log.info(
        "TensorRT %s engine: worst cosine %.6f vs the ONNX parent%s",
        engine.precision,
        agreement.cosine,
        f" ({agreement.problem})" if agreement.problem else "",
    )
    # meets(), not a bare `<`: a NaN output would pass `nan < min_cosine`
    if config.min_cosine is not None and (reason := agreement.meets(min_cosine=config.min_cosine)):
        raise QualityGateError(
            f"the TensorRT {config.precision} engine disagrees with the ONNX parent: {reason}; nothing was written. "
            "Try --precision fp32, or a different quantization."
        )
    return agreement.to_record(sample_names=list(inputs), min_cosine=config.min_cosine)


__all__ = [
    "FP32_OPS",
    "PRECISIONS",
    "BuildPlan",
    "InputProfile",
    "TensorRtConfig",
    "available",
    "build_plan",
    "check_source",
    "compile_tensorrt",
    "describe_parser_errors",
    "optimization_profile",
    "qdq_problems",
    "to_fp16",
]
