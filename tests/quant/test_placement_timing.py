"""The placement search decides on signal: paired timings with intervals, and "within noise" where they cannot tell."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeformer.profiling.interleave import InterleaveConfig
from edgeformer.quant import default_plan, node_groups
from edgeformer.quant.placement import SearchConfig, search_placement
from edgeformer.quant.timing import Speedup, latency_comparator, ort_comparator, pair_config

from . import test_placement
from .test_placement import cost_model, int8_nodes

prepared = test_placement.prepared  # the fixture: pre-processed attention model, ranges, held-out feeds

PAIR = InterleaveConfig(rounds=12, min_rounds=4, bootstrap=500, confidence=0.99)


def test_a_deterministic_latency_decides_after_the_fewest_rounds_alternating_the_order(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    calls = []

    def latency(paths):
        calls.append([p.name for p in paths])
        return [2.0 if p == a else 1.0 for p in paths]

    t = latency_comparator(latency, PAIR)(a, b)
    assert t.stop == "decided" and t.ratio.rounds == 4 and len(calls) == 4
    assert calls[0] == ["a.onnx", "b.onnx"] and calls[1] == ["b.onnx", "a.onnx"]  # each order half the time
    assert t.ratio.ratio == pytest.approx(0.5) and t.ratio.a_faster and t.verdict == "candidate faster"
    assert (t.reference_ms, t.candidate_ms) == (2.0, 1.0)


def test_noise_larger_than_the_difference_runs_every_round_and_stays_undecided(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    rng = np.random.default_rng(0)
    # 1 % apart, each call's figure off by +-15 % independently: no interval over 12 rounds excludes 1
    latency = lambda paths: [(1.0 if p == a else 0.99) * rng.uniform(0.85, 1.15) for p in paths]  # noqa: E731
    t = latency_comparator(latency, PAIR)(a, b)
    assert t.stop == "rounds" and t.ratio.rounds == 12
    assert not t.decided and t.verdict == "within noise" and t.ratio.low < 1 < t.ratio.high


def test_within_noise_the_search_keeps_int8_and_says_it_chose_by_fidelity_and_size(prepared, tmp_path):
    cfg, pre, model, ranges, feeds, reference = prepared
    plan = default_plan(model, cfg)
    rng = np.random.default_rng(1)
    noisy = lambda paths: [7.0 * rng.uniform(0.8, 1.2) for _ in paths]  # noqa: E731  (no difference to find)
    result = search_placement(
        pre,
        ranges,
        plan,
        node_groups(model),
        cfg,
        feeds=feeds,
        reference=reference,
        workdir=tmp_path / "cands",
        search=SearchConfig(min_cosine=0.99, rounds=3, max_candidates=2),
        latency=noisy,
    )
    timed = [d for d in result.decisions if d.reason == "latency"]
    assert len(timed) == 2
    for d in timed:
        assert d.decided is False and d.decision == "int8"
        assert d.ratio_low < 1 < d.ratio_high and d.rounds == 24  # every round used before giving up
        assert "within noise; chose INT8 by fidelity/size" in d.note
    assert set(result.plan.nodes_to_quantize) == set(plan.nodes_to_quantize)


def test_a_float_placement_faster_beyond_the_noise_goes_to_float(prepared, tmp_path):
    cfg, pre, model, ranges, feeds, reference = prepared
    plan = default_plan(model, cfg)
    exact = cost_model({n: (1.0, 0.5) for n in plan.nodes_to_quantize} | {"head": (0.2, 3.0)})
    rng = np.random.default_rng(2)
    noisy = lambda paths: [t * rng.uniform(0.97, 1.03) for t in exact(paths)]  # noqa: E731
    result = search_placement(
        pre,
        ranges,
        plan,
        node_groups(model),
        cfg,
        feeds=feeds,
        reference=reference,
        workdir=tmp_path / "cands",
        search=SearchConfig(min_cosine=0.99, rounds=3),
        latency=noisy,
    )
    head = next(d for d in result.decisions if d.group == "head")
    assert head.decision == "float" and head.decided and head.ratio_high < 1
    assert "float faster" in head.note and "head" not in int8_nodes(result.path)


def _matmuls(n: int) -> onnx.ModelProto:
    """``n`` chained 128x128 MatMuls: a model whose cost grows with ``n``."""
    w = numpy_helper.from_array(np.eye(128, dtype=np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x" if i == 0 else f"h{i}", "w"], [f"h{i + 1}"]) for i in range(n)]
    nodes.append(helper.make_node("Identity", [f"h{n}"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 128])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 128])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


def test_ort_comparator_times_two_real_models_interleaved(tmp_path):
    light, heavy = tmp_path / "light.onnx", tmp_path / "heavy.onnx"
    onnx.save(_matmuls(1), str(light))
    onnx.save(_matmuls(40), str(heavy))
    feeds = {"x": np.ones((64, 128), np.float32)}
    config = InterleaveConfig(rounds=8, min_rounds=3, round_time_s=0.02, warmup=2, bootstrap=500)
    t = ort_comparator(feeds, threads=1, config=config)(light, heavy)
    assert t.method == "interleaved" and t.verdict == "reference faster" and t.ratio.low > 1
    assert t.candidate_ms > t.reference_ms > 0


def test_speedup_inverts_the_paired_ratio_and_reads_back(tmp_path):
    a, b = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    t = latency_comparator(lambda paths: [4.0 if p == a else 5.0 for p in paths], PAIR)(a, b)
    s = Speedup.of(t, backend="ort", threads=2)
    assert s.ratio == pytest.approx(0.8) and s.int8_slower and s.decided
    assert (s.fp32_ms, s.int8_ms) == (4.0, 5.0) and "INT8 slower than FP32" in s.describe()
    assert Speedup.from_dict(s.to_dict()) == s


def test_pair_config_bounds_each_decision_by_its_share_of_the_budget():
    c = pair_config(SearchConfig(rounds=5, time_budget_s=120, max_candidates=24))
    assert (c.min_rounds, c.rounds, c.budget_s, c.confidence) == (6, 24, 5.0, 0.99)
    assert pair_config(SearchConfig(rounds=1)).min_rounds == 6 and pair_config(SearchConfig(rounds=8)).min_rounds == 8


def test_pure_noise_rarely_passes_for_a_difference(tmp_path):
    """Looking at a 99 % interval every min_rounds rounds keeps false decisions rare; looking every round at 95 %
    (the naive schedule) decided about a quarter of these pure-noise pairs."""
    import dataclasses

    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    config = dataclasses.replace(pair_config(SearchConfig()), budget_s=None, bootstrap=1000)
    decided = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        noise = lambda paths, rng=rng: [7.0 * rng.uniform(0.9, 1.1) for _ in paths]  # noqa: E731
        decided += latency_comparator(noise, config)(a, b).decided
    assert decided <= 12


def test_int8_slower_than_fp32_is_said_in_the_report_and_the_manifest(artifact, calib_npz, tmp_path):
    """A latency where every INT8 node costs twice its float self: the delivered model loses, and says so."""
    from edgeformer.artifact import Artifact
    from edgeformer.quant import QuantConfig, quantize

    slow = cost_model({n: (1.0, 2.0) for n in ("pw", "q", "k", "v", "proj", "residual", "head")})
    search = SearchConfig(rounds=1, min_cosine=0.999, max_sensitivity_groups=0, max_candidates=1)
    out = quantize(artifact, QuantConfig(search=search), calib=calib_npz, out=tmp_path / "int8", latency=slow).path
    speedup = Speedup.from_dict(Artifact.load(out).manifest.extra["placement"]["speedup"])
    assert speedup.int8_slower and speedup.decided and speedup.ratio < 1 and speedup.method == "alternating calls"
    assert "**INT8 is slower than FP32**" in (out / "quant_report.md").read_text()
