"""The timing harness: statistics on injected timings, loop bounds and warm-up on the real clock, memory."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from edgeformer.errors import ConfigError
from edgeformer.profiling.harness import (
    MIN_RUNS_FOR_STABILITY,
    MemorySampler,
    ProfileConfig,
    disk_size,
    measure,
    stats_from_samples,
)

MS = 1_000_000  # ns


class FakeClock:
    """A nanosecond clock that only moves when the fake workload says so."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def scripted(clock: FakeClock, durations_ms: list[float]):
    """A run_once that advances ``clock`` by the next scripted duration, and counts its calls."""
    calls = []

    def run_once():
        clock.now += int(durations_ms[len(calls) % len(durations_ms)] * MS)
        calls.append(1)

    return run_once, calls


def test_measure_statistics_match_numpy_on_injected_timings():
    clock = FakeClock()
    warm = [50.0, 40.0, 30.0]
    timed = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0]
    run_once, calls = scripted(clock, warm + timed)
    stats = measure(run_once, ProfileConfig(warmup=3, runs=10, batch=4), clock=clock)

    ref = np.array(timed)
    assert len(calls) == 13
    assert stats.runs == 10
    assert stats.warmup_ms == pytest.approx(warm)  # reported apart, never mixed into the figures
    assert stats.samples_ms == pytest.approx(timed)
    assert stats.p50_ms == pytest.approx(np.percentile(ref, 50))
    assert stats.p90_ms == pytest.approx(np.percentile(ref, 90))
    assert stats.p99_ms == pytest.approx(np.percentile(ref, 99))
    assert stats.mean_ms == pytest.approx(ref.mean())
    assert stats.std_ms == pytest.approx(ref.std())
    assert (stats.min_ms, stats.max_ms) == (1.0, 9.0)
    assert stats.throughput == pytest.approx(4 * 1000 / ref.mean())
    assert stats.total_s == pytest.approx(ref.sum() / 1000)
    assert stats.stop_reason == "runs"


def test_measure_stops_at_min_time():
    clock = FakeClock()
    run_once, calls = scripted(clock, [10.0])
    stats = measure(run_once, ProfileConfig(warmup=2, min_time_s=0.095, max_runs=1000), clock=clock)
    # 10 timed calls of 10 ms reach 95 ms of measured time; warm-up does not count towards it
    assert stats.runs == 10
    assert len(calls) == 12
    assert stats.stop_reason == "min_time"


def test_measure_caps_runs_at_max_runs():
    clock = FakeClock()
    run_once, calls = scripted(clock, [1.0])
    stats = measure(run_once, ProfileConfig(warmup=0, min_time_s=3600, max_runs=25), clock=clock)
    assert stats.runs == 25 == len(calls)
    assert stats.stop_reason == "max_runs"


def test_constant_timings_are_stable():
    stats = stats_from_samples([2 * MS] * 20)
    assert stats.stable
    assert stats.unstable_reason is None
    assert stats.tail_spread == 0 and stats.cv == 0


def test_outlier_marks_result_unstable_with_spread():
    stats = stats_from_samples([1 * MS] * 19 + [20 * MS], max_rel_spread=0.10)
    assert not stats.stable
    assert "std/mean" in stats.unstable_reason
    assert stats.cv > 0.10
    assert stats.to_dict()["stable"] is False


def test_tail_spread_alone_marks_result_unstable():
    # p90 sits 12% above p50 while std/mean stays under 10%: the tail check alone must catch it
    samples = [100 * MS] * 85 + [112 * MS] * 15
    stats = stats_from_samples(samples, max_rel_spread=0.10)
    assert stats.cv < 0.10 < stats.tail_spread
    assert not stats.stable
    assert "(p90-p50)/p50" in stats.unstable_reason
    assert stats_from_samples(samples, max_rel_spread=0.2).stable


def test_too_few_runs_are_not_called_stable():
    stats = stats_from_samples([MS] * (MIN_RUNS_FOR_STABILITY - 1))
    assert not stats.stable
    assert "measured runs" in stats.unstable_reason


def test_real_clock_counts_warmup_and_runs_and_restores_gc():
    calls = []
    assert gc.isenabled()
    stats = measure(lambda: calls.append(sum(range(100))), ProfileConfig(warmup=3, runs=7))
    assert len(calls) == 10
    assert stats.runs == 7 and len(stats.warmup_ms) == 3
    assert all(s >= 0 for s in stats.samples_ms)
    assert stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms
    assert gc.isenabled()


def test_real_clock_min_time_path_is_bounded():
    calls = []
    stats = measure(lambda: calls.append(1), ProfileConfig(warmup=0, min_time_s=3600, max_runs=50))
    assert stats.runs == 50 == len(calls)


def test_gc_is_restored_when_the_workload_raises():
    def boom():
        raise RuntimeError("kernel failed")

    with pytest.raises(RuntimeError):
        measure(boom, ProfileConfig(warmup=1, runs=1))
    assert gc.isenabled()


def test_profile_config_lists_every_bad_field():
    with pytest.raises(ConfigError) as e:
        ProfileConfig(warmup=-1, runs=0, batch=0, threads=0, max_rel_spread=0)
    msg = str(e.value)
    for field in ("warmup", "runs", "batch", "threads", "max_rel_spread"):
        assert field in msg


def test_profile_config_refuses_runs_above_max_runs():
    with pytest.raises(ConfigError, match="max_runs"):
        ProfileConfig(runs=20, max_runs=10)


def test_memory_sampler_sees_a_large_allocation():
    # In a long test process the 64 MiB allocation can trigger the cyclic GC, which frees garbage
    # left by earlier tests inside the block; RSS then falls by tens of MiB and the delta over the
    # entry RSS no longer shows the whole spike (seen in CI: 39.5 MiB). Collect first, hold the GC off.
    gc.collect()
    gc.disable()
    try:
        with MemorySampler() as mem:
            block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, written so the pages are resident
            with_block_kb = _rss_now_kb()
            del block
    finally:
        gc.enable()
    assert mem.result is not None
    assert mem.result.peak_rss_mb >= mem.result.rss_before_mb
    assert mem.result.peak_rss_mb >= with_block_kb / 1024 - 1  # the peak is at least the RSS seen with the block
    assert mem.result.delta_mb > 48  # freed before exit: only a peak tracker can still see it
    assert mem.result.method


def _rss_now_kb() -> int:
    from pathlib import Path

    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    pytest.skip("no /proc/self/status here")


def test_disk_size_of_file_and_folder(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x" * 100)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"y" * 28)
    assert disk_size(tmp_path / "a.bin") == 100
    assert disk_size(tmp_path) == 128
