"""SHViT: an SHSA block may drop its attention; the attention's partial dim is a per-stage choice."""

from __future__ import annotations

from typing import Any

from .base import FlagAdapter, Genome


class SHViTAdapter(FlagAdapter):
    family = "shvit"
    has_partial = True
    widths_field = "embed_dims"
    attn_field = "attention"

    def _partial(self, arch: Any) -> tuple[int, ...] | None:
        return arch.partial_dims

    def _partial_fields(self, parent: Any, g: Genome) -> dict[str, Any]:
        return {"partial_dims": g.partial if g.partial is not None else parent.partial_dims}


ADAPTER = SHViTAdapter()
