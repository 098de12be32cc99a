"""One adapter per zoo family: how a family's architecture record maps to the search space's choices.

The search space speaks one vocabulary (per-stage widths and depths, per-block MLP ratios and mixers, SHViT's
per-stage partial dims); each family module translates it to and from its own frozen arch dataclass.
"""

from __future__ import annotations

from .base import Adapter, Genome, adapter_for

__all__ = ["Adapter", "Genome", "adapter_for"]
