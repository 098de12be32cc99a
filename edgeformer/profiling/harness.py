"""The timing harness: warm-up, bounded measurement loop, percentiles, stability, peak memory.

What is measured, and how:

- **Latency** — wall time of one ``run_once()`` call with ``time.perf_counter_ns`` (monotonic, ns
  resolution). Warm-up calls (allocator growth, kernel selection, lazy init) are timed too, kept out
  of the statistics and reported separately, never hidden.
- **Loop bounds** — exactly ``runs`` calls when ``runs`` is set; otherwise calls until ``min_time_s``
  of measured time has passed or ``max_runs`` calls were made, whichever comes first. There is no
  unbounded loop; a single call that hangs cannot be pre-empted, though.
- **Stability** — a run is flagged unstable when the tail spread ``(p90 - p50) / p50`` or the
  coefficient of variation ``std / mean`` exceeds ``max_rel_spread``; both spreads are reported.
- **Peak memory** — resident set size (RSS) of the whole process, see :class:`MemorySampler`.

Example::

    stats = measure(lambda: session.run(feeds), ProfileConfig(warmup=5, runs=100))
    print(stats.p50_ms, stats.stable)
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from ..records import SKIP, Record

log = logging.getLogger(__name__)

# Fewer samples than this say nothing about spread; such a result is reported as not stable.
MIN_RUNS_FOR_STABILITY = 5


@dataclass(frozen=True, kw_only=True)
class ProfileConfig(Record):
    """How to time a model.

    Attributes:
        warmup: untimed-for-statistics calls before measuring (still reported).
        runs: exact number of measured calls; ``None`` means "until ``min_time_s``, at most ``max_runs``".
        min_time_s: measured time to accumulate when ``runs`` is ``None``.
        max_runs: hard cap on measured calls.
        threads: runtime intra-op threads; ``None`` keeps the runtime's default.
        batch: batch size of the generated inputs; throughput is ``batch / mean``.
        resolution: spatial size for models exported with symbolic height/width.
        per_op: also collect a per-operator breakdown (ORT profiling, in a separate session).
        per_op_runs: measured calls in the per-op session (each writes one event per node to the trace).
        top_n: rows of the per-op table shown in reports.
        seed: seed of the random inputs.
        max_rel_spread: spread above which a result is flagged unstable.
    """

    warmup: int = 10
    runs: int | None = None
    min_time_s: float = 2.0
    max_runs: int = 10_000
    threads: int | None = None
    batch: int = 1
    resolution: int | None = None
    per_op: bool = False
    per_op_runs: int = 20
    top_n: int = 15
    seed: int = 0
    max_rel_spread: float = 0.10

    def __post_init__(self) -> None:
        problems = []
        if self.warmup < 0:
            problems.append(f"warmup must be >= 0 (got {self.warmup})")
        if self.runs is not None and not 1 <= self.runs <= self.max_runs:
            problems.append(f"runs must be between 1 and max_runs={self.max_runs} (got {self.runs})")
        if self.min_time_s <= 0:
            problems.append(f"min_time_s must be > 0 (got {self.min_time_s})")
        if self.max_runs < 1:
            problems.append(f"max_runs must be >= 1 (got {self.max_runs})")
        if self.threads is not None and self.threads < 1:
            problems.append(f"threads must be >= 1 (got {self.threads})")
        if self.batch < 1:
            problems.append(f"batch must be >= 1 (got {self.batch})")
        if self.resolution is not None and self.resolution < 1:
            problems.append(f"resolution must be >= 1 (got {self.resolution})")
        if self.per_op_runs < 1 or self.top_n < 1:
            problems.append(f"per_op_runs and top_n must be >= 1 (got {self.per_op_runs}, {self.top_n})")
        if self.max_rel_spread <= 0:
            problems.append(f"max_rel_spread must be > 0 (got {self.max_rel_spread})")
        if problems:
            raise ConfigError("invalid profile config: " + "; ".join(problems) + ".")


@dataclass(frozen=True, kw_only=True)
class LatencyStats(Record):
    """Latency statistics of the measured calls (milliseconds); warm-up is listed apart.

    The raw samples stay in memory (``samples_ms``, not written): a JSON round trip keeps the statistics.
    """

    DERIVED: ClassVar[tuple[str, ...]] = ("stable", "unstable_reason")

    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput: float  # items per second: batch / mean
    batch: int
    warmup_ms: tuple[float, ...]  # every warm-up call, in order
    total_s: float  # measured time, warm-up excluded
    stop_reason: str  # "runs" | "min_time" | "max_runs"
    tail_spread: float  # (p90 - p50) / p50
    cv: float  # std / mean
    max_rel_spread: float
    samples_ms: tuple[float, ...] = dataclasses.field(repr=False, default=(), metadata=SKIP)

    @property
    def stable(self) -> bool:
        return self.unstable_reason is None

    @property
    def unstable_reason(self) -> str | None:
        if self.runs < MIN_RUNS_FOR_STABILITY:
            return f"only {self.runs} measured runs (need {MIN_RUNS_FOR_STABILITY} to judge spread)"
        over = []
        if self.tail_spread > self.max_rel_spread:
            over.append(f"(p90-p50)/p50 = {self.tail_spread:.1%}")
        if self.cv > self.max_rel_spread:
            over.append(f"std/mean = {self.cv:.1%}")
        return f"{' and '.join(over)} > {self.max_rel_spread:.0%}" if over else None

    def to_dict(self, include_samples: bool = False) -> dict[str, Any]:
        d = super().to_dict()
        return d | {"samples_ms": list(self.samples_ms)} if include_samples else d

    def summary(self) -> str:
        flag = "" if self.stable else f" · UNSTABLE: {self.unstable_reason}"
        return (
            f"p50 {self.p50_ms:.3f} ms · p90 {self.p90_ms:.3f} · p99 {self.p99_ms:.3f} · "
            f"{self.throughput:.1f}/s · {self.runs} runs{flag}"
        )


def stats_from_samples(
    samples_ns: list[int],
    *,
    batch: int = 1,
    warmup_ns: list[int] | tuple[int, ...] = (),
    stop_reason: str = "runs",
    max_rel_spread: float = 0.10,
) -> LatencyStats:
    """Turn per-call durations (ns) into :class:`LatencyStats`. Pure; the harness and tests share it."""
    if not samples_ns:
        raise ValueError("no measured samples")
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    mean, std = float(ms.mean()), float(ms.std())
    return LatencyStats(
        runs=len(ms),
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        mean_ms=mean,
        std_ms=std,
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
        throughput=batch * 1000.0 / mean if mean > 0 else float("inf"),
        batch=batch,
        warmup_ms=tuple(w / 1e6 for w in warmup_ns),
        total_s=float(ms.sum()) / 1000.0,
        stop_reason=stop_reason,
        tail_spread=(p90 - p50) / p50 if p50 > 0 else 0.0,
        cv=std / mean if mean > 0 else 0.0,
        max_rel_spread=max_rel_spread,
        samples_ms=tuple(float(v) for v in ms),
    )


def measure(
    run_once: Callable[[], Any], config: ProfileConfig = ProfileConfig(), *, clock: Callable[[], int] | None = None
) -> LatencyStats:
    """Time ``run_once`` after ``config.warmup`` warm-up calls.

    Args:
        run_once: one inference; its return value is ignored.
        config: warm-up, loop bounds, batch (for throughput) and the stability threshold.
        clock: integer nanosecond clock; defaults to ``time.perf_counter_ns``. Tests inject a fake one.

    Returns:
        :class:`LatencyStats` of the measured calls, with the warm-up calls listed separately.
    """
    clock = clock or time.perf_counter_ns
    warmup_ns: list[int] = []
    samples: list[int] = []
    limit = config.runs if config.runs is not None else config.max_runs
    min_time_ns = None if config.runs is not None else int(config.min_time_s * 1e9)
    stop_reason = "runs" if config.runs is not None else "max_runs"
    # Like timeit: a collection landing inside one call would be charged to the model.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(config.warmup):
            t0 = clock()
            run_once()
            warmup_ns.append(clock() - t0)
        gc.collect()  # the warm-up's garbage, collected now rather than never (gc stays off while timing)
        start = clock()
        for _ in range(limit):
            t0 = clock()
            run_once()
            t1 = clock()
            samples.append(t1 - t0)
            if min_time_ns is not None and t1 - start >= min_time_ns:
                stop_reason = "min_time"
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    stats = stats_from_samples(
        samples,
        batch=config.batch,
        warmup_ns=warmup_ns,
        stop_reason=stop_reason,
        max_rel_spread=config.max_rel_spread,
    )
    if not stats.stable:
        log.warning("latency is unstable: %s", stats.unstable_reason)
    return stats


# --- memory ---------------------------------------------------------------------------------------
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True, kw_only=True)
class MemoryStats(Record):
    """Resident memory of the process: before the block, and the peak while it ran."""

    DERIVED: ClassVar[tuple[str, ...]] = ("delta_mb",)

    rss_before_mb: float
    peak_rss_mb: float
    method: str  # how the peak was obtained; see MemorySampler

    @property
    def delta_mb(self) -> float:
        return self.peak_rss_mb - self.rss_before_mb


class MemorySampler:
    """Peak resident set size (RSS) of this whole process while the ``with`` block runs.

    On Linux the kernel's high-water mark ``VmHWM`` is reset to the current RSS on entry (writing
    ``5`` to ``/proc/self/clear_refs``) and read on exit, which catches spikes between samples
    exactly; a background thread also samples ``VmRSS`` every ``interval_s`` (for kernels that refuse
    the reset), stopping on exit or after ``max_duration_s``. Elsewhere RSS is sampled with psutil
    (spikes shorter than the interval can be missed); without psutil the figure is
    ``getrusage(RUSAGE_SELF).ru_maxrss``, the peak of the process's whole life, an upper bound.

    RSS counts everything mapped in the process (Python, numpy, the runtime's arena, weights), so
    compare :attr:`MemoryStats.delta_mb` across models, not the absolute figure across processes.
    """

    def __init__(self, interval_s: float = 0.005, max_duration_s: float = 3600.0) -> None:
        self.interval_s = interval_s
        self.max_duration_s = max_duration_s
        self.result: MemoryStats | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampled_kb = 0
        self._before_kb = 0
        self._hwm_reset = False

    def __enter__(self) -> MemorySampler:
        self._before_kb = _rss_kb() or 0
        self._sampled_kb = self._before_kb
        try:
            _CLEAR_REFS.write_text("5")
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False
        if self._before_kb:
            self._thread = threading.Thread(target=self._sample, name="edgeformer-rss", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        deadline = time.monotonic() + self.max_duration_s
        while not self._stop.wait(self.interval_s) and time.monotonic() < deadline:
            self._sampled_kb = max(self._sampled_kb, _rss_kb() or 0)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._before_kb:
            peak_kb = max(self._sampled_kb, _rss_kb() or 0)
            method = "sampled RSS"
            if self._hwm_reset:
                peak_kb = max(peak_kb, _status_kb("VmHWM") or 0)
                method = "VmHWM (reset on entry) + sampled RSS"
            self.result = MemoryStats(rss_before_mb=self._before_kb / 1024, peak_rss_mb=peak_kb / 1024, method=method)
        else:
            self.result = _rusage_stats()


def _rss_kb() -> int | None:
    kb = _status_kb("VmRSS")
    if kb is not None:
        return kb
    try:  # macOS / Windows: no /proc
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss // 1024


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _rusage_stats() -> MemoryStats:
    try:
        import resource
    except ImportError:  # Windows
        return MemoryStats(rss_before_mb=0.0, peak_rss_mb=0.0, method="unavailable")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mb = peak / (1024 * 1024) if os.uname().sysname == "Darwin" else peak / 1024  # bytes on macOS
    return MemoryStats(rss_before_mb=0.0, peak_rss_mb=peak_mb, method="ru_maxrss (peak over the process's life)")


def disk_size(path: str | Path) -> int:
    """Bytes on disk of a model file, or of every file under a model folder."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
