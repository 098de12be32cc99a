"""Per-op breakdown: parsing a real ORT trace, warm-up exclusion, and the math on a hand-written trace."""

from __future__ import annotations

import json

import pytest

from edgeformer.errors import InvalidInputError
from edgeformer.profiling import build_feeds
from edgeformer.profiling.per_op import parse_trace, profile_ops


@pytest.fixture
def trace(tiny_artifact, tmp_path):
    """A real ORT trace of the tiny model: 2 warm-up runs then 5 measured ones."""
    feeds = build_feeds(tiny_artifact.manifest.inputs, batch=1)
    ops = profile_ops(tiny_artifact, feeds, warmup=2, runs=5, threads=1, profile_dir=tmp_path / "prof")
    return ops


def test_real_trace_breakdown_has_the_model_ops_and_sums_to_100(trace):
    assert trace.runs == 5 and trace.warmup_runs == 2
    types = {o.op_type for o in trace.op_types}
    assert "Conv" in types and "Gemm" in types
    assert sum(n.pct for n in trace.nodes) == pytest.approx(100.0)
    assert sum(o.pct for o in trace.op_types) == pytest.approx(100.0)
    assert all(n.provider == "CPUExecutionProvider" for n in trace.nodes)
    assert all(n.calls == 5 for n in trace.nodes)  # every node runs once per measured run, warm-up excluded
    assert trace.kernel_us_per_run == pytest.approx(sum(n.total_us for n in trace.nodes) / 5)


def test_top_is_sorted_slowest_first_and_serializes(trace):
    top = trace.top(3)
    assert len(top) == min(3, len(trace.nodes))
    assert [n.total_us for n in top] == sorted((n.total_us for n in top), reverse=True)
    d = trace.to_dict(top_n=2)
    assert len(d["nodes"]) == min(2, len(trace.nodes)) and d["num_nodes"] == len(trace.nodes)
    json.dumps(d)
    assert "| op type |" in trace.to_markdown(top_n=3)


def test_warmup_runs_are_excluded_from_the_same_trace(trace):
    everything = parse_trace(trace.trace_path, warmup_runs=0)
    assert everything.runs == 7
    assert all(n.calls == 7 for n in everything.nodes)
    assert {n.name for n in everything.nodes} == {n.name for n in trace.nodes}


def test_temporary_trace_is_removed(tiny_artifact):
    feeds = build_feeds(tiny_artifact.manifest.inputs)
    ops = profile_ops(tiny_artifact, feeds, warmup=1, runs=2, threads=1)
    assert ops.trace_path is None and ops.runs == 2


def _event(cat, name, ts, dur, **args):
    return {"cat": cat, "name": name, "ts": ts, "dur": dur, "ph": "X", "pid": 1, "tid": 1, "args": args}


def test_parse_math_on_a_hand_written_trace(tmp_path):
    events = [
        _event("Session", "session_initialization", 0, 50),
        # warm-up run: huge kernel times that must not count
        _event("Node", "conv_kernel_time", 100, 900, op_name="Conv", provider="CPUExecutionProvider"),
        _event("Node", "gemm_kernel_time", 1000, 900, op_name="Gemm", provider="CPUExecutionProvider"),
        _event("Session", "model_run", 90, 1900),
        # two measured runs
        _event("Node", "conv_kernel_time", 2000, 30, op_name="Conv", provider="CPUExecutionProvider"),
        _event("Node", "conv_fence_before", 2000, 0, op_name="Conv"),
        _event("Node", "gemm_kernel_time", 2030, 10, op_name="Gemm", provider="CPUExecutionProvider"),
        _event("Session", "model_run", 1995, 50),
        _event("Node", "conv_kernel_time", 3000, 50, op_name="Conv", provider="CPUExecutionProvider"),
        _event("Node", "gemm_kernel_time", 3050, 10, op_name="Gemm", provider="CPUExecutionProvider"),
        _event("Session", "model_run", 2995, 70),
    ]
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(events))
    ops = parse_trace(path, warmup_runs=1)
    conv, gemm = ops.nodes
    assert (conv.name, conv.op_type, conv.calls, conv.total_us, conv.mean_us) == ("conv", "Conv", 2, 80.0, 40.0)
    assert (gemm.name, gemm.total_us) == ("gemm", 20.0)
    assert conv.pct == pytest.approx(80.0) and gemm.pct == pytest.approx(20.0)
    assert ops.kernel_us_per_run == 50.0
    assert ops.run_us_per_run == 60.0
    assert [o.op_type for o in ops.op_types] == ["Conv", "Gemm"]
    assert ops.op_types[0].per_run_us == 40.0


def test_parse_refuses_a_non_trace_and_a_trace_with_only_warmup(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidInputError, match="cannot read"):
        parse_trace(bad)
    short = tmp_path / "short.json"
    short.write_text(json.dumps([_event("Session", "model_run", 0, 10)]))
    with pytest.raises(InvalidInputError, match="none after the 1 warm-up"):
        parse_trace(short, warmup_runs=1)
