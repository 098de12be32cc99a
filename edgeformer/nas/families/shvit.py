"""SHViT: an SHSA block may drop its attention; the attention's partial dim is a per-stage choice."""

from __future__ import annotations

from ...models.shvit import SHViTArch
from .base import ATTN, NONE, Adapter, Genome


class SHViTAdapter(Adapter):
    family = "shvit"
    has_partial = True

    def to_genome(self, arch: SHViTArch) -> Genome:
        mixers = tuple(tuple(ATTN if a else NONE for a in stage) for stage in arch.attention)
        return Genome(
            widths=arch.embed_dims, depths=arch.depths, ratios=arch.mlp_ratios, mixers=mixers, partial=arch.partial_dims
        )

    def to_arch(self, parent: SHViTArch, g: Genome) -> SHViTArch:
        attention = tuple(tuple(k == ATTN for k in stage) for stage in g.mixers)
        return parent.replace(
            embed_dims=g.widths,
            depths=g.depths,
            mlp_ratios=g.ratios,
            attention=attention,
            partial_dims=g.partial if g.partial is not None else parent.partial_dims,
        )


ADAPTER = SHViTAdapter()
