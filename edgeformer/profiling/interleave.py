"""Interleaved timing: several contenders timed in rounds (A B C … C A B … B C A …), compared with intervals.

Timing rows one after another charges whatever load came and went during each row to that row alone: on a
shared 2-core machine one run of ``bench`` put two files that are the same speed 30 % apart. Here every round
times every contender for a short while, in a fresh seeded order each round so that no contender always
follows the same one. (With a cyclic order, rotated each round, an A/A pair on a quiet machine came out
1.030 [1.026, 1.060]: the twin always ran right after the same OpenVINO row, which closes its model and worker
threads at the end of its turn.) A row's figure is the **median of its round medians**. Load that lasts longer
than a round hits every contender alike and drops out of their *ratio*.

Intervals come from a bootstrap over rounds (rounds resampled with replacement, percentile interval):

* :meth:`Interleaved.row` — each row's p50 and its interval;
* :meth:`Interleaved.ratio` — the **paired** ratio of two rows: the median over rounds of
  ``round_median(a) / round_median(b)``, resampled by round, so the shared part of the load cancels.
  ``a`` is faster than ``b`` *beyond the intervals* when the ratio's upper bound is below 1.

:func:`interleave` also stops early when a caller's ``decided(result)`` says the question is answered (the
INT8 placement search, :mod:`edgeformer.quant.timing`, uses it). Looking at an interval after every round and
stopping at the first that excludes 1 decides pure noise far more often than the interval's level says (with
95 % intervals over 3-6 rounds, about a quarter of identical pairs); a caller that stops early should look
seldom and at a wider interval, as that module does. For a fixed number of rounds, the percentile bootstrap of
the median called identical pairs different 5.4-6.5 % of the time at 95 % (5-20 rounds; 2000 simulated pairs
with 5 % lognormal round noise).

Each contender is opened once and kept open (start-up time, first call included, and the resident
memory the opening added are recorded), or opened and closed around every round where a runtime's idle
worker threads would otherwise steal the cores from the others (OpenVINO's); the row says which.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..records import SKIP, Record
from .harness import MemorySampler

Call = Callable[[], Any]
Opener = Callable[[], tuple[Call, Callable[[], None]]]  # -> (the call to time, close)


@dataclass(frozen=True, kw_only=True)
class InterleaveConfig(Record):
    """Rounds, time per contender per round, warm-up, and the bootstrap of the intervals.

    Attributes:
        rounds: rounds to run (at least ``min_rounds`` when ``decided`` stops early).
        min_rounds: rounds before an early stop is considered; also the fewest rounds an interval is given for.
        round_time_s: timed seconds per contender per round (at least ``min_calls`` calls, at most ``max_calls``).
        warmup: untimed calls after each opening.
        budget_s: wall-clock bound of the whole timing (``None``: only ``rounds``); rounds stop when it runs out.
        confidence: level of the percentile intervals.
        bootstrap: bootstrap resamples.
        seed: seed of the bootstrap.
    """

    rounds: int = 12
    min_rounds: int = 5
    round_time_s: float = 0.25
    min_calls: int = 3
    max_calls: int = 10_000
    warmup: int = 5
    budget_s: float | None = None
    confidence: float = 0.95
    bootstrap: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not 2 <= self.min_rounds <= self.rounds:
            problems.append(f"need 2 <= min_rounds <= rounds (got {self.min_rounds}, {self.rounds})")
        if self.round_time_s <= 0:
            problems.append(f"round_time_s must be > 0 (got {self.round_time_s})")
        if not 1 <= self.min_calls <= self.max_calls:
            problems.append(f"need 1 <= min_calls <= max_calls (got {self.min_calls}, {self.max_calls})")
        if self.warmup < 0:
            problems.append(f"warmup must be >= 0 (got {self.warmup})")
        if self.budget_s is not None and self.budget_s <= 0:
            problems.append(f"budget_s must be > 0 (got {self.budget_s})")
        if not 0.5 <= self.confidence < 1:
            problems.append(f"confidence must be in [0.5, 1) (got {self.confidence})")
        if self.bootstrap < 100:
            problems.append(f"bootstrap must be >= 100 (got {self.bootstrap})")
        if problems:
            raise ConfigError("invalid interleave config: " + "; ".join(problems) + ".")


class ContenderFailed(RuntimeError):
    """A contender raised while opened or timed; ``name`` says which (the others can be timed without it)."""

    def __init__(self, name: str, error: BaseException) -> None:
        super().__init__(f"{name}: {type(error).__name__}: {error}")
        self.name, self.error = name, error


@dataclass(frozen=True)
class Contender:
    """One thing to time: ``open()`` returns ``(call, close)``; ``reopen`` opens and closes it around every round.

    ``time_round`` replaces the local timing loop where the calls run elsewhere (a device agent): it returns the
    round's call times in ms, measured there. Such a contender has no local start-up or memory figure.
    """

    name: str
    open: Opener
    reopen: bool = False
    time_round: Callable[[InterleaveConfig], list[float]] | None = None


@dataclass(frozen=True, kw_only=True)
class RowTiming(Record):
    """One contender's figures: p50 (median of round medians) with its interval, start-up and memory."""

    name: str
    p50_ms: float
    ci_low_ms: float
    ci_high_ms: float
    p90_ms: float  # over every timed call
    rounds: int
    calls: int
    startup_ms: float | None  # first opening + first call (None: timed elsewhere)
    memory_mb: float | None  # resident memory the first opening and first call added
    reopened: bool
    round_p50_ms: tuple[float, ...] = field(default=(), repr=False, metadata=SKIP)

    @property
    def rel_halfwidth(self) -> float:
        """Half the interval's width relative to p50: the row's own uncertainty."""
        return (self.ci_high_ms - self.ci_low_ms) / 2 / self.p50_ms if self.p50_ms > 0 else float("inf")


@dataclass(frozen=True, kw_only=True)
class RatioEstimate(Record):
    """``a / b`` paired by round, with its interval; < 1 means ``a`` is faster."""

    a: str
    b: str
    ratio: float
    low: float
    high: float
    rounds: int

    @property
    def a_faster(self) -> bool:
        return self.high < 1.0

    @property
    def b_faster(self) -> bool:
        return self.low > 1.0

    @property
    def decided(self) -> bool:
        """The interval excludes 1: one of the two is faster beyond the noise."""
        return self.a_faster or self.b_faster

    def describe(self) -> str:
        return f"{self.ratio:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True, kw_only=True)
class Interleaved:
    """The outcome of :func:`interleave`: per-round medians of every contender, and intervals over them."""

    config: InterleaveConfig
    names: tuple[str, ...]
    round_medians: np.ndarray  # (rounds, contenders) in ms
    rows: tuple[RowTiming, ...]
    stop_reason: str  # "rounds" | "decided" | "budget"

    def row(self, name: str) -> RowTiming:
        return self.rows[self._index(name)]

    def ratio(self, a: str, b: str) -> RatioEstimate:
        """The paired ratio ``a / b`` with its bootstrap interval."""
        ia, ib = self._index(a), self._index(b)
        per_round = self.round_medians[:, ia] / self.round_medians[:, ib]
        low, high = _bootstrap_median(per_round, self.config)
        return RatioEstimate(a=a, b=b, ratio=float(np.median(per_round)), low=low, high=high, rounds=len(per_round))

    def _index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ConfigError(f"no contender named {name!r}; timed: {', '.join(self.names)}.") from None


def interleave(
    contenders: Sequence[Contender],
    config: InterleaveConfig = InterleaveConfig(),
    *,
    decided: Callable[[Interleaved], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Interleaved:
    """Time ``contenders`` in rounds, each in a fresh seeded order, and return their figures.

    Stops after ``config.rounds`` rounds, when ``config.budget_s`` runs out (after ``min_rounds``), or when
    ``decided(partial_result)`` is true (checked from ``min_rounds`` on). Every opened contender is closed,
    also when a call raises.
    """
    names = tuple(c.name for c in contenders)
    if len(set(names)) != len(names) or not names:
        raise ConfigError(f"interleave needs contenders with distinct names, got {list(names)}.")
    start = time.perf_counter()
    n = len(contenders)
    open_calls: list[tuple[Call, Callable[[], None]] | None] = [None] * n
    startup: list[float | None] = [None] * n
    memory: list[float | None] = [None] * n
    per_round: list[list[float]] = []
    calls: list[list[float]] = [[] for _ in range(n)]
    stop_reason = "rounds"
    order_rng = np.random.default_rng([config.seed, 1])  # its own stream: the bootstrap's seed stays as it was
    try:
        for r in range(config.rounds):
            row = [0.0] * n
            for i in (int(j) for j in order_rng.permutation(n)):  # none always follows the same one
                try:
                    row[i] = _one_round(contenders[i], open_calls, i, r, config, calls, startup, memory)
                except Exception as e:
                    raise ContenderFailed(contenders[i].name, e) from e
            per_round.append(row)
            if progress is not None:
                progress(r + 1, config.rounds)
            if r + 1 >= config.min_rounds and r + 1 < config.rounds:
                if config.budget_s is not None and time.perf_counter() - start >= config.budget_s:
                    stop_reason = "budget"
                    break
                partial = _result(config, names, per_round, calls, startup, memory, contenders, "")
                if decided is not None and decided(partial):
                    stop_reason = "decided"
                    break
    finally:
        for oc in open_calls:
            if oc is not None:
                oc[1]()
    return _result(config, names, per_round, calls, startup, memory, contenders, stop_reason)


def _one_round(
    c: Contender,
    open_calls: list[tuple[Call, Callable[[], None]] | None],
    i: int,
    r: int,
    config: InterleaveConfig,
    calls: list[list[float]],
    startup: list[float | None],
    memory: list[float | None],
) -> float:
    """Time contender ``i`` for one round (opening it first when it is not open) and return the round's median."""
    if open_calls[i] is None:
        open_calls[i] = _open(c, first=r == 0, startup=startup, memory=memory, i=i)
        for _ in range(config.warmup):
            open_calls[i][0]()
    times = c.time_round(config) if c.time_round is not None else _time_round(open_calls[i][0], config)
    if not times:
        raise ValueError("the round returned no timings")
    calls[i].extend(times)
    if c.reopen:
        close = open_calls[i][1]
        open_calls[i] = None
        close()
    return float(np.median(times))


def _open(
    c: Contender, *, first: bool, startup: list[float | None], memory: list[float | None], i: int
) -> tuple[Call, Callable[[], None]]:
    if (not first and c.reopen) or c.time_round is not None:
        return c.open()
    with MemorySampler() as mem:
        t0 = time.perf_counter_ns()
        call, close = c.open()
        try:
            call()
        except BaseException:
            close()
            raise
        startup[i] = (time.perf_counter_ns() - t0) / 1e6
    assert mem.result is not None
    memory[i] = max(0.0, mem.result.delta_mb)
    return call, close


def _time_round(call: Call, config: InterleaveConfig) -> list[float]:
    times: list[float] = []
    spent = 0.0
    while len(times) < config.max_calls and (len(times) < config.min_calls or spent < config.round_time_s):
        t0 = time.perf_counter_ns()
        call()
        dt = (time.perf_counter_ns() - t0) / 1e9
        spent += dt
        times.append(dt * 1e3)
    return times


def _result(
    config: InterleaveConfig,
    names: tuple[str, ...],
    per_round: list[list[float]],
    calls: list[list[float]],
    startup: list[float | None],
    memory: list[float | None],
    contenders: Sequence[Contender],
    stop_reason: str,
) -> Interleaved:
    medians = np.asarray(per_round, dtype=np.float64).reshape(len(per_round), len(names))
    rows = []
    for i, name in enumerate(names):
        col = medians[:, i]
        low, high = _bootstrap_median(col, config)
        rows.append(
            RowTiming(
                name=name,
                p50_ms=float(np.median(col)),
                ci_low_ms=low,
                ci_high_ms=high,
                p90_ms=float(np.percentile(calls[i], 90)),
                rounds=len(col),
                calls=len(calls[i]),
                startup_ms=startup[i],
                memory_mb=memory[i],
                reopened=contenders[i].reopen,
                round_p50_ms=tuple(float(v) for v in col),
            )
        )
    return Interleaved(config=config, names=names, round_medians=medians, rows=tuple(rows), stop_reason=stop_reason)


def _bootstrap_median(values: np.ndarray, config: InterleaveConfig) -> tuple[float, float]:
    """Percentile interval of the median of ``values`` (one per round), resampling rounds with replacement."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        v = float(values[0]) if len(values) else float("nan")
        return v, v
    rng = np.random.default_rng(config.seed)
    idx = rng.integers(0, len(values), size=(config.bootstrap, len(values)))
    medians = np.median(values[idx], axis=1)
    alpha = (1 - config.confidence) / 2
    low, high = np.quantile(medians, [alpha, 1 - alpha])
    return float(low), float(high)
