"""``LatencyModel``: predict a sub-network's latency from its blocks' table entries plus a fitted correction.

Example::

    lm = LatencyModel.load("l1-ort-fp32.json")
    lm.predict_ms(space.smallest())
    for row in lm.breakdown(arch).rows: print(row.path, row.kind, row.ms)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LatencyTableError
from ..models.spec import to_tuples
from ..records import Record
from .blocks import segments
from .space import SearchSpace
from .table import LatencyTable, TableDevice, check_same, read_table


@dataclass(frozen=True, kw_only=True)
class BlockCost(Record):
    path: str  # "stages.3.blocks.2"
    kind: str
    key: str
    ms: float
    interpolated: bool = False


@dataclass(frozen=True, kw_only=True)
class Breakdown(Record):
    """Per-segment predicted costs, the correction, and their total (what a slimming report shows)."""

    rows: tuple[BlockCost, ...]
    blocks_ms: float
    correction_ms: float
    total_ms: float

    def to_markdown(self) -> str:
        lines = ["| segment | kind | ms |", "|---|---|---:|"]
        lines += [f"| {r.path} | {r.kind} | {r.ms:.3f} |" for r in self.rows]
        lines.append(f"| correction | fusion, overhead | {self.correction_ms:+.3f} |")
        lines.append(f"| **total** | | **{self.total_ms:.3f}** |")
        return "\n".join(lines)


class LatencyModel:
    """Predictions from one :class:`LatencyTable`; refuses architectures it has no entry for."""

    def __init__(self, table: LatencyTable, space: SearchSpace | None = None, source: str = "table") -> None:
        self.table = table
        self.space = space or SearchSpace.of(table.model, width_step=table.width_step)
        self.source = source

    @classmethod
    def load(cls, path: str | Path, device: TableDevice | None = None) -> LatencyModel:
        """Read a table; with ``device``, refuse one measured elsewhere (the error names both fingerprints)."""
        table = read_table(path)
        if device is not None:
            check_same(table, device, path)
        return cls(table, source=str(path))

    def _segments(self, arch: Any):
        if type(arch) is not type(self.space.parent):
            raise LatencyTableError(
                f"{self.source} is the table of {self.table.model} ({type(self.space.parent).__name__}); "
                f"it cannot predict a {type(arch).__name__}."
            )
        return segments(self.space.zoo_model, arch, self.space.input_shape)

    def blocks(self, arch: Any) -> tuple[BlockCost, ...]:
        rows = []
        for seg in self._segments(arch):
            entry = self.table.entries.get(seg.key.id)
            if entry is None:
                raise LatencyTableError(
                    f"{self.source} has no entry for block {seg.key.id} ({seg.path}); the architecture is outside "
                    "the table's search space, or the build was interrupted: rerun `edgeformer latency build` on it."
                )
            rows.append(BlockCost(path=seg.path, kind=seg.key.kind, key=seg.key.id, ms=entry.p50_ms))
        return tuple(rows)

    def features(self, arch: Any) -> dict[str, float]:
        rows = self.blocks(arch)
        feats: dict[str, float] = {"const": 1.0, "sum": sum(r.ms for r in rows)}
        for kind, n in Counter(r.kind for r in rows).items():
            feats[f"count:{kind}"] = float(n)
        return feats

    def breakdown(self, arch: Any) -> Breakdown:
        rows = self.blocks(arch)
        blocks_ms = sum(r.ms for r in rows)
        corr = 0.0
        c = self.table.correction
        if c is not None:
            f = self.features(arch)
            corr = sum(coef * f.get(name, 0.0) for name, coef in zip(c.features, c.coef, strict=True))
        return Breakdown(rows=rows, blocks_ms=blocks_ms, correction_ms=corr, total_ms=max(blocks_ms + corr, 0.0))

    def predict_ms(self, arch: Any) -> float:
        return self.breakdown(arch).total_ms

    def arch_from_dict(self, d: dict[str, Any]) -> Any:
        """An architecture record of this table's family from its ``to_dict()`` (an ``ARCH.json``)."""
        # JSON holds lists; every family arch must stay hashable (EfficientFormerV2's does not convert them itself)
        return self.space.parent.replace(**{k: to_tuples(v) for k, v in d.items()})
