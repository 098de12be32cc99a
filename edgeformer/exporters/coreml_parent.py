"""What :func:`~edgeformer.exporters.coreml.compile_coreml` takes from its ONNX parent, checked before torch loads.

CoreML converts from torch, so compiling an ONNX artifact means rebuilding its torch model: the zoo variant
with the architecture fields the export recorded, at the parent's batch and resolution, with the checkpoint
it was exported with (matched by sha256). Each refusal names what to run instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..artifact import Artifact, sha256_file
from ..errors import ConfigError, ModelFileError, UnknownModelError

if TYPE_CHECKING:
    from .coreml import CoreMlConfig


def parent_arch_overrides(artifact: Artifact) -> dict[str, Any]:
    """The parent's recorded architecture fields that differ from its variant's, JSON lists back to tuples."""
    from ..models import get_spec

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
    recorded = m.extra.get("arch") or {}
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
    pre = m.preprocessing or {}
    resolution = pre.get("resolution") if pre.get("kind") == "image" else None
    if cfg.resolution is not None and cfg.resolution != resolution:
        raise ConfigError(
            f"{where} was exported at resolution {resolution}; drop --resolution {cfg.resolution}, "
            "or re-export the ONNX at that resolution."
        )
    return (lead if isinstance(lead, int) else cfg.batch or 1), resolution


def parent_checkpoint(artifact: Artifact, cfg: CoreMlConfig) -> Path | None:
    """``cfg.checkpoint`` if it is the file the parent was exported with (sha256), ``None`` if there was none."""
    recorded, where, given = artifact.manifest.extra.get("checkpoint"), artifact.path, cfg.checkpoint
    if recorded is None:
        if given is not None:
            raise ConfigError(
                f"{where} was exported without a checkpoint, so {given} would make another model; "
                "export the ONNX with it first, or edgeformer.export(name, fmt='coreml', "
                "checkpoint=...)."
            )
        return None
    named = f"{recorded.get('file')} (sha256 {str(recorded.get('sha256'))[:12]}...)"
    if given is None:
        raise ConfigError(
            f"{where} was exported with the checkpoint {named}; CoreML converts from torch, so pass "
            "it again (--checkpoint / CoreMlConfig(checkpoint=...))."
        )
    if not given.is_file():
        raise ConfigError(f"checkpoint {given} not found; check the --checkpoint path.")
    if sha256_file(given) != recorded.get("sha256"):
        raise ConfigError(f"{given} is not the checkpoint {where} was exported with, {named}; pass that file.")
    return given


__all__ = ["parent_arch_overrides", "parent_checkpoint", "parent_shape"]
