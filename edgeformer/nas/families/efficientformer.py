"""EfficientFormer (V1): Meta4D pool blocks stay pool; a Meta3D attention block may drop its attention ("mlp")."""

from __future__ import annotations

from ...models.efficientformer import EfficientFormerArch
from .base import ATTN, MLP, NONE, Adapter, Genome


class EfficientFormerAdapter(Adapter):
    family = "efficientformer"
    min_depth = 1  # the arch allows empty stages, but the downsample of an empty stage still runs: keep a block

    def to_genome(self, arch: EfficientFormerArch) -> Genome:
        mixers = tuple(tuple(NONE if k == MLP else k for k in stage) for stage in arch.mixers)
        return Genome(widths=arch.widths, depths=arch.depths, ratios=arch.mlp_ratios, mixers=mixers)

    def to_arch(self, parent: EfficientFormerArch, g: Genome) -> EfficientFormerArch:
        mixers = tuple(tuple(MLP if k == NONE else k for k in stage) for stage in g.mixers)
        return parent.replace(widths=g.widths, depths=g.depths, mlp_ratios=g.ratios, mixers=mixers)

    def mixer_options(self, kind: str) -> tuple[str, ...]:
        return (ATTN, NONE) if kind == ATTN else (kind,)


ADAPTER = EfficientFormerAdapter()
