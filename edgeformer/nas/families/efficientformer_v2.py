"""EfficientFormerV2: a block with an attention mixer may drop it (the FFN stays); the downsamples are fixed."""

from __future__ import annotations

from .base import FlagAdapter


class EfficientFormerV2Adapter(FlagAdapter):
    family = "efficientformer_v2"


ADAPTER = EfficientFormerV2Adapter()
