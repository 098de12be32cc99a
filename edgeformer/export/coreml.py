"""torch -> CoreML ML program (``.mlpackage``), from a zoo model, an ONNX artifact, or your ``nn.Module``.

coremltools 7+ no longer reads ONNX, so every path starts from torch: :func:`compile_coreml` rebuilds the
parent ONNX artifact's model from its manifest (zoo name, recorded architecture, checkpoint, input shape;
read by :mod:`~edgeformer.compile.coreml`) and checks the rebuild against the parent on ONNX
Runtime; :func:`export_coreml` takes a zoo name or a module like :func:`edgeformer.export`;
:func:`compile_coreml_module` converts a module you hold.

Capture: ``torch.jit.trace`` by default, ``capture="export"`` for ``torch.export``. On this zoo both convert
every model at every precision to the same program (``docs/coreml_compatibility.md``) but for SHViT, whose
traced GroupNorm becomes ``sub/square/sqrt/real_div`` (fp16 squares overflow past |x - mean| = 256) where the
exported one stays a ``layer_norm``. Trace stays the default because coremltools translates more torch ops
from it (user modules) and Apple still calls it the stable path (``torch.export`` conversion is beta); torch
2.13 deprecates ``torch.jit.trace`` and traced models record torch's tracer warnings in ``extra``.

Choices, and why:

* ``mlprogram`` for ``minimum_deployment_target="iOS16"`` by default: the oldest target with int8 weight
  compression (``constexpr_affine_dequantize``); later targets add nothing this zoo needs (iOS17: activation
  quantization; iOS18: SDPA, per-block weights) and shut out devices. Pass ``"iOS17"``/``"iOS18"`` for those.
* Inputs stay the normalized float32 tensors the manifest's preprocessing makes (``TensorType``, not
  ``ImageType``): ``ImageType`` takes 8-bit pixels with one scale plus per-channel bias, which cannot express
  ImageNet's per-channel std exactly, neither resizes nor crops, and has no audio counterpart. Outputs are
  float32 too; an fp16 program casts at its edges, inside the graph.
* A fixed batch (``batch``, default 1): a range-flexible shape keeps a model off the Neural Engine.
* int8 is weight-only (``linear_quantize_weights``: symmetric, per output channel) over the fp16 program:
  weights are stored as int8 and dequantized at load, compute stays fp16; tensors under
  :data:`INT8_WEIGHT_THRESHOLD` elements (biases, norms) stay fp16, where int8 would save nothing.

Each package is checked as saved: I/O names, shapes and dtypes, the op census, the precision actually
present (fp16 compute and weights, int8 dequantize ops), the embedded manifest. Prediction needs macOS
(:mod:`edgeformer.runtimes.coreml`), so fidelity is measured there and recorded as not run elsewhere.

Example::

    art = compile_coreml(Artifact.load("build/l1"), CoreMlConfig(precision="fp16"), out=Path("build/l1-coreml"))
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..artifact import ONNX_METADATA_KEY, Artifact, Manifest, TensorSpec, now_iso, tool_versions
from ..cache import StepCache
from ..compare import CheckRecord, min_cosine_problem, ort_runner
from ..errors import (
    BackendUnavailableError,
    ConfigError,
    InvalidInputError,
    ModelFileError,
    QualityGateError,
)
from ..records import Record
from ..runtimes import coreml as rt
from ..runtimes.unsupported import coreml_unsupported, describe, torch_nodes
from ..steps import USE_DEFAULT_CACHE, StepSpec, run_step
from .formats import source_sha
from .parity import compare_on, parity_inputs

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
DEPLOYMENT_TARGETS = ("iOS16", "iOS17", "iOS18", "macOS13", "macOS14", "macOS15")
PACKAGE = "model.mlpackage"
MAIN_FILE = f"{PACKAGE}/Manifest.json"  # a manifest's main_file names a file: the package's root index
INT8_WEIGHT_THRESHOLD = 2048  # coremltools' default: smaller tensors stay fp16


@dataclass(frozen=True, kw_only=True)
class CoreMlConfig(Record):
    """How to convert to CoreML. Invalid values raise :class:`ConfigError` listing every problem.

    ``batch``/``resolution`` default to the parent's (compile) or the model's (export). ``checkpoint`` is the
    weights file the parent ONNX was exported with: compile rebuilds from it (sha256 checked). ``compute_units``
    is recorded and is the default when the package runs. ``min_cosine`` gates the fidelity measured on macOS.
    """

    precision: Literal["fp32", "fp16", "int8"] = "fp16"
    compute_units: Literal["all", "cpu_only", "cpu_and_gpu", "cpu_and_ne"] = "all"
    minimum_deployment_target: Literal["iOS16", "iOS17", "iOS18", "macOS13", "macOS14", "macOS15"] = "iOS16"
    batch: int | None = None
    resolution: int | None = None
    capture: Literal["trace", "export"] = "trace"
    checkpoint: Path | None = None
    seed: int = 0
    fidelity_samples: int = 3
    min_cosine: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.checkpoint, str):  # a str path means the same file; keep the field a Path
            object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        choices = {
            "precision": PRECISIONS,
            "compute_units": tuple(rt.COMPUTE_UNITS),
            "minimum_deployment_target": DEPLOYMENT_TARGETS,
            "capture": ("trace", "export"),
        }
        problems = [
            f"{k} {getattr(self, k)!r} is not one of {', '.join(v)}"
            for k, v in choices.items()
            if getattr(self, k) not in v
        ]
        for name, low, optional in (
            ("batch", 1, True),
            ("resolution", 1, True),
            ("fidelity_samples", 1, False),
            ("seed", 0, False),
        ):
            v = getattr(self, name)
            if not (optional and v is None) and (isinstance(v, bool) or not isinstance(v, int) or v < low):
                problems.append(f"{name} must be an int >= {low}, got {v!r}")
        if problem := min_cosine_problem(self.min_cosine):
            problems.append(problem)
        if problems:
            raise ConfigError("invalid CoreML config: " + "; ".join(problems) + ".")


def available() -> str | None:
    """``None`` when CoreML *conversion* works here (any OS: only prediction needs macOS), else what to install."""
    missing = [m for m in ("coremltools", "torch") if importlib.util.find_spec(m) is None]
    return f"CoreML conversion needs {' and '.join(missing)}: {rt.INSTALL}" if missing else None


def checked_config(config: Any) -> CoreMlConfig:
    cfg = CoreMlConfig() if config is None else config
    if not isinstance(cfg, CoreMlConfig):
        raise ConfigError(f"CoreML conversion takes a CoreMlConfig, got {type(cfg).__name__}.")
    return cfg


def require_tools() -> None:
    # after the argument, input and output checks: a wrong argument is reported as such, not as a missing tool
    if reason := available():
        raise BackendUnavailableError(reason)


# --- entry points -----------------------------------------------------------------------------------
def export_coreml(
    model: Any,
    *,
    out: Path,
    example_inputs: tuple[Any, ...] | None = None,
    input_spec: Any = None,
    config: CoreMlConfig | None = None,
    checkpoint: str | Path | None = None,
    overwrite: bool = False,
    cache: StepCache | None = USE_DEFAULT_CACHE,
    **arch_overrides: Any,
) -> Artifact:
    """Convert a zoo model (by name) or an ``nn.Module`` straight from torch; arguments as :func:`edgeformer.export`.

    Raises:
        ConfigError: bad config or overrides; ``OutputExistsError`` for an existing ``out``.
        InvalidInputError: capture or conversion failed (coremltools names the op).
        BackendUnavailableError: coremltools or torch is not installed (exit 5).
    """
    cfg = checked_config(config)
    if checkpoint is not None and cfg.checkpoint is not None and Path(checkpoint) != cfg.checkpoint:
        raise ConfigError(f"checkpoint given twice ({checkpoint} and config.checkpoint {cfg.checkpoint}); give one.")
    ckpt = Path(checkpoint) if checkpoint is not None else cfg.checkpoint
    sha = source_sha(
        model, checkpoint=ckpt, arch_overrides=arch_overrides, example_inputs=example_inputs, input_spec=input_spec
    )
    spec = StepSpec(step="export:coreml", input_sha=sha, config=cfg.to_dict())

    def build(folder: Path) -> Manifest:
        require_tools()
        src = prepare_source_model(model, cfg, example_inputs, input_spec, ckpt, cfg.resolution, dict(arch_overrides))
        return build_package(src, cfg, folder, parent=None, checkpoint=ckpt)

    return run_step(spec, build, out=out, guard=[ckpt] if ckpt else [], overwrite=overwrite, cache=cache)


def compile_coreml_module(
    module: Any,
    example_inputs: tuple[Any, ...],
    input_spec: Any = None,
    config: CoreMlConfig | None = None,
    *,
    out: str | Path,
    overwrite: bool = False,
) -> Artifact:
    """Convert your own ``nn.Module``, traced on ``example_inputs``, to a ``coreml`` artifact at ``out`` (never
    cached: a module has no fingerprint).

    Example::

        art = compile_coreml_module(net, (torch.randn(1, 3, 96, 96),), ImageInput(resolution=96), out="build/net")
    """
    return export_coreml(
        module, out=Path(out), example_inputs=example_inputs, input_spec=input_spec, config=config, overwrite=overwrite
    )


# --- rebuilding the parent's torch model ------------------------------------------------------------
def prepare_source_model(model, cfg, example_inputs, input_spec, checkpoint, resolution, overrides) -> Any:
    import torch

    from .source import prepare_source  # torch: kept out of `import edgeformer.export.coreml`

    with torch.random.fork_rng(devices=[]):  # random-init weights: reproducible per seed; caller's RNG untouched
        torch.manual_seed(cfg.seed)
        return prepare_source(
            model,
            example_inputs=example_inputs,
            input_spec=input_spec,
            checkpoint=checkpoint,
            batch=cfg.batch,
            resolution=resolution,
            seed=cfg.seed,
            arch_overrides=overrides,
        )


def torch_runner(src: Any) -> Any:
    import torch

    def run(feeds):
        with torch.no_grad():
            out = src.module(*(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in src.input_names))
        return dict(zip(src.output_names, (o.detach().cpu().numpy() for o in src.flatten_outputs(out)), strict=True))

    return run


def fidelity_samples(src: Any, cfg: CoreMlConfig) -> dict[str, dict[str, np.ndarray]]:

    spec, pairs = src.input_spec, list(zip(src.input_names, src.example_inputs, strict=True))
    kind = getattr(spec, "kind", None) if getattr(spec, "frontend", "graph") == "graph" else None
    return parity_inputs(
        {n: tuple(t.shape) for n, t in pairs},
        kind=kind,
        samples=cfg.fidelity_samples,
        seed=cfg.seed,
        dtypes={n: str(t.dtype).removeprefix("torch.") for n, t in pairs},
        sample_rate=getattr(spec, "sample_rate", 16000),
    )


def _convert(src: Any, cfg: CoreMlConfig) -> tuple[Any, list[str]]:
    """Capture the module and convert it to an ML program of ``cfg.precision``.

    Returns the ``MLModel`` and torch's tracer warnings: a traced branch or size is frozen into the program,
    which a fidelity check would catch, and on Linux none can run, so they go into the manifest.
    """
    import torch
    from torch import nn

    ct = rt.import_coremltools()

    class FlatOutputs(nn.Module):  # a tuple of tensors whatever the module returns: dict outputs do not trace
        def __init__(self) -> None:
            super().__init__()
            self.module = src.module

        def forward(self, *args: Any) -> tuple[Any, ...]:
            return tuple(src.flatten_outputs(self.module(*args)))

    stage = "torch.jit.trace" if cfg.capture == "trace" else "torch.export"
    graph: Any = None
    try:
        with rt.quiet_coremltools() as caught, torch.no_grad():
            if cfg.capture == "trace":
                graph = torch.jit.trace(FlatOutputs().eval(), src.example_inputs, check_trace=False, strict=False)
            else:
                graph = torch.export.export(FlatOutputs().eval(), src.example_inputs).run_decompositions({})
            outs = src.flatten_outputs(src.module(*src.example_inputs))
            stage = f"coremltools {ct.__version__} conversion"
            mlmodel = ct.convert(
                graph,
                source="pytorch",
                inputs=[
                    ct.TensorType(name=n, shape=tuple(t.shape), dtype=_io_dtype(t))
                    for n, t in zip(src.input_names, src.example_inputs, strict=True)
                ],
                outputs=[
                    ct.TensorType(name=n, dtype=_io_dtype(o)) for n, o in zip(src.output_names, outs, strict=True)
                ],
                convert_to="mlprogram",
                minimum_deployment_target=getattr(ct.target, cfg.minimum_deployment_target),
                compute_precision=ct.precision.FLOAT32 if cfg.precision == "fp32" else ct.precision.FLOAT16,
                compute_units=getattr(ct.ComputeUnit, rt.COMPUTE_UNITS[cfg.compute_units]),
                skip_model_load=rt.platform_reason() is not None,  # Core ML cannot load it off macOS anyway
            )
            if cfg.precision == "int8":
                stage = "int8 weight quantization"
                mlmodel = _quantize_weights(mlmodel)
    except Exception as e:  # torch and coremltools raise many internal types; all mean "did not convert"
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__).rstrip(".")
        if nodes := coreml_unsupported(e, torch_nodes(graph)) if graph is not None else []:
            first = f"no conversion for {describe(nodes)}"  # coremltools names the op or the node, not both
        other = (
            "capture='export' (compile --set capture=export)"
            if cfg.capture == "trace"
            else "capture='trace' (the default)"
        )
        raise InvalidInputError(
            f"{src.name}: {stage} failed: {type(e).__name__}: {first[:300]}. Try {other}, "
            "another minimum_deployment_target, or --format onnx/openvino."
        ) from e
    tracer = {
        f"{Path(w.filename).name}:{w.lineno}: {str(w.message).split('.')[0]}"
        for w in caught
        if w.category.__name__ == "TracerWarning"
    }
    return mlmodel, sorted(tracer)


def _quantize_weights(mlmodel: Any) -> Any:
    import coremltools.optimize.coreml as cto

    op_config = cto.OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=INT8_WEIGHT_THRESHOLD
    )
    # an all-zero channel gets scale 0 and numpy warns about 0/0; it dequantizes to 0 * q = 0 whatever q is
    with np.errstate(invalid="ignore", divide="ignore"):
        return cto.linear_quantize_weights(mlmodel, config=cto.OptimizationConfig(global_config=op_config))


def _io_dtype(t: Any) -> Any:
    # Core ML multiarrays hold float16/32/64 and int32 only: floats go in as float32, the rest as int32
    return np.float32 if t.is_floating_point() else np.int32


def build_package(src, cfg, folder: Path, *, parent, checkpoint, source_check=None) -> Manifest:
    """Convert ``src``, check it and save the package into ``folder``; the manifest to commit. ``source_check`` is
    compile's record of the rebuilt torch model vs the parent ONNX (kept in ``extra``: it measures the rebuild, not
    this package)."""
    started = time.perf_counter()
    mlmodel, tracer_warnings = _convert(src, cfg)
    convert_s = time.perf_counter() - started
    info = rt.summarize_spec(mlmodel.get_spec())
    want_io = [(n, tuple(t.shape)) for n, t in zip(src.input_names, src.example_inputs, strict=True)]
    problems = info.precision_problems(cfg.precision)
    if [(i.name, i.shape) for i in info.inputs] != want_io or [o.name for o in info.outputs] != [*src.output_names]:
        problems.append(f"I/O {info.inputs} / {info.outputs} instead of {want_io} / {src.output_names}")
    if problems:
        raise ModelFileError(
            f"{src.name}: coremltools made a package that is not the requested {cfg.precision} "
            f"model: {'; '.join(problems)}. Report this with the coremltools version."
        )
    # the parent's own outputs are the reference when the rebuild was proven to be the parent's model
    proven = source_check is not None and source_check.skipped is None
    parent_onnx = parent.model_path if proven else None
    extra: dict[str, Any] = {"parent_format": parent.manifest.format} if parent is not None else {}
    if source_check is not None:
        extra["source_check"] = source_check.to_dict()
    extra |= {
        "weights": _weights(src, checkpoint, cfg),
        "capture": cfg.capture,
        "convert_seconds": round(convert_s, 2),
        "spec": info.to_dict(),
        "tracer_warnings": tracer_warnings,
    }
    if cfg.precision == "int8":
        extra["int8"] = {
            "mode": "linear_symmetric",
            "granularity": "per_channel",
            "weights_only": True,
            "weight_threshold": INT8_WEIGHT_THRESHOLD,
            "compute": "fp16",
        }
    pm = parent.manifest if parent is not None else None
    manifest = Manifest(
        format="coreml",
        precision=cfg.precision,
        model_name=src.name,
        main_file=MAIN_FILE,
        task=pm.task if pm else src.task,
        inputs=tuple(TensorSpec(name=t.name, shape=t.shape, dtype=t.dtype) for t in info.inputs),
        outputs=tuple(TensorSpec(name=t.name, shape=t.shape, dtype=t.dtype) for t in info.outputs),
        preprocessing=pm.preprocessing if pm else src.input_spec,
        labels=pm.labels if pm else src.labels,
        lineage=src.lineage(checkpoint),
        step="compile" if pm else "export",
        step_config=dataclasses.replace(cfg, batch=src.batch, resolution=src.resolution).to_dict(),
        parent_sha=parent.sha if parent is not None else None,
        created=now_iso(),  # set now so that the copy embedded in the package equals artifact.json
        tool_versions=tool_versions(),
        fidelity=_fidelity(mlmodel, src, cfg, parent_onnx),
        extra=extra,
    )
    _set_metadata(mlmodel, manifest)
    with rt.quiet_coremltools():
        mlmodel.save(str(folder / PACKAGE))
    saved = rt.inspect_package(folder / PACKAGE)  # what is on disk, not what was meant to be written
    if (saved.ops, saved.inputs, saved.outputs, saved.embedded_manifest(str(folder / PACKAGE))) != (
        info.ops,
        info.inputs,
        info.outputs,
        _embeddable(manifest),
    ):
        raise ModelFileError(
            f"{folder}: the saved package differs from the converted model (ops, I/O or "
            "metadata); check the disk and retry."
        )
    size = sum(p.stat().st_size for p in (folder / PACKAGE).rglob("*") if p.is_file())
    log.info(
        "%s -> CoreML %s in %.1f s: %d ops, %.2f MB",
        src.name,
        cfg.precision,
        convert_s,
        sum(info.ops.values()),
        size / 1e6,
    )
    return manifest


def _weights(src: Any, checkpoint: Path | None, cfg: CoreMlConfig) -> str:
    if checkpoint is not None:
        return "checkpoint"
    if getattr(src, "weights", None) is not None:  # a trained reference model's committed weights
        return f"reference weights {src.weights.file}"
    return "the module's own" if src.user_inputs else f"random-init (seed {cfg.seed})"


def _embeddable(manifest: Manifest) -> Manifest:
    """The manifest as the package carries it: without file hashes, which cannot cover their own package."""
    return Manifest.load({**json.loads(manifest.to_json()), "files": {}})


def _set_metadata(mlmodel: Any, manifest: Manifest) -> None:
    mlmodel.user_defined_metadata[ONNX_METADATA_KEY] = _embeddable(manifest).to_json()
    mlmodel.short_description = f"{manifest.model_name} ({manifest.task}, {manifest.precision}), made by edgeformer"
    mlmodel.author = "edgeformer"
    mlmodel.version = manifest.tool_versions.get("edgeformer", "")
    kind = getattr(manifest.preprocessing, "kind", None)
    for t in manifest.inputs:
        mlmodel.input_description[t.name] = {
            "image": "normalized float NCHW image; resize, crop, mean and std are in the edgeformer manifest",
            "audio": "mono float waveform in [-1, 1] at the sample rate in the edgeformer manifest",
        }.get(kind, "float tensor; see the edgeformer manifest")


def _fidelity(mlmodel: Any, src: Any, cfg: CoreMlConfig, parent_onnx: Path | None) -> CheckRecord:
    """CoreML vs the parent ONNX (else torch) on seeded inputs; prediction needs macOS."""
    if reason := rt.platform_reason():
        return CheckRecord(skipped=reason, min_cosine=cfg.min_cosine)

    def run(feeds):
        # the same casts the I/O types imply (float64 -> float32, int64 -> int32)
        cast = {
            k: np.ascontiguousarray(v, dtype=np.float32 if v.dtype.kind == "f" else np.int32) for k, v in feeds.items()
        }
        return {k: np.asarray(v, dtype=np.float32) for k, v in mlmodel.predict(cast).items()}

    reference = ort_runner(parent_onnx) if parent_onnx is not None else torch_runner(src)
    inputs = fidelity_samples(src, cfg)
    agreement = compare_on(reference, run, inputs)
    # meets(), not a bare `<`: a NaN output would pass `nan < min_cosine`
    if cfg.min_cosine is not None and (reason := agreement.meets(min_cosine=cfg.min_cosine)):
        raise QualityGateError(
            f"the CoreML {cfg.precision} package disagrees with its reference: {reason}; nothing was written. "
            "Try --precision fp32."
        )
    return agreement.to_record(sample_names=list(inputs), min_cosine=cfg.min_cosine)


__all__ = [
    "DEPLOYMENT_TARGETS",
    "INT8_WEIGHT_THRESHOLD",
    "MAIN_FILE",
    "PACKAGE",
    "PRECISIONS",
    "CoreMlConfig",
    "available",
    "compile_coreml_module",
    "export_coreml",
]
