"""AudioFormer: an attention block may drop its attention; heads and head dims stay the parent's."""

from __future__ import annotations

from .base import FlagAdapter


class AudioFormerAdapter(FlagAdapter):
    family = "audioformer"


ADAPTER = AudioFormerAdapter()
