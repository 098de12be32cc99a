"""The torch side shared by every exporter that starts from a module: a zoo name, a trained reference model's
name (``digits_shvit``: the zoo variant with its committed weights, labels and preprocessing) or an ``nn.Module``
becomes a :class:`SourceModel` (eval mode, fused, example inputs, input/output names, labels)."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.labels import resolve_labels
from ..errors import ConfigError, UnknownModelError
from ..manifest import Checkpoint, Lineage, sha256_file
from ..models import ExportHints, create_model, get_spec, list_models
from ..models.checkpoints import load_strict, read_state_dict
from ..models.layers import ElasticModel
from ..models.reference import list_references, load_reference, read_reference_meta, reference_arch


@dataclass(frozen=True, kw_only=True)
class SourceModel:
    """A module ready to export: in eval mode, fused, with example inputs and the names the graph will use."""

    module: Any  # torch.nn.Module
    name: str
    example_inputs: tuple[Any, ...]  # torch tensors, at the requested batch
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    input_spec: Any  # ImageInput | AudioInput | None, at the exported resolution
    hints: Any  # ExportHints
    task: str
    labels: tuple[str, ...] | None = None
    label_set: str | None = None
    arch: dict[str, Any] | None = None
    family: str | None = None  # the zoo family; None for your own module
    user_inputs: bool = False  # example_inputs came from the caller (and are worth checking parity on)
    weights: Checkpoint | None = None  # the weights edgeformer built the module with (a reference model's file)

    def lineage(self, checkpoint: str | Path | None) -> Lineage:
        """What an artifact exported from this source records to be rebuilt (the arch as JSON: lists, not tuples).

        ``checkpoint`` is the caller's weights file; without one, the weights the source was built with (a
        reference model's), else none: a zoo model with random-init weights.
        """
        arch = json.loads(json.dumps(self.arch)) if self.arch is not None else None
        ckpt = Checkpoint(file=Path(checkpoint).name, sha256=sha256_file(Path(checkpoint))) if checkpoint else None
        return Lineage(family=self.family, arch=arch, label_set=self.label_set, checkpoint=ckpt or self.weights)

    @property
    def batch(self) -> int:
        return int(self.example_inputs[0].shape[0]) if self.example_inputs[0].dim() else 1

    @property
    def resolution(self) -> int | None:
        return getattr(self.input_spec, "resolution", None)

    def export_inputs(self, dynamic: bool) -> tuple[Any, ...]:
        """Inputs to trace with: batch >= 2 when dynamic, since torch.export specializes a size-1 dim to 1."""
        if not dynamic or self.batch >= 2:
            return self.example_inputs
        return tuple(t.expand(2, *t.shape[1:]).clone() for t in self.example_inputs)

    @staticmethod
    def flatten_outputs(out: Any) -> tuple[Any, ...]:
        if isinstance(out, Mapping):
            return tuple(out.values())
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def prepare_source(
    model: Any,
    *,
    example_inputs: tuple[Any, ...] | None,
    input_spec: Any,
    checkpoint: str | Path | None,
    batch: int | None,
    resolution: int | None,
    seed: int,
    arch_overrides: Mapping[str, Any],
) -> SourceModel:
    """Build a zoo model (or take the caller's module), put it in eval mode, fuse it, make example inputs.

    A module passed in is deep-copied first, so fusing never changes the caller's object.
    """
    if isinstance(model, str):
        if model in list_references():
            return _reference_source(
                model, example_inputs, input_spec, checkpoint, batch, resolution, seed, dict(arch_overrides)
            )
        try:
            spec = get_spec(model)
        except UnknownModelError:  # suggest from both namespaces: a zoo name may be a typo of a reference's
            raise UnknownModelError.for_name(model, [*list_models(), *list_references()]) from None
        return _zoo_source(
            model, spec, example_inputs, input_spec, checkpoint, batch, resolution, seed, dict(arch_overrides)
        )
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a zoo model name or a torch nn.Module, got {type(model).__name__}.")
    name = type(model).__name__
    if arch_overrides:
        raise ConfigError(
            f"architecture overrides ({', '.join(arch_overrides)}) apply to zoo models only; "
            f"build your {name} with them instead."
        )
    if resolution is not None:
        raise ConfigError(f"resolution applies to zoo models; for your {name} the example_inputs set the shape.")
    if (
        not isinstance(example_inputs, tuple)
        or not example_inputs
        or not all(isinstance(t, torch.Tensor) for t in example_inputs)
    ):
        raise ConfigError(
            f"exporting your {name} needs example_inputs as a tuple of tensors, e.g. "
            "example_inputs=(torch.randn(1, 3, 224, 224),)."
        )
    if batch is not None and any(t.dim() == 0 or t.shape[0] != batch for t in example_inputs):
        raise ConfigError(
            f"batch={batch} but example_inputs have batch {[tuple(t.shape)[:1] for t in example_inputs]};"
            " make them agree (the example inputs set the exported shapes)."
        )
    module = copy.deepcopy(model).eval()
    if checkpoint is not None:
        load_strict(module, read_state_dict(checkpoint), source=str(checkpoint))
    if isinstance(module, ElasticModel):
        module.fuse()
    kind = getattr(input_spec, "kind", None)
    if input_spec is not None and kind not in ("image", "audio"):
        raise ConfigError(f"input_spec must be an ImageInput or AudioInput, got {type(input_spec).__name__}.")
    inputs = tuple(t.detach() for t in example_inputs)
    first = "waveform" if kind == "audio" and input_spec.frontend == "graph" else "input"
    input_names = (first, *(f"input_{i}" for i in range(1, len(inputs))))
    return SourceModel(
        module=module,
        name=name,
        example_inputs=inputs,
        input_names=input_names,
        output_names=_output_names(module, inputs, name),
        input_spec=input_spec,
        hints=ExportHints(),
        task=f"{kind}-classification" if kind else "unknown",
        user_inputs=True,
    )


def _zoo_source(name, spec, example_inputs, input_spec, checkpoint, batch, resolution, seed, overrides) -> SourceModel:
    if example_inputs is not None or input_spec is not None:
        raise ConfigError(
            f"{name} is a zoo model: it makes its own inputs and preprocessing; set batch and "
            "resolution in the export config (--batch, --resolution) instead of example_inputs/input_spec."
        )
    in_spec = spec.input
    if in_spec.kind == "image":
        # an arch with a `resolution` field is sized for its input (bias tables, static reshapes): build it for r
        sized = "resolution" in spec.arch.to_dict()
        override = overrides.get("resolution") if sized else None
        if resolution is not None and override is not None and override != resolution:
            raise ConfigError(
                f"resolution={resolution} conflicts with the architecture override resolution={override}; "
                "pass one of them."
            )
        r = resolution or override or in_spec.resolution
        if sized and r != spec.arch.resolution:
            overrides["resolution"] = r
        in_spec = dataclasses.replace(in_spec, resolution=r)
    elif resolution is not None:
        raise ConfigError(f"{name} takes {in_spec.kind}; --resolution applies to image models only.")
    with torch.random.fork_rng(devices=[]):  # random-init weights are a function of the seed; caller's RNG untouched
        torch.manual_seed(seed)
        module = create_model(name, checkpoint=checkpoint, **overrides).eval().fuse()
    arch = spec.arch.replace(**overrides) if overrides else spec.arch
    return _built_source(module, name, spec, arch, in_spec, batch, seed, _labels(spec, arch), spec.labels)


def _reference_source(name, example_inputs, input_spec, checkpoint, batch, resolution, seed, overrides) -> SourceModel:
    """A trained reference model: its zoo variant and architecture, its weights (sha256-checked against the
    sidecar), labels and preprocessing, all from ``edgeformer/zoo_weights``; nothing of them may be changed."""
    if example_inputs is not None or input_spec is not None:
        raise ConfigError(
            f"{name} is a trained reference model: it brings its own inputs and preprocessing; drop "
            "example_inputs/input_spec."
        )
    meta = read_reference_meta(name)
    if checkpoint is not None:
        raise ConfigError(
            f"{name} is a trained reference model and brings its own weights; drop --checkpoint, or export its "
            f"zoo variant {meta.model} with --checkpoint instead."
        )
    if overrides:
        raise ConfigError(
            f"{name}'s weights fit its recorded architecture only; drop the overrides ({', '.join(overrides)}), "
            f"or export its zoo variant {meta.model} with them (random-init weights)."
        )
    trained_at = getattr(meta.input, "resolution", None)
    if resolution is not None and resolution != trained_at:
        what = f"at resolution {trained_at}" if trained_at else f"on {meta.input.kind}"
        raise ConfigError(f"{name} was trained {what}; drop --resolution {resolution}.")
    module, meta = load_reference(name)  # the weights file's sha256 must match the sidecar's
    spec = get_spec(meta.model)
    weights = Checkpoint(file=meta.weights, sha256=meta.weights_sha256)
    return _built_source(
        module.fuse(),
        name,
        spec,
        reference_arch(meta),
        meta.input,
        batch,
        seed,
        meta.labels,
        meta.label_set,
        weights=weights,
    )


def _built_source(module, name, spec, arch, in_spec, batch, seed, labels, label_set, weights=None) -> SourceModel:
    """The :class:`SourceModel` of a module edgeformer built: seeded example inputs shaped by ``in_spec``."""
    generator = torch.Generator().manual_seed(seed)
    shape = in_spec.shape(batch or 1)
    if in_spec.kind == "audio" and in_spec.frontend == "graph":
        example = torch.rand(shape, generator=generator) * 2 - 1
    else:
        example = torch.randn(shape, generator=generator)
    first = "waveform" if in_spec.kind == "audio" and in_spec.frontend == "graph" else "input"
    return SourceModel(
        module=module,
        name=name,
        example_inputs=(example,),
        input_names=(first,),
        output_names=_output_names(module, (example,), name),
        input_spec=in_spec,
        hints=spec.export,
        task=spec.task,
        labels=labels,
        label_set=label_set,
        arch=arch.to_dict(),
        family=spec.family,
        weights=weights,
    )


def _output_names(module: Any, inputs: tuple[Any, ...], name: str) -> tuple[str, ...]:
    """Run the module once: it must work on its example inputs, and we learn how many outputs to name."""
    try:
        with torch.no_grad():
            outs = SourceModel.flatten_outputs(module(*inputs))
    except Exception as e:
        if getattr(e, "exit_code", None):  # already an EdgeformerError that says what to do
            raise
        raise ConfigError(
            f"{name} fails on its example inputs {[tuple(t.shape) for t in inputs]}: "
            f"{type(e).__name__}: {e}; fix the inputs or the model before exporting."
        ) from e
    if not outs or not all(isinstance(o, torch.Tensor) for o in outs):
        raise ConfigError(f"{name} must return a tensor, or a tuple/list/dict of tensors, to be exported.")
    return ("logits", *(f"output_{i}" for i in range(1, len(outs))))


def _labels(spec: Any, arch: Any) -> tuple[str, ...] | None:
    """The class names of the model's label set, if edgeformer ships it and the head still has that many classes."""
    return resolve_labels(spec.labels, getattr(arch, "num_classes", spec.num_classes))


__all__ = ["SourceModel", "prepare_source"]
