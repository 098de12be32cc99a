"""Activation ranges, collected one batch at a time.

ORT's calibrators keep every intermediate output of every sample in memory until the reader is
exhausted (``HistogramCalibrater.collect_data`` for entropy/percentile; ``MinMaxCalibrater`` unless
``CalibMaxIntermediateOutputs`` is set), which on a 5,000-image folder is tens of GB. The collectors
here fold each batch into constant-size state instead: a running min/max, and for the histogram methods
a fixed 2048-bin histogram over ``[-T, T]`` whose ``T`` doubles when a larger value arrives. Doubling
merges bin pairs exactly (old edges are new edges), so the streamed histogram equals the one that would
be built from all data with the final ``T``; nothing is re-binned approximately.

The result, :class:`TensorRanges`, is plain data (JSON-serialisable) so a placement search can compute
it once and write many quantized models from it.

Example::

    collector = RangeCollector(method="percentile", percentile=99.99)
    for sample_name, outputs in batches:
        collector.update(outputs, sample_name)
    ranges = collector.result(min_range=1e-4)
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import CalibrationError

log = logging.getLogger(__name__)

NUM_BINS = 2048  # even, so that doubling the range maps old bins 2:1 onto new ones
ENTROPY_LEVELS = 128  # quantized levels of the KL search: 128 of 256 codes per sign (TensorRT's choice)
ENTROPY_STEP = 8  # candidate thresholds every 8 bins: 112 candidates, well within KL-curve noise


@dataclass(frozen=True, kw_only=True)
class TensorRanges:
    """Per-tensor ``(low, high)`` float ranges from calibration.

    Attributes:
        method: the estimator that produced them (``minmax``, ``entropy``, ``percentile``).
        ranges: tensor name -> ``(low, high)``, ``low < high`` always (constant tensors widened).
        num_samples: calibration samples (not batches) the ranges were computed from.
        widened: tensors that were constant (or nearly) and got the minimum range.
    """

    method: str
    ranges: Mapping[str, tuple[float, float]]
    num_samples: int
    widened: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def __getitem__(self, name: str) -> tuple[float, float]:
        return self.ranges[name]

    def __contains__(self, name: object) -> bool:
        return name in self.ranges

    def __len__(self) -> int:
        return len(self.ranges)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ranges"] = {k: [float(lo), float(hi)] for k, (lo, hi) in sorted(self.ranges.items())}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorRanges:
        return cls(
            method=d["method"],
            ranges={k: (float(v[0]), float(v[1])) for k, v in d["ranges"].items()},
            num_samples=int(d["num_samples"]),
            widened=tuple(d.get("widened", ())),
            notes=tuple(d.get("notes", ())),
        )


class _Histogram:
    """A symmetric histogram over ``[-t, t]`` with ``NUM_BINS`` bins, grown by exact doubling."""

    __slots__ = ("counts", "t", "zeros")

    def __init__(self) -> None:
        self.counts = np.zeros(NUM_BINS, dtype=np.int64)
        self.t = 0.0
        self.zeros = 0  # values seen while t == 0 (all exactly zero): they land in the centre bin later

    def add(self, x: np.ndarray, amax: float) -> None:
        if amax == 0.0 and self.t == 0.0:
            self.zeros += x.size
            return
        if self.t == 0.0:
            self.t = amax
            self.counts[NUM_BINS // 2] += self.zeros
            self.zeros = 0
        elif amax > self.t:
            self._double(math.ceil(math.log2(amax / self.t)))
        idx = ((x.astype(np.float64, copy=False) + self.t) * (NUM_BINS / (2.0 * self.t))).astype(np.int64)
        np.clip(idx, 0, NUM_BINS - 1, out=idx)
        self.counts += np.bincount(idx, minlength=NUM_BINS)

    def _double(self, times: int) -> None:
        for _ in range(times):
            merged = self.counts.reshape(-1, 2).sum(axis=1)
            self.counts = np.zeros(NUM_BINS, dtype=np.int64)
            self.counts[NUM_BINS // 4 : NUM_BINS // 4 + merged.size] = merged
            self.t *= 2.0

    def edges(self) -> np.ndarray:
        return np.linspace(-self.t, self.t, NUM_BINS + 1)

    def folded(self) -> np.ndarray:
        """Histogram of ``|x|`` over ``[0, t]`` in ``NUM_BINS // 2`` bins."""
        half = NUM_BINS // 2
        return self.counts[half:] + self.counts[:half][::-1]


class RangeCollector:
    """Streams activations into per-tensor statistics; :meth:`result` turns them into ranges."""

    def __init__(self, method: str = "minmax", percentile: float = 99.999, symmetric: bool = False) -> None:
        if method not in ("minmax", "entropy", "percentile"):
            raise ValueError(f"unknown calibration method {method!r}")
        self.method = method
        self.percentile = percentile
        self.symmetric = symmetric
        self.num_samples = 0
        self._min: dict[str, float] = {}
        self._max: dict[str, float] = {}
        self._hist: dict[str, _Histogram] = {}

    def update(self, outputs: Mapping[str, np.ndarray], sample: str = "sample", batch: int = 1) -> None:
        """Fold one batch of activations (tensor name -> array) into the statistics.

        Raises:
            CalibrationError: a NaN or Inf activation, naming the tensor and the sample.
        """
        for name, arr in outputs.items():
            a = np.asarray(arr)
            if a.size == 0:
                continue
            lo, hi = float(np.min(a)), float(np.max(a))
            if not (math.isfinite(lo) and math.isfinite(hi)):  # min/max propagate NaN, so one check covers both
                bad = int(a.size - np.count_nonzero(np.isfinite(a)))
                raise CalibrationError(
                    f"activation {name!r} holds {bad} NaN/Inf values on calibration sample {sample}; the FP32 model "
                    "overflows on this input. Check the sample and its preprocessing, or exclude it."
                )
            self._min[name] = min(lo, self._min.get(name, lo))
            self._max[name] = max(hi, self._max.get(name, hi))
            if self.method != "minmax":
                self._hist.setdefault(name, _Histogram()).add(a.ravel(), max(abs(lo), abs(hi)))
        self.num_samples += batch

    def result(self, min_range: float = 1e-4) -> TensorRanges:
        """Ranges for every tensor seen; constant tensors are widened to ``min_range`` (and listed)."""
        ranges: dict[str, tuple[float, float]] = {}
        widened = []
        for name in sorted(self._min):
            lo, hi = self._min[name], self._max[name]
            if self.method != "minmax" and name in self._hist and self._hist[name].t > 0:
                clo, chi = self._clip(self._hist[name])
                lo, hi = max(lo, clo), min(hi, chi)
            if self.symmetric:
                amax = max(abs(lo), abs(hi))
                lo, hi = -amax, amax
            if hi - lo < min_range:
                # min == max (a constant branch, a dead channel): a zero range would give a zero or
                # NaN scale, so centre a minimum range on the value instead
                mid = 0.5 * (lo + hi)
                lo, hi = mid - 0.5 * min_range, mid + 0.5 * min_range
                widened.append(name)
            ranges[name] = (lo, hi)
        if widened:
            shown = ", ".join(widened[:5]) + (f" and {len(widened) - 5} more" if len(widened) > 5 else "")
            log.warning(
                "%d activation(s) were constant on the calibration data and got the minimum range %g: %s",
                len(widened),
                min_range,
                shown,
            )
        return TensorRanges(method=self.method, ranges=ranges, num_samples=self.num_samples, widened=tuple(widened))

    def _clip(self, h: _Histogram) -> tuple[float, float]:
        if self.method == "percentile":
            return _percentile_range(h, self.percentile, self.symmetric)
        t = _entropy_threshold(h.folded(), h.t)
        return -t, t


def _percentile_range(h: _Histogram, percentile: float, symmetric: bool) -> tuple[float, float]:
    if symmetric:
        folded = h.folded()
        cdf = np.cumsum(folded) / max(int(folded.sum()), 1)
        i = int(np.searchsorted(cdf, percentile / 100.0))
        t = (min(i, folded.size - 1) + 1) * h.t / folded.size
        return -t, t
    cdf = np.cumsum(h.counts) / max(int(h.counts.sum()), 1)
    tail = (100.0 - percentile) / 200.0  # cut half of the excluded mass on each side
    edges = h.edges()
    left = int(np.searchsorted(cdf, tail))
    right = int(np.searchsorted(cdf, 1.0 - tail))
    return float(edges[left]), float(edges[min(right + 1, NUM_BINS)])


def _entropy_threshold(hist: np.ndarray, t: float) -> float:
    """TensorRT's KL calibration on the ``|x|`` histogram: the clip threshold minimising KL(P || Q)."""
    n = hist.size
    if hist.sum() == 0:
        return t
    best_kl, best_i = math.inf, n
    for i in range(ENTROPY_LEVELS, n + 1, ENTROPY_STEP):
        p = hist[:i].astype(np.float64)
        p[-1] += hist[i:].sum()  # everything above the threshold is clipped onto the last bin
        # Q: the unclipped part of P squeezed into ENTROPY_LEVELS levels, each spread back evenly over
        # the non-empty bins it covers
        src = hist[:i].astype(np.float64)
        sizes = np.full(ENTROPY_LEVELS, i // ENTROPY_LEVELS)
        sizes[: i % ENTROPY_LEVELS] += 1
        level = np.repeat(np.arange(ENTROPY_LEVELS), sizes)
        nonzero = src > 0
        sums = np.bincount(level, weights=src, minlength=ENTROPY_LEVELS)
        counts = np.bincount(level, weights=nonzero, minlength=ENTROPY_LEVELS)
        q = np.where(nonzero, sums[level] / np.maximum(counts[level], 1), 0.0)
        if q.sum() == 0:
            continue
        p /= p.sum()
        q /= q.sum()
        mask = p > 0
        # P's mass where Q is empty (clipped outliers landing on an empty bin) gets a tiny floor rather
        # than an infinite divergence, as ORT/TensorRT's smoothing does
        kl = float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return best_i * t / n
