"""Interleaved timing: rotation, opening/closing, early stops and the bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from edgeformer.errors import ConfigError
from edgeformer.profiling.interleave import (
    Contender,
    ContenderFailed,
    InterleaveConfig,
    Interleaved,
    interleave,
)

FAST = InterleaveConfig(rounds=6, min_rounds=3, round_time_s=0.01, warmup=1, bootstrap=200)


def _work(n: int):
    a = np.ones((n, n), dtype=np.float32)

    def call():
        return a @ a

    return call


def _contender(name: str, n: int, log: list[str] | None = None, reopen: bool = False) -> Contender:
    def open_():
        if log is not None:
            log.append(f"open {name}")
        return _work(n), (lambda: log.append(f"close {name}") if log is not None else None)

    return Contender(name, open_, reopen=reopen)


def test_every_contender_is_timed_every_round_and_closed_once():
    log: list[str] = []
    res = interleave([_contender("a", 16, log), _contender("b", 16, log)], FAST)
    assert res.round_medians.shape == (6, 2)
    assert log.count("open a") == 1 and log.count("close a") == 1
    assert [r.rounds for r in res.rows] == [6, 6]
    assert all(r.calls >= 6 * FAST.min_calls for r in res.rows)
    assert all(r.startup_ms > 0 for r in res.rows)
    assert res.stop_reason == "rounds"


def test_a_reopened_contender_is_opened_and_closed_around_every_round():
    log: list[str] = []
    res = interleave([_contender("a", 16, log, reopen=True), _contender("b", 16, log)], FAST)
    assert log.count("open a") == 6 and log.count("close a") == 6
    assert log.count("open b") == 1
    assert res.row("a").reopened and not res.row("b").reopened


def test_a_contender_that_raises_still_closes_every_opened_one():
    log: list[str] = []

    def broken():
        log.append("open bad")

        def call():
            raise RuntimeError("kernel exploded")

        return call, lambda: log.append("close bad")

    with pytest.raises(ContenderFailed, match="bad: RuntimeError: kernel exploded") as e:
        interleave([_contender("a", 8, log), Contender("bad", broken)], FAST)
    assert e.value.name == "bad"
    assert "close a" in log and "close bad" in log


def test_a_clearly_slower_contender_is_ranked_beyond_the_interval_and_stops_early():
    # 8x the arithmetic (192^3 vs 96^3 multiply-adds): far outside any noise this machine makes
    res = interleave(
        [_contender("ref", 192), _contender("cand", 96)], FAST, decided=lambda r: r.ratio("cand", "ref").decided
    )
    ratio = res.ratio("cand", "ref")
    assert ratio.a == "cand" and ratio.b == "ref"
    assert ratio.a_faster and ratio.decided and ratio.high < 1
    assert ratio.low <= ratio.ratio <= ratio.high
    assert res.stop_reason == "decided" and len(res.round_medians) == FAST.min_rounds


def _from_medians(medians: list[list[float]]) -> Interleaved:
    from edgeformer.profiling.interleave import _result

    cfg = InterleaveConfig(rounds=len(medians), min_rounds=2, bootstrap=500)
    calls = [[row[i] for row in medians] for i in range(2)]
    contenders = [Contender("a", lambda: None), Contender("b", lambda: None)]
    return _result(cfg, ("a", "b"), medians, calls, [0.0, 0.0], [0.0, 0.0], contenders, "rounds")


def test_the_paired_ratio_cancels_load_shared_by_a_round():
    # load swings 2x between rounds, b is always exactly 10 % slower in the same round
    load = [1.0, 2.0, 1.2, 1.9, 1.1, 1.6, 1.3, 2.0]
    res = _from_medians([[10 * x, 11 * x] for x in load])
    r = res.ratio("a", "b")
    assert r.ratio == pytest.approx(1 / 1.1)
    assert r.low == pytest.approx(1 / 1.1) and r.high == pytest.approx(1 / 1.1)
    assert r.a_faster
    # the unpaired rows overlap: their intervals alone could not tell them apart
    a, b = res.row("a"), res.row("b")
    assert a.ci_high_ms > b.ci_low_ms


def test_an_a_a_pair_with_noise_is_not_decided():
    rng = np.random.default_rng(0)
    noise = rng.normal(1.0, 0.05, size=(10, 2))
    res = _from_medians((10 * noise).tolist())
    r = res.ratio("a", "b")
    assert r.low < 1 < r.high and not r.decided


def test_bad_configs_and_duplicate_names_are_refused():
    with pytest.raises(ConfigError, match="min_rounds"):
        InterleaveConfig(rounds=3, min_rounds=5)
    with pytest.raises(ConfigError, match="distinct names"):
        interleave([_contender("a", 4), _contender("a", 4)], FAST)
    res = interleave([_contender("a", 4), _contender("b", 4)], FAST)
    with pytest.raises(ConfigError, match="no contender named 'c'"):
        res.ratio("a", "c")
