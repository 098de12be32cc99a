"""The typed key of a latency-table entry (torch-free: tables are read on edge devices)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..records import Record


@dataclass(frozen=True, kw_only=True)
class BlockKey(Record):
    """What a table entry measures: segment kind, its (batch-1) input shape, and a structural signature.

    ``kind`` is ``"front"``, ``"downsample"``, ``"tail"`` or ``"block:<Class>"`` with ``+attn`` when the block
    has an attention mixer (the latency model's correction counts blocks per kind).
    """

    kind: str
    input_shape: tuple[int, ...]
    signature: str
    params: int

    DERIVED: ClassVar[tuple[str, ...]] = ("id",)

    @property
    def id(self) -> str:
        """Stable text id: the table's dictionary key."""
        shape = "x".join(map(str, self.input_shape))
        return f"{self.kind}@{shape}#{self.signature}"
