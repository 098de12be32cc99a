"""Trained reference models: rebuild a zoo variant from its JSON sidecar and load its committed weights.

The datasets they were trained on are in :mod:`edgeformer.data.reference`; the weights and sidecars live in
``edgeformer/zoo_weights`` (written by ``scripts/train_reference.py``). Loading is strict: the weights
file's sha256 must match the sidecar, and every key must fit the recorded architecture.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import sha256_file
from ..data.clutter import clutter_split
from ..data.reference import ZOO_WEIGHTS_DIR, digits_split, keywords_split
from ..errors import ConfigError, ModelFileError, did_you_mean
from ..inputs import AudioInput, ImageInput, input_spec_from_dict
from .zoo import create_model, get_spec


@dataclass(frozen=True, kw_only=True)
class ReferenceMeta:
    """The JSON sidecar of a reference checkpoint: everything needed to rebuild, evaluate and reproduce it."""

    name: str
    model: str  # zoo name
    arch_overrides: dict[str, Any]
    labels: tuple[str, ...]
    label_set: str
    input: ImageInput | AudioInput
    dataset: dict[str, Any]  # {"name": "digits"|"keywords", ...recipe}
    seed: int
    command: str
    heldout_accuracy: float
    heldout_samples: int
    training: dict[str, Any]
    weights: str  # file name beside the sidecar
    weights_sha256: str

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input"] = self.input.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "sidecar") -> ReferenceMeta:
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, Mapping) or set(d) != names:
            got = set(d) if isinstance(d, Mapping) else set()
            raise ModelFileError(
                f"{source}: sidecar fields differ (missing {sorted(names - got)}, "
                f"unknown {sorted(got - names)}); re-run scripts/train_reference.py."
            )
        kw = dict(d)
        kw["input"] = input_spec_from_dict(d["input"])
        kw["labels"] = tuple(d["labels"])
        return cls(**kw)


def _tuples(v: Any) -> Any:
    """JSON lists back to the tuples the frozen arch dataclasses hold."""
    if isinstance(v, list | tuple):
        return tuple(_tuples(x) for x in v)
    if isinstance(v, dict):
        return {k: _tuples(x) for k, x in v.items()}
    return v


def list_references(root: str | Path | None = None) -> list[str]:
    """Names of the reference checkpoints under ``root`` (default: the committed ``zoo_weights``)."""
    return sorted(p.stem for p in Path(root or ZOO_WEIGHTS_DIR).glob("*.json"))


def read_reference_meta(name: str, root: str | Path | None = None) -> ReferenceMeta:
    """The sidecar of reference ``name``; unknown names raise with close matches."""
    root = Path(root or ZOO_WEIGHTS_DIR)
    path = root / f"{name}.json"
    if not path.is_file():
        known = list_references(root)
        raise ConfigError(f"unknown reference model {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}.")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{path}: unreadable sidecar ({e}); re-run scripts/train_reference.py.") from e
    return ReferenceMeta.from_dict(d, source=str(path))


def reference_arch(meta: ReferenceMeta):
    """The architecture of reference ``meta``: its zoo variant's, with the recorded overrides applied."""
    return get_spec(meta.model).arch.replace(**_tuples(meta.arch_overrides))


def build_reference(meta: ReferenceMeta):
    """The untrained zoo model that ``meta`` describes (arch rebuilt from the recorded overrides)."""
    return create_model(meta.model, **_tuples(meta.arch_overrides))


def load_reference(name: str, root: str | Path | None = None):
    """Rebuild reference model ``name`` and load its weights strictly; returns ``(model.eval(), meta)``.

    Raises:
        ConfigError: an unknown name.
        ModelFileError: a missing or edited weights file (its sha256 differs from the sidecar's).
        WeightsError: weights that do not fit the recorded architecture.
    """
    meta = read_reference_meta(name, root)
    path = Path(root or ZOO_WEIGHTS_DIR) / meta.weights
    if not path.is_file() or sha256_file(path) != meta.weights_sha256:
        raise ModelFileError(
            f"{path}: missing, or its sha256 differs from {name}.json; re-run "
            f"scripts/train_reference.py or restore the file."
        )
    from .checkpoints import load_strict, read_state_dict  # torch: the sidecars stay readable without it

    model = build_reference(meta)
    load_strict(model, read_state_dict(path), source=str(path))
    return model.eval(), meta


def reference_heldout(meta: ReferenceMeta, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The held-out inputs and labels that ``meta.heldout_accuracy`` was measured on."""
    if meta.dataset.get("name") == "digits":
        return digits_split("heldout", resolution=meta.input.resolution)
    if meta.dataset.get("name") == "keywords":
        return keywords_split("heldout", source="npz", root=root)
    if meta.dataset.get("name") == "clutter":
        return clutter_split("heldout")
    raise ModelFileError(f"{meta.name}: unknown dataset {meta.dataset.get('name')!r} in the sidecar.")
