"""Named label sets referenced by ``ModelSpec.labels`` and copied into artifact manifests.

ImageNet's 1000 class names are not shipped (edgeformer downloads nothing and has no pretrained
weights to pair them with): ``"imagenet"`` resolves to ``None`` and predictions show ``class_<i>``.
"""

from __future__ import annotations

from ..errors import ConfigError
from .audio import KWS_LABELS

_SETS: dict[str, tuple[str, ...] | None] = {
    "kws12": KWS_LABELS,
    "digits": tuple(str(i) for i in range(10)),
    "digits10": tuple(str(i) for i in range(10)),
    "imagenet": None,
}


def resolve_labels(name: str | None, num_classes: int | None = None) -> tuple[str, ...] | None:
    """The label names of set ``name`` (``None`` when the set is not shipped), checked against ``num_classes``."""
    if name is None:
        return None
    if name not in _SETS:
        raise ConfigError(f"unknown label set {name!r} (ModelSpec.labels); known: {', '.join(_SETS)}.")
    labels = _SETS[name]
    if labels is not None and num_classes is not None and len(labels) != num_classes:
        return None  # an override changed the head (e.g. num_classes=10): names no longer apply
    return labels
