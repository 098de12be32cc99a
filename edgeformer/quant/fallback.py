"""Fidelity fallback: keep the fewest, most sensitive ops in float until the INT8 model meets the cosine bar.

The transformer-aware default plan reaches cosine 0.999 vs FP32 on the zoo, but models written elsewhere carry
traits it was not measured on (re-parameterized convs with a few dominant channels, LayerScale gammas spanning
decades, residual streams with massive channels), and one calibrated scale per tensor cannot serve them all.
Without labels the fix has to come from the FP32 model itself: when the plan's worst held-out cosine is under the
bar, the quantized ops are ranked by their worst SQNR (:func:`~.sensitivity.node_sqnr`, most damaged first) and
the shortest prefix of that ranking whose return to float meets the bar is found (doubling, then bisection: a
few model builds, not one per op). The SQNR ranking is a proxy, so a prune then gives chosen ops back to
INT8, in chunks and then one by one (ddmin), wherever the bar still holds, until every op left in float is
*needed*: quantizing any one of them again misses the bar (``minimal`` records whether that was verified within
the bound).

Everything is bounded: at most ``max_ops`` ops go back to float (by default any number), never all of them (that
would be the FP32 model under another name); finding the prefix takes about 2·log2(ops) trials and the prune at
most ``_MAX_PRUNE_TRIALS``, each one QDQ write and one held-out comparison. When even all but one op (or
``max_ops``) in float miss the bar, :class:`~edgeformer.errors.QualityGateError` names the most sensitive ones.

The bar is judged on the gate's held-out samples (``QuantConfig.fidelity_samples``, 8 by default), and the fewest
ops that reach it there are not a guarantee elsewhere: on the LayerScale ViT of tests/quant/outside_models.py the
fallback took the worst cosine on the 8 held-out samples from 0.99387 to 0.99921, while on 64 fresh inputs it went
from 0.99218 to 0.99068 (judging on 24 calibration samples more did not help: 0.98942, those never clip). More
held-out data (``fidelity_samples``, a larger ``calib``) is the way to a bar that holds on the deployment's data.

Example::

    result = fit_fidelity(pre, ranges, plan, cfg, bar=0.999, max_ops=None, fidelity=check, feeds=holdout[:4],
                          workdir=tmp)
    if result is not None:
        plan = result.plan          # result.float_ops: the ops kept float, in the order they were chosen
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..compare import Agreement
from ..errors import QualityGateError
from .config import QuantConfig, rounded_fields
from .ort_adapter import write_qdq
from .placement import LatencyFn
from .ranges import TensorRanges
from .recipe import QuantPlan
from .sensitivity import node_sqnr

log = logging.getLogger(__name__)

# the prune's trials at most: the trained digits_shvit (16 of 61 ops float) took 88 trials in all, 43 s on 2 cores
_MAX_PRUNE_TRIALS = 96


def reason(bar: float) -> str:
    """The plan's reason for an op the fallback kept float."""
    return f"fidelity: among the fewest most sensitive ops (SQNR) kept float to reach cosine {bar} vs FP32"


@dataclass(frozen=True, kw_only=True)
class FloatOp:
    """One op kept float: its node, op type and worst SQNR (dB) in the all-INT8 plan (None: not finite)."""

    node: str
    op_type: str
    sqnr_db: float | None

    def to_dict(self) -> dict[str, Any]:
        return rounded_fields(self, 3)


@dataclass(frozen=True, kw_only=True)
class FidelityFallback:
    """What the fallback kept float, what it bought and (once timed) what it costs.

    Attributes:
        bar: the worst held-out cosine vs FP32 the result had to reach.
        plan: the plan delivered (``candidate`` without ``float_ops``).
        candidate: the all-INT8 plan the fallback started from.
        cosine_before, cosine_after: worst cosine of ``candidate`` and of ``plan`` (NaN: a NaN/Inf output) on ``on``.
        on: the samples the fallback judged on: the gate's (held-out samples, 8 by default). The bar holds on those;
            on other data the worst cosine can be lower (see the module docstring).
        float_ops: the ops kept float, most sensitive first.
        trials: models written and compared (the candidate included).
        minimal: a prune pass ran in which re-quantizing each op of ``float_ops`` alone missed the bar.
        latency: ``{"int8_ms", "delivered_ms", "cost_ms", "cost_pct", "threads"}``: the all-INT8 candidate and the
            delivered model timed in alternating rounds (:func:`timed`); None until timed.
    """

    bar: float
    plan: QuantPlan
    candidate: QuantPlan
    cosine_before: float
    cosine_after: float
    on: str
    float_ops: tuple[FloatOp, ...]
    trials: int
    minimal: bool
    latency: dict[str, Any] | None = None
    path: Path | None = field(default=None, compare=False)  # the delivered plan's model (caller's workdir)
    candidate_path: Path | None = field(default=None, compare=False)

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(op.node for op in self.float_ops)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bar": self.bar,
            "cosine_before": _round(self.cosine_before),
            "cosine_after": _round(self.cosine_after),
            "on": self.on,
            "float_ops": [op.to_dict() for op in self.float_ops],
            "trials": self.trials,
            "minimal": self.minimal,
            "latency": self.latency,
        }


def fit_fidelity(
    model_path: str | Path,
    ranges: TensorRanges,
    plan: QuantPlan,
    config: QuantConfig,
    *,
    bar: float,
    max_ops: int | None,
    fidelity: Callable[[Path], Agreement],
    feeds: Sequence[Mapping[str, np.ndarray]],
    workdir: str | Path,
    start: tuple[Path, Agreement] | None = None,
) -> FidelityFallback | None:
    """Keep the fewest, most sensitive ops of ``plan`` float until ``fidelity`` meets ``bar``; None if ``plan``
    already does (nothing changes).

    Args:
        model_path: the pre-processed FP32 graph ``plan`` belongs to.
        ranges: the calibration ranges (reused for every trial).
        fidelity: compares a model file with FP32 on the held-out samples, as the gate does.
        feeds: samples for the SQNR ranking (a few held-out feeds).
        workdir: folder for the trial models.
        start: ``plan``'s model file and agreement, when the caller already has them.

    Raises:
        QualityGateError: the bar is missed even with ``max_ops`` (or all but one) of the ops in float; the
            message names the most sensitive ones.
    """
    workdir = Path(workdir)
    # each trial's agreement, by its float set; its file is deleted once measured (a hundred trials of a large
    # model would fill the temporary folder), all but the all-INT8 candidate's, which is timed at the end
    measured: dict[frozenset[str], Agreement] = {}
    candidate_path = start[0] if start is not None else None
    if start is not None:
        measured[frozenset()] = start[1]

    def write(floats: Sequence[str], name: str) -> Path:
        p = plan.without(floats, reason=reason(bar)) if floats else plan
        return write_qdq(model_path, ranges, p, config, workdir / name)

    def trial(floats: Sequence[str]) -> Agreement:
        nonlocal candidate_path
        key = frozenset(floats)
        if key not in measured:
            path = write(floats, f"fallback{len(measured)}.onnx")
            measured[key] = fidelity(path)
            if key:
                path.unlink(missing_ok=True)
            else:
                candidate_path = path
        return measured[key]

    def meets(floats: Sequence[str]) -> bool:
        return trial(floats).meets(min_cosine=bar) is None

    if meets(()):
        return None
    sqnr = node_sqnr(model_path, ranges, plan, config, feeds)
    position = {n: i for i, n in enumerate(plan.nodes_to_quantize)}
    ranking = sorted(plan.nodes_to_quantize, key=lambda n: (sqnr.get(n, math.inf), position[n]))
    limit = len(ranking) - 1  # at least one op stays INT8: all float is the FP32 model
    limit = limit if max_ops is None else min(max_ops, limit)
    types = _op_types(model_path)

    def fail(k: int) -> QualityGateError:
        fid = trial(ranking[:k])
        named = ", ".join(f"{n} ({types.get(n, '?')}, {_db(sqnr.get(n))})" for n in ranking[: max(k, 1)][:10])
        more = f" and {k - 10} more" if k > 10 else ""
        capped = k < len(ranking) - 1  # fallback_max_ops stopped it; else every op but one was float
        what = f"the {k} most sensitive op(s)" if capped else f"every quantized op but one ({k} op(s))"
        return QualityGateError(
            f"the quantized model diverges from FP32 below the cosine bar {bar} even with {what} kept float (cosine "
            f"{_fmt(fid.cosine)}): {named}{more}; nothing was written. Calibrate on more representative data, try "
            "method='percentile', "
            + ("allow more ops in float (QuantConfig.fallback_max_ops), " if capped else "")
            + "or lower the bar (QuantConfig.min_cosine)."
        )

    if limit < 1:
        raise fail(0)
    # shortest passing prefix: doubling finds a passing length, bisection the shortest one after the last miss
    lo, k = 0, 1
    while not meets(ranking[:k]):
        if k >= limit:
            raise fail(k)
        lo, k = k, min(2 * k, limit)
    hi = k
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if meets(ranking[:mid]) else (mid, hi)
    chosen, minimal = _prune(list(ranking[:hi]), meets, max_trials=_MAX_PRUNE_TRIALS)
    result = FidelityFallback(
        bar=bar,
        plan=plan.without(chosen, reason=reason(bar)),
        candidate=plan,
        cosine_before=trial(()).cosine,
        cosine_after=trial(chosen).cosine,
        on=trial(()).on,
        float_ops=tuple(FloatOp(node=n, op_type=types.get(n, "?"), sqnr_db=_finite(sqnr.get(n))) for n in chosen),
        trials=len(measured) - (start is not None),
        minimal=minimal,
        path=write(chosen, "fallback.onnx"),  # written again: the trial's file is gone (ORT writes it identically)
        candidate_path=candidate_path,
    )
    log.info(
        "fidelity fallback: %d op(s) kept float, cosine %.5f -> %.5f (bar %s) in %d trial(s)",
        len(chosen),
        result.cosine_before,
        result.cosine_after,
        bar,
        result.trials,
    )
    return result


def _prune(chosen: list[str], meets: Callable[[Sequence[str]], bool], *, max_trials: int) -> tuple[list[str], bool]:
    """Give ops of ``chosen`` (most sensitive first; it meets the bar) back to INT8 where the bar still holds.

    Zeller's ddmin on the complement: try re-quantizing chunks, least sensitive first, halving the chunk size
    when none can go, down to single ops. It ends when every op alone was tried against the final set and each
    missed the bar (``True``: the set is 1-minimal), or after ``max_trials`` tries (``False``). An op that the
    SQNR ranking placed too early costs one chunk trial instead of a pass over the whole prefix.
    """
    n, tries = 2, 0
    while len(chosen) >= 2:
        size = -(-len(chosen) // n)
        chunks = [chosen[i : i + size] for i in range(0, len(chosen), size)][::-1]
        for chunk in chunks:
            if tries >= max_trials:
                return chosen, False
            tries += 1
            rest = [m for m in chosen if m not in chunk]
            if meets(rest):
                chosen, n = rest, max(n - 1, 2)
                break
        else:
            if n >= len(chosen):
                return chosen, True
            n = min(2 * n, len(chosen))
    return chosen, True  # one op left: the plan itself (none float) misses the bar


def timed(result: FidelityFallback, delivered: Path, latency: LatencyFn, *, threads: int | None) -> FidelityFallback:
    """``result`` with the latency of ``delivered`` against the all-INT8 candidate, timed by ``latency`` (which
    alternates the two round by round, so a busy machine slows both alike)."""
    if result.candidate_path is None:
        return result
    t_int8, t_delivered = latency([result.candidate_path, delivered])
    cost = t_delivered - t_int8
    return dataclasses.replace(
        result,
        latency={
            "int8_ms": round(t_int8, 4),
            "delivered_ms": round(t_delivered, 4),
            "cost_ms": round(cost, 4),
            "cost_pct": round(100.0 * cost / t_int8, 2) if t_int8 > 0 else None,
            "threads": threads,
        },
    )


def summary_line(record: Mapping[str, Any] | None) -> str | None:
    """One line for the CLI from a manifest's ``extra["fallback"]``: the ops kept float and their cost."""
    if not record or not record.get("float_ops"):
        return None
    ops = record["float_ops"]
    names = ", ".join(f"{o['node']} ({o['op_type']})" for o in ops[:6]) + (
        f" and {len(ops) - 6} more" if len(ops) > 6 else ""
    )
    lat = record.get("latency") or {}
    cost = (
        f"; latency {lat['int8_ms']:.3f} ms all-INT8 -> {lat['delivered_ms']:.3f} ms delivered "
        f"({lat['cost_pct']:+.1f}%)"
        if lat.get("cost_pct") is not None
        else ""
    )
    return (
        f"kept float for fidelity: {len(ops)} op(s) to reach cosine {record['bar']} vs FP32 "
        f"({_fmt(record.get('cosine_before'))} -> {_fmt(record.get('cosine_after'))}): {names}{cost}"
    )


def _op_types(model_path: str | Path) -> dict[str, str]:
    return {n.name: n.op_type for n in onnx.load(str(model_path), load_external_data=False).graph.node}


def _finite(v: float | None) -> float | None:
    return round(v, 3) if v is not None and math.isfinite(v) else None


def _round(v: float) -> float | None:
    return round(v, 6) if math.isfinite(v) else None


def _fmt(v: float | None) -> str:
    return "NaN" if v is None or not math.isfinite(v) else f"{v:.5f}"


def _db(v: float | None) -> str:
    return "SQNR -" if v is None or not math.isfinite(v) else f"SQNR {v:.1f} dB"
