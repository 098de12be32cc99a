"""A search space small enough to build a real latency table in seconds, and a synthetic table with a known truth."""

from __future__ import annotations

import dataclasses
import random
import time

import pytest

from edgeformer.nas import SearchSpace
from edgeformer.nas.blocks import segments
from edgeformer.nas.build import calibration_archs, table_keys
from edgeformer.nas.table import Entry, LatencyTable, TableDevice, Whole, arch_dict
from edgeformer.nas.timing import TimingConfig, local_device

FAST = TimingConfig(threads=1, rounds=2, runs=3, warmup=1, batch_size=8)


@pytest.fixture(scope="session")
def tiny_space() -> SearchSpace:
    """digits_shvit's space cut to 2 widths in the last stage and the parent's ratios: a dozen distinct blocks."""
    full = SearchSpace.of("digits_shvit")
    return dataclasses.replace(
        full,
        widths=(full.widths[0][:1], full.widths[1][:1], full.widths[2][:2]),
        ratios=tuple(tuple(r[:1] for r in st) for st in full.ratios),
        partial=tuple(p[:1] for p in full.partial),
    )


def truth_ms(key_id: str) -> float:
    """A made-up but deterministic cost per block."""
    return 0.05 + (sum(map(ord, key_id)) % 97) / 100


def synthetic_table(space: SearchSpace, device: TableDevice | None = None, const: float = 0.3) -> LatencyTable:
    """Every block at :func:`truth_ms`; whole models at exactly Σ blocks + ``const`` (an additive truth)."""
    keys = table_keys(space)
    entries = {}
    for k, (arch, path) in keys.items():
        key = next(s.key for s in segments(space.zoo_model, arch, space.input_shape) if s.path == path)
        entries[k] = Entry(key=key, p50_ms=truth_ms(k), noise=0.0, rounds=1, runs=1, witness=path, measured=time.time())
    wholes = []
    for a in calibration_archs(space, 6, 0):
        total = sum(truth_ms(s.key.id) for s in segments(space.zoo_model, a, space.input_shape)) + const
        wholes.append(Whole(arch=arch_dict(a), p50_ms=total, noise=0.0, params=1, macs=1))
    return LatencyTable(
        model=space.model,
        zoo_model=space.zoo_model,
        width_step=space.width_step,
        device=device or local_device("ort", 2, "fp32"),
        entries=entries,
        whole=tuple(wholes),
        keys_total=len(entries),
    )


def some_members(space: SearchSpace, n: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    return [space.sample(rng) for _ in range(n)]
