"""AudioFormer: an attention block may drop its attention; heads and head dims stay the parent's."""

from __future__ import annotations

from ...models.audio import AudioFormerArch
from .base import ATTN, NONE, Adapter, Genome


class AudioFormerAdapter(Adapter):
    family = "audioformer"

    def to_genome(self, arch: AudioFormerArch) -> Genome:
        mixers = tuple(tuple(ATTN if a else NONE for a in stage) for stage in arch.attn)
        return Genome(widths=arch.widths, depths=arch.depths, ratios=arch.mlp_ratios, mixers=mixers)

    def to_arch(self, parent: AudioFormerArch, g: Genome) -> AudioFormerArch:
        attn = tuple(tuple(k == ATTN for k in stage) for stage in g.mixers)
        return parent.replace(widths=g.widths, depths=g.depths, mlp_ratios=g.ratios, attn=attn)


ADAPTER = AudioFormerAdapter()
