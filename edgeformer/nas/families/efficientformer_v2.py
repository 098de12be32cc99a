"""EfficientFormerV2: a block with an attention mixer may drop it (the FFN stays); the downsamples are fixed."""

from __future__ import annotations

from ...models.efficientformer_v2 import EfficientFormerV2Arch
from .base import ATTN, NONE, Adapter, Genome


class EfficientFormerV2Adapter(Adapter):
    family = "efficientformer_v2"

    def to_genome(self, arch: EfficientFormerV2Arch) -> Genome:
        mixers = tuple(tuple(ATTN if a else NONE for a in stage) for stage in arch.attn)
        return Genome(widths=arch.widths, depths=arch.depths, ratios=arch.mlp_ratios, mixers=mixers)

    def to_arch(self, parent: EfficientFormerV2Arch, g: Genome) -> EfficientFormerV2Arch:
        attn = tuple(tuple(k == ATTN for k in stage) for stage in g.mixers)
        return parent.replace(widths=g.widths, depths=g.depths, mlp_ratios=g.ratios, attn=attn)


ADAPTER = EfficientFormerV2Adapter()
