"""The ★ of a side-by-side timing: earned beyond the interval, a tie broken by fidelity then size, none when noisy."""

from __future__ import annotations

import numpy as np
import pytest

from edgeformer.errors import ConfigError
from edgeformer.profiling.interleave import Contender, InterleaveConfig, _result, interleave
from edgeformer.profiling.side_by_side import Entry, artifact_contender, rank, session_settings


def timing(columns: dict[str, list[float]]):
    names = tuple(columns)
    medians = [[columns[n][r] for n in names] for r in range(len(next(iter(columns.values()))))]
    cfg = InterleaveConfig(rounds=len(medians), min_rounds=2, bootstrap=500)
    calls = [list(columns[n]) for n in names]
    contenders = [Contender(n, lambda: None) for n in names]
    return _result(cfg, names, medians, calls, [None] * len(names), [None] * len(names), contenders, "rounds")


LOAD = [1.0, 1.8, 1.1, 1.5, 1.0, 1.7, 1.2, 1.3, 1.9, 1.1]
rng = np.random.default_rng(0)
JITTER = rng.normal(1.0, 0.01, size=(10, 4))


def cols(**scales: float) -> dict[str, list[float]]:
    return {n: [10 * s * load * JITTER[r, i] for r, load in enumerate(LOAD)] for i, (n, s) in enumerate(scales.items())}


def test_a_row_faster_beyond_the_interval_earns_the_star():
    t = timing(cols(fp32=1.0, aa=1.0, int8=0.7))
    v = rank(
        [Entry(name="fp32", eligible=True, cosine=1.0), Entry(name="int8", eligible=True, cosine=0.9995)],
        t,
        ("fp32", "aa"),
    )
    assert v.star == "int8" and v.how == "faster" and v.aa_ok
    assert v.runner_up.a == "int8" and v.runner_up.high < 1


def test_a_tie_within_the_noise_goes_to_fidelity_then_size():
    t = timing(cols(a=1.0, aa=1.0, b=0.999, c=1.0))
    entries = [
        Entry(name="a", eligible=True, cosine=0.99999991, size_mb=40.0),
        Entry(name="b", eligible=True, cosine=0.9995, size_mb=10.0),  # the fastest, but least faithful
        Entry(name="c", eligible=True, cosine=0.99999993, size_mb=20.0),  # same fidelity as a to 6 decimals, smaller
    ]
    v = rank(entries, t, ("a", "aa"))
    assert v.how == "tie" and set(v.tied) == {"a", "b", "c"}
    assert v.star == "c"
    assert "broken by fidelity, then size: c" in v.message


def test_a_failed_a_a_check_marks_no_row():
    t = timing(cols(a=1.0, aa=1.06, b=0.5))  # the same artifact 6 % apart in every round: the machine is lying
    v = rank([Entry(name="a", eligible=True, cosine=1.0), Entry(name="b", eligible=True, cosine=1.0)], t, ("a", "aa"))
    assert v.star is None and v.how == "noisy" and v.aa_ok is False
    assert "too noisy" in v.message


def test_an_a_a_pair_far_apart_fails_even_when_its_interval_is_too_wide_to_exclude_1():
    wide = cols(a=1.0, aa=1.0, b=0.5)
    wide["aa"] = [v * f for v, f in zip(wide["aa"], [1.9, 0.8, 1.6, 1.7, 0.9, 1.5, 1.4, 0.95, 1.8, 1.2], strict=True)]
    t = timing(wide)
    est = t.ratio("a", "aa")
    assert not est.decided and est.ratio < 0.9  # the interval holds 1, the point is > 3 % off
    v = rank([Entry(name="a", eligible=True), Entry(name="b", eligible=True)], t, ("a", "aa"))
    assert v.star is None and v.how == "noisy" and "more than 3% from 1" in v.message


def test_a_small_steady_a_a_gap_passes_and_becomes_the_floor_a_difference_must_clear():
    # two sessions of one file 2 % apart in every round (seen on a quiet machine: 1.021 [1.009, 1.056]); a row 1.5 %
    # faster than the runner-up beyond its interval is still not faster beyond that floor: a tie
    t = timing(cols(a=1.0, aa=1.02, b=0.985))
    aa = t.ratio("a", "aa")
    assert aa.decided and abs(aa.ratio - 1 / 1.02) < 0.01
    entries = [Entry(name="a", eligible=True, cosine=1.0, size_mb=2.0), Entry(name="b", eligible=True, cosine=1.0)]
    runner = t.ratio("b", "a")
    assert runner.high < 1  # beyond the rounds' interval ...
    v = rank(entries, t, ("a", "aa"))
    assert v.aa_ok and v.how == "tie" and "A/A floor (2." in v.message  # ... but not beyond the A/A floor
    t2 = timing(cols(a=1.0, aa=1.02, b=0.9))
    assert rank(entries, t2, ("a", "aa")).how == "faster"


def test_only_eligible_rows_are_ranked():
    t = timing(cols(a=1.0, b=0.5))
    assert rank([Entry(name="a", eligible=True), Entry(name="b", eligible=False)], t, None).star == "a"
    none = rank([Entry(name="a", eligible=False), Entry(name="b", eligible=False)], t, None)
    assert none.star is None and none.how == "none"


def test_an_artifact_contender_times_a_real_ort_session_with_spinning_off(tmp_path, make_artifact):
    art = make_artifact(tmp_path / "a", ("batch", 3, 32, 32))
    cfg = InterleaveConfig(rounds=3, min_rounds=2, round_time_s=0.01, warmup=1, bootstrap=100)
    res = interleave([artifact_contender("a", art, "ort", threads=1, batch=2)], cfg)
    row = res.row("a")
    assert row.p50_ms > 0 and row.startup_ms > 0 and row.rounds == 3
    assert session_settings("ort", 1, False) == "threads=1 · spinning off · kept open"
    assert session_settings("openvino", 2, True) == "threads=2 · reopened per round"


def test_a_fixed_batch_that_differs_is_refused_before_any_timing(tmp_path, make_artifact):
    from edgeformer.errors import ConfigError

    art = make_artifact(tmp_path / "a", (1, 3, 32, 32))
    call, close = artifact_contender("a", art, "ort", threads=1, batch=1).open()
    call()
    close()
    with pytest.raises(ConfigError, match="fixed batch of 1"):
        artifact_contender("a", art, "ort", threads=1, batch=2)


def test_profile_reports_start_up_and_it_round_trips(tiny_artifact):
    from edgeformer.profiling import ProfileConfig, ProfileResult, profile

    result = profile(tiny_artifact, ProfileConfig(warmup=1, runs=3, threads=1))
    assert result.startup_ms is not None and result.startup_ms > 0
    assert ProfileResult.from_dict(result.to_dict()).startup_ms == result.startup_ms
    assert "start-up:" in result.to_markdown()


def test_compare_artifacts_holds_every_one_against_the_first(tmp_path, make_artifact):
    from edgeformer.profiling.side_by_side import compare_artifacts

    a = make_artifact(tmp_path / "a", ("batch", 3, 32, 32))
    b = make_artifact(tmp_path / "b", ("batch", 3, 32, 32), seed=1)
    cfg = InterleaveConfig(rounds=4, min_rounds=3, round_time_s=0.01, warmup=1, bootstrap=200)
    res = compare_artifacts([a, b, a], backend=None, threads=1, config=cfg)
    names = [r.name for r in res.rows]
    assert names == [str(a.path), str(b.path), f"{a.path} #2"]  # the same path twice stays two rows
    assert res.rows[0].vs_first is None and res.rows[1].vs_first.b == str(a.path)
    assert res.verdict.aa is not None and res.verdict.aa.b == f"{a.path} (A/A)"
    assert all(r.backend == "ort" and r.size_mb > 0 for r in res.rows)
    with pytest.raises(ConfigError, match="at least two"):
        compare_artifacts([a], backend=None, threads=1, config=cfg)
