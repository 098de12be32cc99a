"""Paired timing for quantization decisions: is this model faster than that one, beyond the noise?

The placement search used to time two whole graphs one after the other and act on 1-3 % differences
while the same graph measured 4.7-8.8 ms from one call to the next on the shared machine: most of its
decisions were noise. Here a candidate is timed *against* a fixed reference in rounds of a fresh order
(:func:`~edgeformer.profiling.interleave.interleave`) until the paired ratio's bootstrap interval
excludes 1 or the rounds / seconds of :func:`pair_config` run out, and the answer says which of the two
it was (:class:`PairTiming`).

Two ways to time a pair, one statistic:

* :func:`ort_comparator`: both models open in ORT CPU sessions (no spin-waiting: an idle spinning
  worker burns a core the other session needs), timed interleaved in this process;
* :func:`latency_comparator`: a :data:`LatencyFn` (``paths -> p50 ms each``: a remote device through its
  agent, or a test's cost model) called once per round, reference and candidate alternating in order, the
  per-round p50s paired exactly as the interleaved rounds are (median of per-round ratios, bootstrap
  over rounds). Each call is one round, so a remote function should time each model briefly.

:class:`Speedup` is the typed verdict on the delivered model (FP32 / INT8, with interval), written
into the quantization report and the artifact's manifest (``extra["placement"]["speedup"]``).

Example::

    compare = ort_comparator(feeds[0], threads=2, config=pair_config(SearchConfig()))
    t = compare(Path("int8.onnx"), Path("int8-block3-float.onnx"))
    print(t.ratio.describe(), t.verdict)   # 0.987 [0.962, 1.004] within noise
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..profiling.interleave import Contender, InterleaveConfig, Interleaved, RatioEstimate, interleave
from ..profiling.side_by_side import session_options
from ..records import Record
from ..runtimes.ort import ort_options
from .config import SearchConfig

# ``latency(paths) -> p50 ms of each``; injectable so that the decision logic can be tested exactly
LatencyFn = Callable[[Sequence[Path]], list[float]]


@dataclass(frozen=True, kw_only=True)
class PairTiming:
    """A candidate timed against a reference: ``ratio`` is candidate / reference (< 1: the candidate is faster)."""

    ratio: RatioEstimate
    reference_ms: float
    candidate_ms: float
    stop: str  # "decided" | "rounds" | "budget"
    method: str  # "interleaved" | "alternating calls"

    @property
    def decided(self) -> bool:
        return self.ratio.decided

    @property
    def verdict(self) -> str:
        if self.ratio.a_faster:
            return "candidate faster"
        if self.ratio.b_faster:
            return "reference faster"
        return "within noise"


Comparator = Callable[[Path, Path], PairTiming]  # (reference, candidate) -> PairTiming


def pair_config(search: SearchConfig) -> InterleaveConfig:
    """The interleaving of one decision from the search settings.

    ``search.rounds`` rounds at least (6 at the fewest), up to 4x as many while the interval still straddles 1,
    and at most ``time_budget_s / max_candidates`` seconds, so that every candidate the search may time gets
    its share of the budget. A round times each model for at least ``runs_per_round`` calls and 50 ms.

    Each look at the interval is another chance for noise to pass for a difference, and a bootstrap interval
    of a median over few rounds is too narrow (over 3 rounds it is about their min..max, which excludes 1 in
    a quarter of pure-noise trials). So the interval is at 99 % and is looked at only after every
    ``min_rounds`` rounds (:func:`_look`): on simulated pure noise (+-10 % per call) this "decided" 6 % of
    pairs over the whole sequence, against 27 % at 95 % looking every round from round 6; a true 5 %
    difference was found 60 % of the time (the rest are reported as within noise).
    """
    low = max(6, search.rounds)
    share = search.time_budget_s / max(1, search.max_candidates)
    return InterleaveConfig(
        rounds=4 * low,
        min_rounds=low,
        round_time_s=0.05,
        min_calls=search.runs_per_round,
        warmup=search.warmup,
        budget_s=max(share, 0.5),
        confidence=0.99,
    )


def _look(rounds: int, config: InterleaveConfig) -> bool:
    """Whether to check for a decision after ``rounds`` rounds: every ``min_rounds`` rounds only."""
    return rounds >= config.min_rounds and rounds % config.min_rounds == 0


def ort_comparator(feeds: Mapping[str, np.ndarray], *, threads: int | None, config: InterleaveConfig) -> Comparator:
    """Time two model files interleaved in ORT CPU sessions on ``feeds`` until their ratio is decided."""

    def compare(reference: Path, candidate: Path) -> PairTiming:
        res = interleave(
            [
                Contender("reference", _ort_opener(reference, feeds, threads)),
                Contender("candidate", _ort_opener(candidate, feeds, threads)),
            ],
            config,
            decided=lambda part: (
                _look(len(part.round_medians), config) and part.ratio("candidate", "reference").decided
            ),
        )
        ratio = res.ratio("candidate", "reference")
        return PairTiming(
            ratio=ratio,
            reference_ms=res.row("reference").p50_ms,
            candidate_ms=res.row("candidate").p50_ms,
            stop=res.stop_reason,
            method="interleaved",
        )

    return compare


def latency_comparator(latency: LatencyFn, config: InterleaveConfig) -> Comparator:
    """Pair the p50s of repeated ``latency([a, b])`` calls, one call per round, the order alternating.

    Stops as the interleaved timing does: once the ratio's interval excludes 1 at a look (every
    ``config.min_rounds`` rounds) or ``config.budget_s`` has passed; at ``config.rounds`` otherwise.
    """

    def compare(reference: Path, candidate: Path) -> PairTiming:
        start = time.perf_counter()
        rounds: list[tuple[float, float]] = []
        stop = "rounds"
        for r in range(config.rounds):
            if r % 2 == 0:
                ref_ms, cand_ms = latency([reference, candidate])
            else:  # the other order: a function that favours the first (or last) path favours both alike
                cand_ms, ref_ms = latency([candidate, reference])
            rounds.append((float(ref_ms), float(cand_ms)))
            if r + 1 >= config.min_rounds and r + 1 < config.rounds:
                if _look(r + 1, config) and _paired(rounds, config).ratio("candidate", "reference").decided:
                    stop = "decided"
                    break
                if config.budget_s is not None and time.perf_counter() - start >= config.budget_s:
                    stop = "budget"
                    break
        medians = np.median(np.asarray(rounds), axis=0)
        return PairTiming(
            ratio=_paired(rounds, config).ratio("candidate", "reference"),
            reference_ms=float(medians[0]),
            candidate_ms=float(medians[1]),
            stop=stop,
            method="alternating calls",
        )

    return compare


def _paired(rounds: list[tuple[float, float]], config: InterleaveConfig) -> Interleaved:
    """Per-round figures as an :class:`Interleaved`, for its paired ratio (the rows are not used here)."""
    return Interleaved(
        config=config,
        names=("reference", "candidate"),
        round_medians=np.asarray(rounds, dtype=np.float64).reshape(len(rounds), 2),
        rows=(),
        stop_reason="",
    )


def ort_session(path: Path, threads: int | None):
    """An ORT CPU session as every quantization timing opens it: the session setting of every interleaved timing
    (:func:`~edgeformer.profiling.side_by_side.session_options`: ``threads`` intra-op threads, no spin-waiting),
    through the runtime's one mapping to ORT's options, with QDQ's per-node warnings off."""
    import onnxruntime as ort

    base = session_options("ort", threads or None)
    options = dataclasses.replace(base, extra=(*base.extra, ("log_severity_level", 3)))
    return ort.InferenceSession(str(path), ort_options(ort, options), providers=["CPUExecutionProvider"])


def _ort_opener(path: Path, feeds: Mapping[str, np.ndarray], threads: int | None):
    def open_() -> tuple[Callable[[], Any], Callable[[], None]]:
        session = ort_session(path, threads)
        fed = dict(feeds)
        return (lambda: session.run(None, fed)), (lambda: None)

    return open_


@dataclass(frozen=True, kw_only=True)
class Speedup(Record):
    """FP32 latency / INT8 latency of the delivered model, paired, with its interval (> 1: INT8 is faster).

    ``int8_slower`` is true only when FP32 is faster *beyond* the interval; ``decided`` says whether the
    interval excludes 1 at all. ``backend``/``threads`` say where it was timed, ``method`` how.
    """

    ratio: float
    low: float
    high: float
    decided: bool
    int8_slower: bool
    fp32_ms: float
    int8_ms: float
    rounds: int
    backend: str
    threads: int | None
    method: str

    @classmethod
    def of(cls, timing: PairTiming, *, backend: str, threads: int | None) -> Speedup:
        """From ``timing`` with FP32 as the reference and INT8 as the candidate."""
        r = timing.ratio  # int8 / fp32: invert it, and the interval with it
        return cls(
            ratio=round(1 / r.ratio, 4),
            low=round(1 / r.high, 4),
            high=round(1 / r.low, 4),
            decided=r.decided,
            int8_slower=r.b_faster,
            fp32_ms=round(timing.reference_ms, 4),
            int8_ms=round(timing.candidate_ms, 4),
            rounds=r.rounds,
            backend=backend,
            threads=threads,
            method=timing.method,
        )

    def describe(self) -> str:
        how = "INT8 slower than FP32" if self.int8_slower else "INT8 faster" if self.decided else "within noise"
        return f"{self.ratio:.2f}x [{self.low:.2f}, {self.high:.2f}] vs FP32 on {self.backend}: {how}"
