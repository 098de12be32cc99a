"""The adapter contract and the family-neutral :class:`Genome` the search space is written in."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, ClassVar

from ...errors import ConfigError

# mixer names of the genome; a family maps them to its own ("attn" is EfficientFormer's "attn" and
# SHViT's attention=True)
ATTN, POOL, MLP, NONE = "attn", "pool", "mlp", "none"


@dataclass(frozen=True)
class Genome:
    """Family-neutral choices of one sub-network: what the search space samples and slimming edits.

    ``ratios``/``mixers`` hold one tuple per stage with one entry per *kept* block (blocks are kept from the
    front of a stage, as :func:`~edgeformer.models.slice_weights` keeps them); ``partial`` is SHViT's per-stage
    attention width (``None`` for families without one).
    """

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    ratios: tuple[tuple[float, ...], ...]
    mixers: tuple[tuple[str, ...], ...]
    partial: tuple[int, ...] | None = None


class Adapter:
    """Translates between a family's arch dataclass and :class:`Genome`.

    ``mixer_options(kind)`` lists what a parent block of mixer ``kind`` may become in a sub-network, parent's
    kind first; ``has_partial`` says whether the family has SHViT's partial dims.
    """

    family: ClassVar[str]
    has_partial: ClassVar[bool] = False
    min_depth: ClassVar[int] = 1

    def to_genome(self, arch: Any) -> Genome:
        raise NotImplementedError

    def to_arch(self, parent: Any, genome: Genome) -> Any:
        raise NotImplementedError

    def mixer_options(self, kind: str) -> tuple[str, ...]:
        return (ATTN, NONE) if kind == ATTN else (kind,)


class FlagAdapter(Adapter):
    """Blocks carry an attention on/off flag; ``widths_field`` and ``attn_field`` name the arch's fields."""

    widths_field: ClassVar[str] = "widths"
    attn_field: ClassVar[str] = "attn"

    def to_genome(self, arch: Any) -> Genome:
        mixers = tuple(tuple(ATTN if a else NONE for a in stage) for stage in getattr(arch, self.attn_field))
        return Genome(
            widths=getattr(arch, self.widths_field),
            depths=arch.depths,
            ratios=arch.mlp_ratios,
            mixers=mixers,
            partial=self._partial(arch),
        )

    def to_arch(self, parent: Any, g: Genome) -> Any:
        flags = tuple(tuple(k == ATTN for k in stage) for stage in g.mixers)
        fields = {self.widths_field: g.widths, self.attn_field: flags, "depths": g.depths, "mlp_ratios": g.ratios}
        return parent.replace(**fields, **self._partial_fields(parent, g))

    def _partial(self, arch: Any) -> tuple[int, ...] | None:
        return None

    def _partial_fields(self, parent: Any, g: Genome) -> dict[str, Any]:
        return {}


_MODULES = {
    "efficientformer": "efficientformer",
    "efficientformer_v2": "efficientformer_v2",
    "shvit": "shvit",
    "audioformer": "audio",
}


def adapter_for(family: str) -> Adapter:
    """The adapter of zoo family ``family`` (``"efficientformer"``, ``"shvit"``, ...)."""
    if family not in _MODULES:
        raise ConfigError(f"no search space for the {family!r} family; slimming covers {', '.join(sorted(_MODULES))}.")
    module = importlib.import_module(f"{__package__}.{_MODULES[family]}")
    return module.ADAPTER
