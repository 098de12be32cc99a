"""torch -> ONNX, parity-checked: the ``export`` step for ``fmt="onnx"``.

Steps: build (zoo name, checkpoint, overrides) or take your module; ``eval()`` and ``fuse()``; export
with torch's dynamo exporter (``torch.export`` based; the TorchScript exporter with ``dynamo=False``);
optimize the graph; save with the manifest embedded; validate the saved file with the full ONNX checker
and shape inference (:func:`edgeformer.modelfile.load_onnx`); compare every output with torch on several
inputs; commit the artifact atomically. A parity failure raises and writes nothing.

Optimization runs onnxscript's optimizer (constant folding, dead code, inlining of the dynamo
exporter's functions), then onnxslim (fusions, shape simplification). Measured on the zoo at 64x64
(dynamo graphs): onnxscript alone is robust on all 14 models and removes 34-79% of the nodes; onnxslim
alone breaks EfficientFormerV2 (its Resize fails shape inference) but after onnxscript it is robust and
removes up to 7% more; on TorchScript graphs onnxslim matters more (SHViT-S1: 934 -> 421 -> 290 nodes).
A pass that raises or leaves a graph failing the full checker is skipped with a warning and the skip is
recorded in the manifest (``extra.optimizer``: what ran, node counts, seconds), never silently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..artifact import Artifact, Manifest, now_iso, tool_versions
from ..cache import StepCache
from ..compare import Agreement, ort_runner
from ..errors import ConfigError, InvalidInputError, ParityError
from ..modelfile import embed_manifest, graph_io, load_onnx, onnxruntime_refuses
from ..modelscopes import raw_segments, tag_segments
from ..steps import USE_DEFAULT_CACHE, StepSpec, run_step
from .formats import source_sha
from .parity import compare_on, parity_inputs
from .source import SourceModel, prepare_source

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
# torch's dynamo exporter implements ops from opset 18 up. Below that it converts the graph down, and on the
# zoo that fails (ReduceMean, Div adapters in onnx's and onnxscript's converters), leaving opset 18 behind
# with only a log line; so a lower opset is refused up front and the TorchScript exporter named instead.
_DYNAMO_MIN_OPSET = 18
_PROTO_LIMIT = 2**31 - 1  # protobuf cannot serialize more; larger models keep weights in an external file


@dataclass(frozen=True, kw_only=True)
class OnnxExportConfig:
    """Settings of the ONNX export step; ``None`` takes the model's :class:`ExportHints` (or the default).

    ``batch`` is the exported batch (with ``dynamic_batch`` it is only the example size); ``resolution``
    the image side (zoo models whose architecture has a ``resolution`` field are built for it);
    ``atol`` bounds ``max|onnx - torch| / max|torch|`` and ``min_cosine`` the cosine of the outputs,
    on ``parity_samples`` seeded random inputs plus one natural input.
    """

    opset: int | None = None
    batch: int | None = None
    dynamic_batch: bool | None = None
    resolution: int | None = None
    dynamo: bool | None = None
    optimize: bool = True
    parity_samples: int = 3
    atol: float | None = None
    min_cosine: float | None = None
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def export_onnx(
    model: Any,
    *,
    out: Path,
    example_inputs: tuple[Any, ...] | None = None,
    input_spec: Any = None,
    config: OnnxExportConfig | None = None,
    checkpoint: str | Path | None = None,
    overwrite: bool = False,
    cache: StepCache | None = USE_DEFAULT_CACHE,
    **arch_overrides: Any,
) -> Artifact:
    """Export ``model`` to a parity-checked ONNX artifact at ``out`` (see :func:`edgeformer.export`).

    A zoo or reference model is cached by name, weights sha256, overrides and config (:mod:`edgeformer.steps`);
    your own module, or a name given with example inputs or an input spec (refused by the build), is not.
    """
    cfg = config if config is not None else OnnxExportConfig()
    if not isinstance(cfg, OnnxExportConfig):
        raise ConfigError(f"ONNX export takes an OnnxExportConfig, got {type(cfg).__name__}.")
    _check_config(cfg)
    sha = source_sha(
        model,
        checkpoint=checkpoint,
        arch_overrides=arch_overrides,
        example_inputs=example_inputs,
        input_spec=input_spec,
    )
    spec = StepSpec(step="export:onnx", input_sha=sha, config=cfg.to_dict())

    def build(folder: Path) -> Manifest:
        return _export(model, folder, cfg, example_inputs, input_spec, checkpoint, arch_overrides)

    return run_step(
        spec, build, out=out, guard=[Path(checkpoint)] if checkpoint else [], overwrite=overwrite, cache=cache
    )


def _export(
    model: Any,
    folder: Path,
    cfg: OnnxExportConfig,
    example_inputs: tuple[Any, ...] | None,
    input_spec: Any,
    checkpoint: str | Path | None,
    arch_overrides: dict[str, Any],
) -> Manifest:
    """Build the source, export, optimize, save into ``folder``, check parity; the manifest to commit."""
    src = prepare_source(
        model,
        example_inputs=example_inputs,
        input_spec=input_spec,
        checkpoint=checkpoint,
        batch=cfg.batch,
        resolution=cfg.resolution,
        seed=cfg.seed,
        arch_overrides=arch_overrides,
    )
    hints = src.hints
    opset = cfg.opset if cfg.opset is not None else hints.opset
    _check_opset(opset, hints.min_opset, src.name)
    dynamo = hints.dynamo if cfg.dynamo is None else cfg.dynamo
    if dynamo and opset < _DYNAMO_MIN_OPSET:
        raise ConfigError(
            f"the dynamo exporter writes opset >= {_DYNAMO_MIN_OPSET}; for opset {opset} pass dynamo=False "
            f"(--exporter torchscript), or --opset {_DYNAMO_MIN_OPSET}."
        )
    resolved = dataclasses.replace(
        cfg,
        opset=opset,
        batch=src.batch,
        resolution=src.resolution,
        dynamic_batch=hints.dynamic_batch if cfg.dynamic_batch is None else cfg.dynamic_batch,
        dynamo=dynamo,
        atol=hints.atol if cfg.atol is None else cfg.atol,
        min_cosine=hints.min_cosine if cfg.min_cosine is None else cfg.min_cosine,
    )

    started = time.perf_counter()
    proto = _to_onnx(src, resolved)
    export_s = time.perf_counter() - started
    scopes = raw_segments(proto)  # read before the optimizers drop the exporter's metadata
    optimizer: dict[str, Any] = {"requested": resolved.optimize, "ran": [], "skipped": {}, "nodes": {}, "seconds": {}}
    if resolved.optimize:
        proto = _optimize(proto, optimizer, src.name)
    if any(scopes.values()):  # a zoo-style `stages` layout: per-op profiles add up per block (edgeformer.modelscopes)
        tag_segments(proto, scopes)
    if _opset(proto) != opset:  # never ship an opset other than the one asked for
        raise ConfigError(
            f"{src.name}: asked for opset {opset} but the exporter wrote {_opset(proto)}; pass --opset {_opset(proto)}."
        )

    path = folder / MODEL_FILE
    inputs, outputs = graph_io(proto)
    manifest = Manifest(
        format="onnx",
        precision="fp32",
        model_name=src.name,
        main_file=MODEL_FILE,
        task=src.task,
        inputs=inputs,
        outputs=outputs,
        preprocessing=src.input_spec,
        labels=src.labels,
        step="export",
        step_config=resolved.to_dict(),
        parent_sha=None,
        tool_versions=tool_versions(),  # filled here (not by commit) so the embedded copy carries them too
        created=now_iso(),
        lineage=src.lineage(checkpoint),
        extra=_extra(src, resolved, optimizer, export_s, checkpoint),
    )
    _save(proto, manifest, path)
    load_onnx(path)  # the file as written: full checker, shape inference, versions
    agreement, samples = _parity(src, resolved, path)
    gate = {"min_cosine": resolved.min_cosine, "rtol": resolved.atol}  # atol is relative to the output's scale
    if reason := agreement.meets(**gate):
        raise ParityError(
            f"{src.name} exported to ONNX (opset {opset}) differs from torch beyond tolerance (max_rel <= "
            f"{resolved.atol:g}, cosine >= {resolved.min_cosine}) on {len(samples)} inputs: {reason}. Try another "
            "--opset or the TorchScript exporter (--exporter torchscript), or loosen the tolerance "
            "(--atol/--min-cosine) if the difference is expected.",
            failures=agreement.failing(**gate),
        )
    record = agreement.to_record(sample_names=list(samples), **gate)
    manifest = dataclasses.replace(manifest, parity=record)
    _save(proto, manifest, path)  # again, now that the embedded manifest can carry the parity figures
    log.info(
        "exported %s in %.1f s; parity: worst cosine %s, max_rel %s", src.name, export_s, record.cosine, record.max_rel
    )
    return manifest


def _check_config(cfg: OnnxExportConfig) -> None:
    problems = []
    if cfg.batch is not None and cfg.batch < 1:
        problems.append(f"batch must be >= 1, got {cfg.batch} (--batch)")
    if cfg.resolution is not None and cfg.resolution < 1:
        problems.append(f"resolution must be >= 1, got {cfg.resolution} (--resolution)")
    if cfg.parity_samples < 1:
        problems.append(f"parity_samples must be >= 1, got {cfg.parity_samples}; parity is never skipped")
    if cfg.atol is not None and not cfg.atol > 0:
        problems.append(f"atol must be > 0, got {cfg.atol} (--atol)")
    if cfg.min_cosine is not None and not -1 <= cfg.min_cosine <= 1:
        problems.append(f"min_cosine must be in [-1, 1], got {cfg.min_cosine} (--min-cosine)")
    if problems:
        raise ConfigError("invalid ONNX export config: " + "; ".join(problems) + ".")


def _check_opset(opset: int, min_opset: int, name: str) -> None:
    if opset < min_opset:
        raise ConfigError(f"{name} needs opset >= {min_opset}; pass --opset {min_opset} (got {opset}).")
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise ConfigError(
            f"opset {opset} is newer than onnx {onnx.__version__} supports ({newest}); pass --opset {newest}."
        )
    problem = onnxruntime_refuses(8, (("ai.onnx", opset),))  # IR 8 loads everywhere; only the opset is in question
    if problem:
        raise ConfigError(f"cannot export at opset {opset}: {problem}")


# --- export -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Mute torch.onnx's progress chatter and deprecation notices; edgeformer logs what matters itself."""
    loggers = [
        logging.getLogger(n)
        for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript", "onnx_ir", "onnxslim")
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _to_onnx(src: SourceModel, cfg: OnnxExportConfig) -> onnx.ModelProto:
    import torch

    args = src.export_inputs(dynamic=bool(cfg.dynamic_batch))
    exporter = "dynamo" if cfg.dynamo else "TorchScript"
    try:
        with _quiet_exporter(), torch.no_grad():
            if cfg.dynamo:
                batch = torch.export.Dim("batch", min=1, max=65536)
                program = torch.onnx.export(
                    src.module,
                    args,
                    dynamo=True,
                    verbose=False,
                    input_names=list(src.input_names),
                    output_names=list(src.output_names),
                    opset_version=cfg.opset,
                    dynamic_shapes=tuple({0: batch} for _ in args) if cfg.dynamic_batch else None,
                    optimize=False,  # we run the optimizers ourselves, so a failure is caught and recorded
                )
                return program.model_proto
            buf = io.BytesIO()
            names = (*src.input_names, *src.output_names)
            torch.onnx.export(
                src.module,
                args,
                buf,
                dynamo=False,
                input_names=list(src.input_names),
                output_names=list(src.output_names),
                opset_version=cfg.opset,
                dynamic_axes={n: {0: "batch"} for n in names} if cfg.dynamic_batch else None,
                do_constant_folding=True,
            )
            return onnx.load_from_string(buf.getvalue())
    except Exception as e:  # torch raises many exporter-internal types; all mean "this module did not export"
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        other = "dynamo=False (--exporter torchscript)" if cfg.dynamo else "dynamo=True (--exporter dynamo)"
        raise InvalidInputError(
            f"{src.name}: the {exporter} exporter failed at opset {cfg.opset}: {type(e).__name__}: {first[:300]}. "
            f"Try {other}, another --opset, or dynamic_batch=False (--static-batch)."
        ) from e


def _optimize(proto: onnx.ModelProto, record: dict[str, Any], name: str) -> onnx.ModelProto:
    """onnxscript's optimizer, then onnxslim; a pass that raises or breaks the graph is skipped and recorded.

    The order matters (see the module docstring for the measurements): onnxslim on the raw dynamo graph
    breaks EfficientFormerV2, after onnxscript it does not. Each pass must leave a graph that passes the
    full checker, or its output is dropped.
    """
    import onnxscript.optimizer
    import onnxslim

    passes = (
        ("onnxscript", onnxscript.optimizer.optimize),
        ("onnxslim", onnxslim.slim),
    )
    for pass_name, fn in passes:
        before, started = len(proto.graph.node), time.perf_counter()
        try:
            with _quiet_exporter():
                optimized = fn(proto)
            if optimized.ByteSize() <= _PROTO_LIMIT:  # the in-memory checker cannot see past 2 GB
                onnx.checker.check_model(optimized, full_check=True)
        except Exception as e:  # optimizers are best effort; their internal errors are not the user's fault
            reason = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
            log.warning("%s: graph optimizer %s failed and was skipped (%s)", name, pass_name, reason)
            record["skipped"][pass_name] = reason
            continue
        proto = optimized
        record["ran"].append(pass_name)
        record["nodes"][pass_name] = [before, len(proto.graph.node)]
        record["seconds"][pass_name] = round(time.perf_counter() - started, 2)
    return proto


def _opset(proto: onnx.ModelProto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


# --- save, parity, manifest ---------------------------------------------------------------------------
def _save(proto: onnx.ModelProto, manifest: Manifest, path: Path) -> None:
    embed_manifest(proto, manifest)
    if proto.ByteSize() > _PROTO_LIMIT:
        onnx.save_model(proto, str(path), save_as_external_data=True, location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(proto, str(path))


def _parity(src: SourceModel, cfg: OnnxExportConfig, path: Path) -> tuple[Agreement, dict[str, dict[str, Any]]]:
    """The exported model vs torch on every parity input, and the inputs (by name)."""
    import torch

    run_onnx = ort_runner(path)
    shapes = {n: tuple(t.shape) for n, t in zip(src.input_names, src.example_inputs, strict=True)}
    dtypes = {n: str(t.dtype).removeprefix("torch.") for n, t in zip(src.input_names, src.example_inputs, strict=True)}
    kind = src.input_spec.kind if src.input_spec is not None else None
    if kind == "audio" and src.input_spec.frontend != "graph":
        kind = None  # a log-mel input: random values are as natural as anything we could make here
    sample_rate = getattr(src.input_spec, "sample_rate", 16000)
    samples = parity_inputs(
        shapes, kind=kind, samples=cfg.parity_samples, seed=cfg.seed, dtypes=dtypes, sample_rate=sample_rate
    )
    if cfg.dynamic_batch:  # prove the batch axis is really dynamic: one more input at another batch size
        other = {n: (s[0] + 2, *s[1:]) for n, s in shapes.items()}
        extra = parity_inputs(other, kind=None, samples=1, seed=cfg.seed + 1, dtypes=dtypes)
        samples[f"random-batch{next(iter(other.values()))[0]}"] = extra["random-0"]
    if src.user_inputs:
        samples["example_inputs"] = {
            n: t.detach().cpu().numpy() for n, t in zip(src.input_names, src.example_inputs, strict=True)
        }

    def run_torch(feeds):
        with torch.no_grad():
            out = src.module(*(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in src.input_names))
        return dict(zip(src.output_names, (o.detach().cpu().numpy() for o in src.flatten_outputs(out)), strict=True))

    return compare_on(run_torch, run_onnx, samples), samples


def _extra(
    src: SourceModel, cfg: OnnxExportConfig, optimizer: dict[str, Any], export_s: float, checkpoint: str | Path | None
) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "exporter": "dynamo" if cfg.dynamo else "torchscript",
        "export_seconds": round(export_s, 2),
        "optimizer": optimizer,
    }
    return extra
