"""Compile an ONNX artifact to CoreML: rebuild its torch model, check it against the parent, convert it.

The conversion itself is :mod:`edgeformer.export.coreml`'s; this module holds what compiling takes from the
ONNX parent, checked before torch loads.

CoreML converts from torch, so compiling an ONNX artifact means rebuilding its torch model: the zoo variant
with the architecture fields the export recorded, at the parent's batch and resolution, with the checkpoint
it was exported with (matched by sha256). Each refusal names what to run instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from ..artifact import Artifact, Manifest, input_paths, sha256_file
from ..compare import CheckRecord, ort_runner
from ..errors import ConfigError, ModelFileError, QualityGateError, UnknownModelError
from ..export import coreml as cm
from ..export.coreml import CoreMlConfig as CoreMlConfig  # the table finds config and probe beside compile_coreml
from ..export.coreml import available as available
from ..export.parity import compare_on
from ..inputs import ImageInput
from ..models import get_spec
from ..models.reference import list_references
from ..steps import USE_DEFAULT_CACHE, StepSpec, artifact_sha, run_step

log = logging.getLogger(__name__)


def parent_arch_overrides(artifact: Artifact) -> dict[str, Any]:
    """The parent's recorded architecture fields that differ from its variant's, JSON lists back to tuples."""
    m, where = artifact.manifest, artifact.path
    if m.format != "onnx":
        raise ModelFileError(
            f"{where}: CoreML compiles ONNX artifacts by rebuilding their torch model; this one is "
            f"{m.format!r}. Pass the artifact `edgeformer export` wrote."
        )
    if m.precision not in ("fp32", "fp16"):
        raise ConfigError(
            f"{where} is {m.precision}: ONNX quantization does not carry over to CoreML; compile its "
            "float parent with --precision int8 (int8 weights by coremltools) instead."
        )
    try:
        spec = get_spec(m.model_name)
    except UnknownModelError as e:
        raise ConfigError(
            f"{where} was exported from your own module {m.model_name!r}, which an artifact cannot "
            "rebuild; convert the module itself: edgeformer.export(module, fmt='coreml', ...) or "
            "compile_coreml_module(module, example_inputs, out=...)."
        ) from e
    recorded = m.lineage.arch or {}
    default = json.loads(json.dumps(spec.arch.to_dict(), default=str))
    if unknown := sorted(set(recorded) - set(default)):
        raise ModelFileError(
            f"{where}: the recorded architecture has fields {unknown} that {spec.name} lacks; "
            "convert with the edgeformer version that exported it."
        )
    return {k: _tuples(v) for k, v in recorded.items() if v != default[k]}


def _tuples(v: Any) -> Any:
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def parent_shape(artifact: Artifact, cfg: CoreMlConfig) -> tuple[int, int | None]:
    """The batch (the parent's fixed one, else ``cfg.batch`` or 1) and image resolution to rebuild at."""
    m, where = artifact.manifest, artifact.path
    if not m.inputs:
        raise ModelFileError(f"{where}: the manifest lists no inputs; re-export the model.")
    lead = m.inputs[0].shape[0] if m.inputs[0].shape else 1
    if isinstance(lead, int) and cfg.batch not in (None, lead):
        raise ConfigError(
            f"{where} has a fixed batch of {lead}; drop --batch {cfg.batch}, or re-export the ONNX "
            "with a dynamic batch."
        )
    resolution = m.preprocessing.resolution if isinstance(m.preprocessing, ImageInput) else None
    if cfg.resolution is not None and cfg.resolution != resolution:
        raise ConfigError(
            f"{where} was exported at resolution {resolution}; drop --resolution {cfg.resolution}, "
            "or re-export the ONNX at that resolution."
        )
    return (lead if isinstance(lead, int) else cfg.batch or 1), resolution


def parent_checkpoint(artifact: Artifact, cfg: CoreMlConfig) -> Path | None:
    """``cfg.checkpoint`` if it is the file the parent was exported with (sha256), ``None`` if there was none."""
    recorded, where, given = artifact.manifest.lineage.checkpoint, artifact.path, cfg.checkpoint
    if recorded is None:
        if given is not None:
            raise ConfigError(
                f"{where} was exported without a checkpoint, so {given} would make another model; "
                "export the ONNX with it first, or edgeformer.export(name, fmt='coreml', "
                "checkpoint=...)."
            )
        return None
    named = f"{recorded.file} (sha256 {recorded.sha256[:12]}...)"
    if given is None:
        raise ConfigError(
            f"{where} was exported with the checkpoint {named}; CoreML converts from torch, so pass "
            "it again (compile --set checkpoint=FILE / CoreMlConfig(checkpoint=...))."
        )
    if not given.is_file():
        raise ConfigError(f"checkpoint {given} not found; check the checkpoint=FILE path given to --set.")
    if sha256_file(given) != recorded.sha256:
        raise ConfigError(f"{given} is not the checkpoint {where} was exported with, {named}; pass that file.")
    return given


def compile_coreml(
    artifact: Artifact, config: CoreMlConfig, out: Path, overwrite: bool = False, *, cache: Any = USE_DEFAULT_CACHE
) -> Artifact:
    """Rebuild the torch model behind an ONNX artifact, check it against the parent, convert it to ``coreml``.

    Cached by the parent's sha256 and ``config`` (:mod:`edgeformer.steps`); ``cache=None`` rebuilds.

    Raises:
        ConfigError: bad config; a parent from your own module (use :func:`compile_coreml_module`), a quantized
            parent, a batch/resolution the parent does not have, a missing or wrong checkpoint.
        ModelFileError: not an ONNX artifact, or the rebuilt model's shapes differ from the parent's.
        InvalidInputError: capture or conversion failed (coremltools names the op).
        QualityGateError: the rebuilt torch model differs from the parent ONNX, or macOS fidelity < ``min_cosine``.
        BackendUnavailableError: coremltools or torch is not installed (exit 5).
    """
    cfg, m = cm.checked_config(config), artifact.manifest
    # a trained reference model rebuilds by name with its own committed weights (sha256-checked on load)
    reference = m.model_name in list_references() and cfg.checkpoint is None
    overrides = {} if reference else parent_arch_overrides(artifact)
    batch, resolution = parent_shape(artifact, cfg)
    ckpt = None if reference else parent_checkpoint(artifact, cfg)  # the parent's recorded file: the sha covers it
    spec = StepSpec(step="compile:coreml", input_sha=artifact_sha(artifact), config=cfg.to_dict())

    def build(folder: Path) -> Manifest:
        cm.require_tools()
        rebuild = dataclasses.replace(cfg, batch=batch)
        src = cm.prepare_source_model(m.model_name, rebuild, None, None, ckpt, resolution, overrides)
        got, want = [tuple(t.shape)[1:] for t in src.example_inputs], [tuple(t.shape)[1:] for t in m.inputs]
        if got != want or len(src.output_names) != len(m.outputs):
            raise ModelFileError(
                f"{artifact.path}: the rebuilt {m.model_name} takes {got} with {len(src.output_names)} "
                f"outputs, the parent {want} with {len(m.outputs)}; convert with the edgeformer version "
                "that exported it, or re-export the ONNX."
            )
        src = dataclasses.replace(
            src, input_names=tuple(t.name for t in m.inputs), output_names=tuple(t.name for t in m.outputs)
        )
        if ckpt is not None or reference:
            source_check = _source_check(src, artifact)
        else:
            source_check = CheckRecord(
                skipped="the parent was exported without a checkpoint, so its random weights cannot be "
                f"rebuilt; this package has its architecture with other random weights (seed {cfg.seed})"
            )
            log.warning(
                "%s has random-init weights: the CoreML package gets its architecture with other random "
                "weights; export with --checkpoint and compile with --set checkpoint=FILE to keep trained weights",
                artifact.path,
            )
        return cm.build_package(src, rebuild, folder, parent=artifact, checkpoint=ckpt, source_check=source_check)

    guard = [*input_paths(artifact), *([ckpt] if ckpt else [])]  # a bare .onnx guards the file, not its folder
    return run_step(spec, build, out=out, guard=guard, overwrite=overwrite, cache=cache)


def _source_check(src: Any, parent: Artifact) -> CheckRecord:
    """The rebuilt torch model vs the parent ONNX on ORT: what CoreML converts is the parent's model.

    Kept in ``extra["source_check"]``, not in ``parity``: it measures the torch rebuild, not the package, and a
    reader of ``parity`` (bench, the CLI) would credit the package with the rebuild's agreement.
    """
    sc = parent.manifest.step_config
    atol, min_cosine = sc.get("atol") or 1e-4, sc.get("min_cosine") or 0.99999
    inputs = cm.fidelity_samples(src, CoreMlConfig())
    agreement = compare_on(cm.torch_runner(src), ort_runner(parent.model_path), inputs)
    if reason := agreement.meets(min_cosine=min_cosine, rtol=atol):  # the export's gate: atol is scale-relative
        raise QualityGateError(
            f"the {src.name} rebuilt from {parent.path} differs from the parent ONNX: {reason}. Convert with the "
            "edgeformer version that exported it, or re-export the ONNX."
        )
    return agreement.to_record(sample_names=list(inputs), rtol=atol, min_cosine=min_cosine)


# --- conversion, checks, writing --------------------------------------------------------------------


__all__ = ["CoreMlConfig", "available", "compile_coreml", "parent_arch_overrides", "parent_checkpoint", "parent_shape"]
