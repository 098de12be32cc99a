"""The zoo registry: ``list_models``, ``create_model``, ``get_spec``, ``slice_weights``.

Each family module registers its variants as :class:`ModelSpec` data when imported; the families are
imported on first use of the registry, so ``import edgeformer`` stays light.
"""

from __future__ import annotations

import fnmatch
import importlib
from pathlib import Path
from typing import Any

from ..errors import UnknownModelError
from ..registry import Registry
from .spec import ModelSpec

_FAMILIES = ("efficientformer", "efficientformer_v2", "shvit", "audio")
_specs: Registry[ModelSpec] = Registry("model", on_unknown=UnknownModelError.for_name)
_loaded = False


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a variant to the zoo (called by family modules at import time)."""
    return _specs.add(spec.name, spec)


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for family in _FAMILIES:
            # by name, not by import statement: each family imports this module back to register itself
            importlib.import_module(f"edgeformer.models.{family}")


def list_models(pattern: str = "*") -> list[str]:
    """Names of zoo models matching a shell-style ``pattern`` (``"shvit_*"``), sorted."""
    _ensure_loaded()
    return sorted(n for n in _specs.names() if fnmatch.fnmatch(n, pattern))


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; unknown names raise with close-match suggestions."""
    _ensure_loaded()
    return _specs.get(name)


def create_model(name: str, checkpoint: str | Path | None = None, **arch_overrides: Any):
    """Build a zoo model, optionally with architecture overrides and a checkpoint.

    Example::

        model = create_model("efficientformer_l1", checkpoint="efficientformer_l1_300d.pth")
        head10 = create_model("shvit_s1", num_classes=10)  # per-block fields must follow a new depth
    """
    spec = get_spec(name)
    arch = spec.arch.replace(**arch_overrides) if arch_overrides else spec.arch
    arch.validate()
    model = spec.build(arch)
    if checkpoint is not None:
        # torch: imported here so that the registry (specs, names) stays readable without it, e.g. by
        # compile.coreml's availability probe that `edgeformer doctor` runs on a torch-free device
        from .checkpoints import load_strict, read_state_dict

        load_strict(model, read_state_dict(checkpoint), remap=spec.remap, source=str(checkpoint))
    return model


def slice_weights(parent, child_arch):
    """Build the sub-network ``child_arch`` with weights inherited from ``parent`` (see :mod:`.elastic`)."""
    from .elastic import slice_weights as _slice  # torch, as in create_model

    return _slice(parent, child_arch)
