"""ONNX artifact -> ORT-optimized artifact: ONNX Runtime's graph optimizer run once, offline, and saved.

A session normally re-optimizes the graph on every load; saving the result (``SessionOptions.
optimized_model_filepath``) moves that work to build time and freezes the graph that is profiled.
What the levels bake in, and so where the saved model can run:

* ``basic``: constant folding and redundant-node removal; standard ONNX ops, portable to any runtime.
* ``extended`` (default): adds fusions into ``com.microsoft`` contrib ops (FusedConv, FusedMatMul,
  attention); runs on ONNX Runtime with the execution provider it was optimized for.
* ``all``: adds layout transforms: on CPU the NCHWc blocked layout (``com.microsoft.nchwc``), whose
  block size is the vector width of *this* CPU (8 floats on AVX2, 16 on AVX-512), so the model is tied
  to the same EP on a CPU of the same family. ORT warns about this itself.

``extended`` is the default. Measured on efficientformer_l1, efficientformerv2_s1, shvit_s1 and shvit_s4
(AVX2 CPU, ORT 1.31, 1 thread, CPU time per call): a saved ``extended`` model loaded with ORT's default
level ``all`` runs within 1-5% of a saved ``all`` model (layout transforms cost 50-150 ms once, at load),
while loading it with optimization *disabled* is 1.1-1.7x slower (NCHWc matters most for SHViT's convs).
So ``extended`` stays portable and loses nothing, provided the runtime re-applies the layout transforms
for the CPU it runs on: the manifest says so (``runtime.graph_optimization = "all"``). Choose
``all`` only for a model that stays on the machine it was built on (it then loads with optimization off).

``fp16`` converts the graph with onnxruntime's float16 converter (inputs/outputs stay float32, the
numerically fragile reductions stay fp32); ``int8`` optimizes a QDQ artifact from ``edgeformer quantize``.
``save_ort_format`` also writes ``model.ort`` (ORT's flatbuffer format for mobile/minimal builds) and
``model.required_operators.config`` (``--include_ops_by_config`` of a minimal ORT build), made the way
``python -m onnxruntime.tools.convert_onnx_models_to_ort`` makes them.

Example::

    art = compile_ort(Artifact.load("build/l1"), OrtOptimizeConfig(save_ort_format=True), out=Path("build/l1-ort"))
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..artifact import Artifact, Manifest, input_paths
from ..compare import CheckRecord, min_cosine_problem, ort_runner
from ..errors import (
    BackendUnavailableError,
    ConfigError,
    DynamicShapeError,
    ModelFileError,
    QualityGateError,
    did_you_mean,
)
from ..export.parity import compare_on
from ..manifest import RuntimeSettings
from ..modelfile import embed_manifest, load_onnx
from ..records import Record
from ..runtimes.base import SessionOptions
from ..runtimes.ort import OrtSession, _first_line, _native_errors
from ..scratch import scratch_dir
from ..steps import USE_DEFAULT_CACHE, StepSpec, artifact_sha, run_step
from .openvino import SUSPECT_COSINE, fidelity_inputs
from .tensorrt import FP32_OPS, to_fp16

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
LEVELS = ("basic", "extended", "all")
MODEL_FILE = "model.onnx"
ORT_FILE = "model.ort"
OPS_CONFIG = "model.required_operators.config"
_QUANT = ("int8", "mixed")
_PORTABILITY = {
    "basic": "standard ONNX ops only: portable to any ONNX runtime and execution provider",
    "extended": "contains ONNX Runtime contrib ops fused for {ep}: runs on ONNX Runtime with {ep} only",
    "all": "contains layout-specific ops for {ep} on this CPU family (NCHWc block size = this CPU's vector "
    "width): runs on ONNX Runtime with {ep} on a CPU like this one only",
}


@dataclass(frozen=True, kw_only=True)
class OrtOptimizeConfig(Record):
    """How to optimize an ONNX model offline with ONNX Runtime. Invalid values raise :class:`ConfigError`.

    ``threads`` and ``execution_provider`` are those the optimizer runs with and are recorded for the
    runtime; ``min_cosine`` turns the recorded fidelity into a gate (``None``: record only).
    """

    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    graph_optimization: Literal["basic", "extended", "all"] = "extended"
    threads: int | None = None
    execution_provider: str = "CPUExecutionProvider"
    save_ort_format: bool = False
    check_fidelity: bool = True
    fidelity_samples: int = 3
    min_cosine: float | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)} (--precision)")
        if self.graph_optimization not in LEVELS:
            problems.append(
                f"graph_optimization {self.graph_optimization!r} is not one of {', '.join(LEVELS)}"
                f"{did_you_mean(str(self.graph_optimization), LEVELS)}"
            )
        t = self.threads
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 1):
            problems.append(f"threads must be a positive int or None, got {t!r}")
        if not isinstance(self.execution_provider, str) or not self.execution_provider:
            problems.append(f"execution_provider must be a provider name, got {self.execution_provider!r}")
        for name in ("save_ort_format", "check_fidelity"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be True or False, got {getattr(self, name)!r}")
        n = self.fidelity_samples
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            problems.append(f"fidelity_samples must be an int >= 1, got {n!r}")
        if problem := min_cosine_problem(self.min_cosine):
            problems.append(problem)
        if problems:
            raise ConfigError("invalid ORT optimize config: " + "; ".join(problems) + ".")


def available() -> str | None:
    """``None`` when onnxruntime is importable here, else what to install."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed: pip install onnxruntime"
    return None


def check_source(artifact: Artifact, precision: str) -> None:
    """Refuse a source that cannot give ``precision``, naming the command that makes the right one."""
    m, where = artifact.manifest, artifact.path
    if m.format != "onnx":
        raise ModelFileError(
            f"{where}: the ORT target optimizes ONNX artifacts, this one is {m.format!r}; pass the ONNX artifact "
            "`edgeformer export` (or `edgeformer quantize`) wrote."
        )
    quantized = m.precision in _QUANT
    if precision == "int8" and not quantized:
        raise ConfigError(
            f"{where} is {m.precision}; ORT int8 runs an explicitly quantized (QDQ) model: run "
            f"`edgeformer quantize {where}` and compile its output with --precision int8."
        )
    if quantized and precision != "int8":
        raise ConfigError(
            f"{where} is quantized ({m.precision}); pass --precision int8, or compile the float parent for fp32/fp16."
        )
    if m.precision not in ("fp32", "fp16", *_QUANT):
        raise ConfigError(f"{where} is {m.precision}; the ORT target takes fp32, fp16 or int8 (QDQ) ONNX models.")
    if m.precision == "fp16" and precision == "fp32":
        raise ConfigError(f"{where} is fp16; fp32 would not restore the lost precision: compile its fp32 parent.")


def compile_ort(
    artifact: Artifact, config: OrtOptimizeConfig, out: Path, overwrite: bool = False, *, cache: Any = USE_DEFAULT_CACHE
) -> Artifact:
    """Optimize an ONNX artifact with ONNX Runtime and write the result as a new ``ort`` artifact.

    Cached by the input's sha256 and ``config`` (:mod:`edgeformer.steps`); ``cache=None`` rebuilds.

    Raises:
        ConfigError: bad config, or a precision the source cannot give (int8 needs a QDQ artifact).
        ModelFileError: not an ONNX artifact, or ONNX Runtime cannot load/optimize it.
        BackendUnavailableError: onnxruntime or the execution provider missing here (exit 5).
        QualityGateError: fidelity below ``config.min_cosine``; nothing is written.
    """
    if not isinstance(config, OrtOptimizeConfig):
        raise ConfigError(f"compile_ort takes an OrtOptimizeConfig, got {type(config).__name__}.")
    check_source(artifact, config.precision)
    spec = StepSpec(step="compile:ort", input_sha=artifact_sha(artifact), config=config.to_dict())

    def build(folder: Path) -> Manifest:
        return _build(artifact, config, folder)

    return run_step(spec, build, out=out, guard=input_paths(artifact), overwrite=overwrite, cache=cache)


def _build(artifact: Artifact, config: OrtOptimizeConfig, folder: Path) -> Manifest:
    """Optimize into ``folder`` (and ``model.ort`` with ``save_ort_format``), check fidelity; the manifest."""
    reason = available()
    if reason:
        raise BackendUnavailableError(f"the ORT target cannot run here: {reason}")
    import onnx
    import onnxruntime as ort

    _require_provider(ort, config.execution_provider)
    proto = load_onnx(artifact.model_path)  # external data is vetted before ORT reads any of it
    convert = config.precision == "fp16" and artifact.precision == "fp32"
    with scratch_dir("ort-optimize", folder.parent, beside=folder.name) as tmp:
        source = artifact.model_path
        if convert:
            source = Path(tmp) / "model_fp16.onnx"
            onnx.save(to_fp16(proto), source)
        _optimize(ort, source, folder / MODEL_FILE, config, ort_format=False)
        optimized = onnx.load(str(folder / MODEL_FILE))
        ops = collections.Counter(f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in optimized.graph.node)
        domains = sorted({n.domain for n in optimized.graph.node if n.domain not in ("", "ai.onnx")})
        ep = config.execution_provider
        m = artifact.manifest
        extra: dict[str, Any] = {
            "onnxruntime": ort.__version__,
            "graph_optimization": config.graph_optimization,
            "execution_provider": ep,
            "threads": config.threads,
            "portability": _PORTABILITY[config.graph_optimization].format(ep=ep),
            "contrib_domains": domains,
            "nodes": {"before": len(proto.graph.node), "after": len(optimized.graph.node)},
            "ops": dict(ops.most_common()),
        }
        if convert:
            extra["fp16"] = {"converter": "onnxruntime.transformers.float16", "kept_fp32": list(FP32_OPS)}
        manifest = artifact.child_manifest(
            step="compile",
            format="ort",
            precision=m.precision if m.precision in _QUANT else config.precision,
            main_file=MODEL_FILE,
            step_config=config.to_dict(),
            # how to load it: layout transforms belong to the CPU it runs on, so below "all" the runtime applies
            # them (measured: skipping them is up to 1.7x slower); an "all" model has them already
            runtime=RuntimeSettings(
                graph_optimization="disable" if config.graph_optimization == "all" else "all",
                providers=(ep,),
                threads=config.threads,
            ),
            extra=extra,
        )
        if config.save_ort_format:
            extra["ort_format"] = _write_ort_format(ort, source, folder, config)
        fidelity = (
            _fidelity(artifact, folder, manifest, config)
            if config.check_fidelity
            else CheckRecord(skipped="check_fidelity=False")
        )
        manifest = dataclasses.replace(manifest, extra=extra, fidelity=fidelity)
        embed_manifest(optimized, manifest)  # a bare model.onnx copied off the artifact keeps its preprocessing
        onnx.save(optimized, str(folder / MODEL_FILE))
        log.info(
            "ORT %s optimization of %s: %d -> %d nodes; %s",
            config.graph_optimization,
            m.model_name,
            len(proto.graph.node),
            len(optimized.graph.node),
            extra["portability"],
        )
        return manifest


def _require_provider(ort: Any, provider: str) -> None:
    present = ort.get_available_providers()
    if provider not in present:
        raise BackendUnavailableError(
            f"execution provider {provider} is not available in this onnxruntime (available: {', '.join(present)})"
            f"{did_you_mean(provider, present)}; install the onnxruntime build that has it (e.g. onnxruntime-gpu "
            "for CUDA) and optimize on a machine where it runs. edgeformer never falls back to another provider."
        )


def _session_options(ort: Any, target: Path, config: OrtOptimizeConfig) -> Any:
    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    so = ort.SessionOptions()
    so.graph_optimization_level = levels[config.graph_optimization]
    so.optimized_model_filepath = str(target)
    so.log_severity_level = 3  # ORT's "hardware specific" warning for level all is recorded in the manifest instead
    if config.threads is not None:
        so.intra_op_num_threads = config.threads
    return so


def _optimize(ort: Any, source: Path, target: Path, config: OrtOptimizeConfig, *, ort_format: bool) -> None:

    so = _session_options(ort, target, config)
    disabled = None
    if ort_format:
        so.add_session_config_entry("session.save_model_format", "ORT")
        # as convert_onnx_models_to_ort does: the .ort format is for mobile builds, where x86 NCHWc layouts
        # cannot run, so its level "all" leaves the NCHWc transformer out
        disabled = ["NchwcTransformer"] if config.graph_optimization == "all" else None
    try:
        ort.InferenceSession(
            str(source), sess_options=so, providers=[config.execution_provider], disabled_optimizers=disabled
        )
    except _native_errors() as e:
        raise ModelFileError(
            f"onnxruntime {ort.__version__} cannot optimize {source.name} at level {config.graph_optimization!r} "
            f"on {config.execution_provider}: {_first_line(e)}; try a lower level (--set graph_optimization=basic), "
            "or re-export."
        ) from e
    if not target.is_file():
        raise ModelFileError(f"onnxruntime wrote no optimized model to {target}; check the disk and retry.")


def _write_ort_format(ort: Any, source: Path, folder: Path, config: OrtOptimizeConfig) -> dict[str, Any]:
    from onnxruntime.tools.ort_format_model import create_config_from_models

    target = folder / ORT_FILE
    _optimize(ort, source, target, config, ort_format=True)
    ops_config = folder / OPS_CONFIG
    # the generator logs "Created config in <tmp>" at INFO on its own logger: noise under a progress bar
    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
    create_config_from_models([target], ops_config, enable_type_reduction=False)
    # the generator names the model by its absolute (temporary) path; keep the artifact relocatable
    ops_config.write_text(ops_config.read_text(encoding="utf-8").replace(str(target), ORT_FILE), encoding="utf-8")
    return {
        "file": ORT_FILE,
        "required_operators": OPS_CONFIG,
        "disabled_optimizers": ["NchwcTransformer"] if config.graph_optimization == "all" else [],
    }


def _fidelity(parent: Artifact, folder: Path, manifest: Manifest, config: OrtOptimizeConfig) -> CheckRecord:
    """Fidelity of the saved model (and of ``model.ort``) vs the parent ONNX on ORT's CPU provider."""

    try:
        inputs = fidelity_inputs(parent, config.fidelity_samples)
    except DynamicShapeError as e:  # a model from elsewhere with symbolic sides: the optimized model is still good
        if config.min_cosine is not None:
            raise
        log.warning("fidelity of the ORT-optimized model not checked: %s", e)
        return CheckRecord(skipped=str(e))
    reference = ort_runner(parent.model_path)
    options = SessionOptions(
        threads=config.threads, providers=(config.execution_provider,), graph_optimization="disable"
    )
    checked = {MODEL_FILE: manifest}
    if config.save_ort_format:
        checked[ORT_FILE] = dataclasses.replace(manifest, main_file=ORT_FILE)
    agreements = {}
    for name, m in checked.items():
        session = OrtSession(Artifact(folder, m), options)
        try:
            agreements[name] = compare_on(reference, session.run, inputs)
        finally:
            session.close()
    records = {
        name: a.to_record(sample_names=list(inputs), min_cosine=config.min_cosine) for name, a in agreements.items()
    }
    report = dataclasses.replace(records.pop(MODEL_FILE), other_files=records)  # model.ort, when written
    log.info(
        "ORT-optimized %s model: worst cosine %s vs the ONNX parent",
        config.precision,
        ", ".join(f"{a.cosine:.6f} ({name})" for name, a in agreements.items()),
    )

    def failing(bar: float) -> str:
        # meets(), not a bare `<`: a NaN output would pass `nan < bar`
        return "; ".join(f"{name}: {reason}" for name, a in agreements.items() if (reason := a.meets(min_cosine=bar)))

    if config.min_cosine is None and (suspect := failing(SUSPECT_COSINE)):
        report = dataclasses.replace(
            report,
            warning=(
                f"the ORT-optimized {config.precision} model disagrees with its parent ({suspect}); do not deploy it "
                "without checking accuracy."
            ),
        )
        log.warning("ORT target: %s", report.warning)
    if config.min_cosine is not None and (reason := failing(config.min_cosine)):
        raise QualityGateError(
            f"the ORT-optimized {config.precision} model disagrees with the ONNX parent: {reason}; nothing was "
            "written. Try --precision fp32, or a lower level (--set graph_optimization=basic)."
        )
    return report


__all__ = ["LEVELS", "PRECISIONS", "OrtOptimizeConfig", "available", "check_source", "compile_ort"]
