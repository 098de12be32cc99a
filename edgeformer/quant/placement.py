"""Latency-aware placement: quantize a group only where INT8 is measurably faster *on the target*.

INT8 is not free: every Q/DQ pair ORT cannot fuse away is extra memory traffic, and a small or
memory-bound block can run slower in INT8 than in FP32. The search starts from the transformer-aware
:func:`~edgeformer.quant.recipe.default_plan` and, one node group (block) at a time, times the same
placement with that group in float (the candidate) against the current one (the reference), the two
interleaved in rotating rounds until the paired ratio's interval excludes 1 or the decision's share of the
budget runs out (:mod:`.timing`). Whole-model differences of one group are 1-3 %, often less than the
noise of a shared machine, so each decision says what the timing could tell:

* float faster beyond the interval (by more than ``min_gain``): the group goes to float;
* INT8 faster beyond the interval: it stays INT8;
* within noise: chosen by fidelity, then size: INT8 stays (its weights are 4x smaller) unless only the
  float placement meets ``min_cosine``; the note says "within noise".

Every candidate's fidelity is checked on ORT with full optimisation, where fused INT8 kernels run (and
where the fused-attention bug showed up); a placement under ``min_cosine`` is never chosen.

With a :data:`LatencyFn` (a remote device's ``latency_fn``, a test's cost model) each round is one call
of it, reference and candidate alternating in order, and the same paired statistics decide.

The search is bounded: at most ``max_candidates`` groups (those with the most quantized nodes first) and
``time_budget_s`` of wall time; groups beyond either bound keep the default decision and say so. It
follows measured timings, so two runs can choose different plans: the chosen plan is written to the
artifact (``plan.json``) and ``quantize --plan`` rebuilds exactly that one.

Example::

    result = search_placement(pre, ranges, default_plan(model, cfg), node_groups(model), cfg,
                              feeds=holdout, reference=fp32_outputs, workdir=tmp)
    print(result.plan.summary(), [d.decision for d in result.decisions])
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..compare import Agreement, compare_outputs, ort_runner, run_all
from ..errors import QualityGateError
from ..profiling.harness import ProfileConfig, measure
from .config import QuantConfig, SearchConfig, rounded_fields
from .ort_adapter import write_qdq
from .ranges import TensorRanges
from .recipe import NodeGroup, QuantPlan
from .timing import (
    Comparator,
    LatencyFn,
    PairTiming,
    Speedup,
    latency_comparator,
    ort_comparator,
    ort_session,
    pair_config,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class GroupDecision:
    """What the search decided for one group, and the measurements behind it."""

    group: str
    quantized_nodes: int
    decision: str  # "int8" | "float"
    reason: str  # "latency" | "accuracy" | "default" (not searched) | "fidelity"
    latency_int8_ms: float | None = None  # placement with the group in INT8
    latency_float_ms: float | None = None  # the same placement with the group in float
    cosine_float: float | None = None  # worst cosine with the group in float; None where it could not be measured
    note: str = ""
    ratio: float | None = None  # float / INT8 placement latency, paired by round (< 1: float is faster)
    ratio_low: float | None = None  # its interval
    ratio_high: float | None = None
    decided: bool | None = None  # the interval excludes 1; False: within noise, chosen by fidelity/size
    rounds: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return rounded_fields(self)


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One timed placement: its label, p50 latency, and worst cosine vs FP32 (NaN: an output was NaN/Inf)."""

    label: str
    quantized_nodes: int
    latency_ms: float
    cosine: float

    def to_dict(self) -> dict[str, Any]:
        return rounded_fields(self)


@dataclass(frozen=True, kw_only=True)
class PlacementResult:
    """The chosen plan and how the search got there."""

    plan: QuantPlan
    decisions: tuple[GroupDecision, ...]
    candidates: tuple[Candidate, ...]
    fidelity: Agreement
    searched: int
    elapsed_s: float
    stopped: str = ""  # why the search ended early ("", "max_candidates", "time_budget")
    path: Path | None = field(default=None, compare=False)  # the chosen model file (in the caller's workdir)

    def to_dict(self) -> dict[str, Any]:
        return {
            "quantized_nodes": len(self.plan.nodes_to_quantize),
            "decisions": [d.to_dict() for d in self.decisions],
            "candidates": [c.to_dict() for c in self.candidates],
            "fidelity": self.fidelity.to_dict(),
            "searched": self.searched,
            "elapsed_s": round(self.elapsed_s, 2),
            "stopped": self.stopped,
        }


def ort_latency(
    feeds: Mapping[str, np.ndarray],
    *,
    threads: int | None = 2,
    rounds: int = 5,
    runs_per_round: int = 5,
    warmup: int = 2,
) -> LatencyFn:
    """A :data:`LatencyFn` timing models on ORT CPU with :func:`~edgeformer.profiling.measure`.

    Models take turns round by round (so background load is shared out) and each gets the median of its
    rounds' p50s. Sessions do not spin-wait: with spinning, an idle worker thread burns a core that another
    process (or the other session) needs, and the timing measures contention instead of the model.
    """

    def latency(paths: Sequence[Path]) -> list[float]:
        sessions = [ort_session(p, threads) for p in paths]
        # short rounds are flagged "unstable" one by one; the median over rounds is the figure that counts
        harness_log = logging.getLogger("edgeformer.profiling.harness")
        level = harness_log.level
        harness_log.setLevel(logging.ERROR)
        try:
            return _rounds(sessions)
        finally:
            harness_log.setLevel(level)

    def _rounds(sessions: list[Any]) -> list[float]:
        per: list[list[float]] = [[] for _ in sessions]
        for r in range(rounds):
            order = range(len(sessions)) if r % 2 == 0 else reversed(range(len(sessions)))
            for i in order:
                s = sessions[i]
                cfg = ProfileConfig(warmup=warmup if r == 0 else 1, runs=runs_per_round, max_runs=runs_per_round)
                per[i].append(measure(lambda s=s: s.run(None, dict(feeds)), cfg).p50_ms)
        return [statistics.median(v) for v in per]

    return latency


def search_placement(
    model_path: str | Path,
    ranges: TensorRanges,
    plan: QuantPlan,
    groups: Sequence[NodeGroup],
    config: QuantConfig,
    *,
    feeds: Sequence[Mapping[str, np.ndarray]],
    reference: Sequence[Mapping[str, np.ndarray]],
    workdir: Path,
    search: SearchConfig = SearchConfig(),
    latency: LatencyFn | None = None,
) -> PlacementResult:
    """Find the fastest placement meeting ``search.min_cosine``, starting from ``plan``.

    Args:
        model_path: the pre-processed FP32 graph ``plan`` and ``groups`` belong to.
        ranges: calibration ranges (computed once; every candidate reuses them).
        plan: the starting placement (normally :func:`default_plan`).
        groups: the node groups switched as one (:func:`node_groups`).
        feeds, reference: held-out inputs and their FP32 outputs, for every candidate's fidelity check.
        workdir: folder for candidate model files.
        latency: a timing function (a remote device, a test); without it, the pairs are timed interleaved
            in ORT CPU sessions on ``feeds[0]`` (:func:`~.timing.ort_comparator`).

    Raises:
        QualityGateError: even the default placement with every failing group in float misses ``min_cosine``.
    """
    t0 = time.monotonic()
    workdir = Path(workdir)
    compare = comparator(feeds[0], search, latency)
    counter = iter(range(10**9))

    def write(p: QuantPlan) -> Path:
        return write_qdq(model_path, ranges, p, config, workdir / f"cand{next(counter)}.onnx")

    def fidelity(path: Path) -> Agreement:
        return compare_outputs(reference, run_all(ort_runner(path, search.threads), feeds), rows=True)

    def fails(fid: Agreement) -> str | None:  # meets(): a NaN output fails too, where `nan < bar` would not
        return fid.meets(min_cosine=search.min_cosine)

    chosen = set(plan.nodes_to_quantize)
    members = [(g, tuple(n for n in g.nodes if n in chosen)) for g in groups]
    members = [(g, nodes) for g, nodes in members if nodes]
    decisions: dict[str, GroupDecision] = {}
    current, current_path = plan, write(plan)
    current_fid = fidelity(current_path)
    if fails(current_fid):  # broken before any timing: fix fidelity first
        current, current_path, current_fid = _repair_fidelity(
            current, members, decisions, write, fidelity, fails, search
        )
    candidates: list[Candidate] = []
    order = sorted(members, key=lambda m: -len(m[1]))  # most INT8 work first: the biggest latency effects
    searched, stopped = 0, ""
    for g, nodes in order:
        if g.name in decisions:
            continue
        if not search.enabled:
            break
        if searched >= search.max_candidates:
            stopped = "max_candidates"
            break
        if time.monotonic() - t0 > search.time_budget_s:
            stopped = "time_budget"
            break
        if len(current.nodes_to_quantize) == len(nodes):  # the last INT8 group: float would be the FP32 model
            continue
        searched += 1
        cand = current.without(nodes, reason="latency: INT8 not faster on the target (placement search)")
        cand_path = write(cand)
        cand_fid = fidelity(cand_path)
        timing = compare(current_path, cand_path)
        if not candidates:
            candidates.append(
                Candidate(
                    label="default",
                    quantized_nodes=len(current.nodes_to_quantize),
                    latency_ms=timing.reference_ms,
                    cosine=current_fid.cosine,
                )
            )
        candidates.append(
            Candidate(
                label=f"{g.name} float",
                quantized_nodes=len(cand.nodes_to_quantize),
                latency_ms=timing.candidate_ms,
                cosine=cand_fid.cosine,
            )
        )
        to_float, note = decide_group(timing, fails(cand_fid), search)
        r = timing.ratio
        decisions[g.name] = GroupDecision(
            group=g.name,
            quantized_nodes=len(nodes),
            decision="float" if to_float else "int8",
            reason="latency",
            latency_int8_ms=timing.reference_ms,
            latency_float_ms=timing.candidate_ms,
            cosine_float=cand_fid.cosine,
            note=note,
            ratio=r.ratio,
            ratio_low=r.low,
            ratio_high=r.high,
            decided=r.decided,
            rounds=r.rounds,
        )
        if to_float:
            current_path.unlink(missing_ok=True)
            current, current_path, current_fid = cand, cand_path, cand_fid
        else:
            cand_path.unlink(missing_ok=True)
    for g, nodes in members:
        if g.name not in decisions:
            why = "search off" if not search.enabled else f"not searched ({stopped or 'single group'})"
            decisions[g.name] = GroupDecision(
                group=g.name, quantized_nodes=len(nodes), decision="int8", reason="default", note=why
            )
    log.info(
        "placement search: %d group(s) timed in %.1fs, %d kept float for latency, %d within noise",
        searched,
        time.monotonic() - t0,
        sum(d.decision == "float" and d.reason == "latency" for d in decisions.values()),
        sum(d.decided is False for d in decisions.values()),
    )
    return PlacementResult(
        plan=current,
        decisions=tuple(decisions[g.name] for g, _ in members),
        candidates=tuple(candidates),
        fidelity=current_fid,
        searched=searched,
        elapsed_s=time.monotonic() - t0,
        stopped=stopped,
        path=current_path,
    )


def comparator(feeds: Mapping[str, np.ndarray], search: SearchConfig, latency: LatencyFn | None) -> Comparator:
    """How the search times a pair: ``latency`` called round by round if given, else ORT interleaved on ``feeds``."""
    config = pair_config(search)
    if latency is not None:
        return latency_comparator(latency, config)
    return ort_comparator(feeds, threads=search.threads, config=config)


def measure_speedup(
    fp32: str | Path,
    int8: str | Path,
    feeds: Mapping[str, np.ndarray],
    search: SearchConfig,
    latency: LatencyFn | None = None,
) -> Speedup:
    """FP32 / INT8 latency of the delivered model, timed as the search times its pairs (:func:`comparator`).

    INT8 that is slower than FP32 beyond the interval is logged as a warning here, and ``int8_slower`` carries it
    into the report, the manifest and the CLI's one line: INT8 must never lose silently.
    """
    timing = comparator(feeds, search, latency)(Path(fp32), Path(int8))
    speedup = Speedup.of(timing, backend="ort" if latency is None else "latency_fn", threads=search.threads)
    if speedup.int8_slower:
        log.warning("the INT8 model is slower than FP32: %s", speedup.describe())
    return speedup


def decide_group(timing: PairTiming, float_fails: str | None, search: SearchConfig) -> tuple[bool, str]:
    """Whether a group goes to float (``timing``: float placement vs the INT8 one), and the report's note.

    Float only when it is faster beyond the interval by more than ``min_gain`` and meets the fidelity bar;
    within noise, fidelity then size decide, and the INT8 placement, which meets the bar, is 4x smaller.
    """
    r = timing.ratio
    gain = 1.0 - r.ratio  # of the INT8 placement's latency that float would save (negative: INT8 saves)
    measured = f"float/INT8 {r.describe()} over {r.rounds} rounds ({timing.method})"
    if not r.decided:
        why = f"float placement fails: {float_fails}" if float_fails else "both meet the bar, INT8 weights 4x smaller"
        return False, f"{measured}: within noise; chose INT8 by fidelity/size ({why})"
    if r.b_faster:
        return False, f"{measured}: INT8 faster by {-gain:.1%}"
    if gain <= search.min_gain:
        return False, f"{measured}: float saves only {gain:.1%} (min_gain {search.min_gain:.1%})"
    if float_fails:  # faster in float, but only the INT8 placement meets the bar
        return False, f"{measured}: float faster by {gain:.1%} but fails fidelity ({float_fails}); kept INT8"
    return True, f"{measured}: float faster by {gain:.1%}"


def _repair_fidelity(plan, members, decisions, write, fidelity, fails, search):
    """Move groups to float, the ones whose float version helps cosine most first, until ``min_cosine`` holds."""
    current, path = plan, write(plan)
    fid = fidelity(path)
    remaining = list(members)
    while fails(fid) and len(remaining) > 1:
        trials = []
        for g, nodes in remaining:
            p = current.without(nodes, reason="accuracy: cosine vs FP32 below the bar with this group in INT8")
            cp = write(p)
            trials.append((_score(fidelity(cp)), g, nodes, p, cp))
        best = max(trials, key=lambda t: t[0])
        for t in trials:
            if t is not best:
                t[4].unlink(missing_ok=True)
        cos, g, nodes, current, path = best
        fid = fidelity(path)
        remaining = [m for m in remaining if m[0].name != g.name]
        decisions[g.name] = GroupDecision(
            group=g.name,
            quantized_nodes=len(nodes),
            decision="float",
            reason="accuracy",
            cosine_float=cos,
            note=f"cosine vs FP32 {cos:.5f} with this group float",
        )
    if reason := fails(fid):
        raise QualityGateError(
            f"no placement reaches cosine {search.min_cosine} vs FP32 (best: {reason}); calibrate on more "
            "representative data, try method='percentile', or lower the bar (SearchConfig.min_cosine)."
        )
    return current, path, fid


def _score(fid: Agreement) -> float:
    """A candidate's worst cosine for ranking; one with a NaN/Inf output ranks below every measured one."""
    return -math.inf if fid.problem else fid.cosine
