from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgeformer.artifact import Artifact
from edgeformer.compare import compare_outputs, ort_runner, run_all
from edgeformer.errors import ConfigError
from edgeformer.quant import (
    QuantConfig,
    compute_ranges,
    default_plan,
    node_groups,
    open_calibration,
    preprocess,
    quantize,
)
from edgeformer.quant.placement import SearchConfig, ort_latency, search_placement

from .conftest import RES, attention_model


@pytest.fixture
def prepared(artifact, calib_npz, tmp_path):
    cfg = QuantConfig()
    data = open_calibration(calib_npz, inputs=artifact.manifest.inputs, preprocessing=None, config=cfg)
    pre = preprocess(artifact.model_path, tmp_path / "pre.onnx", cfg)
    model = onnx.load(str(pre))
    ranges = compute_ranges(pre, data.reader, cfg)
    reference = run_all(ort_runner(artifact.model_path), data.holdout)
    (tmp_path / "cands").mkdir()
    return cfg, pre, model, ranges, data.holdout, reference


def int8_nodes(path) -> set[str]:
    """Nodes of a QDQ model that read a DequantizeLinear output (ORT keeps the float node's name)."""
    model = onnx.load(str(path))
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in model.graph.node if n.op_type != "QuantizeLinear" and any(i in dq for i in n.input)}


def cost_model(costs: dict[str, tuple[float, float]]):
    """A deterministic latency: each listed node costs (float, int8) ms depending on how the file runs it."""

    def latency(paths):
        out = []
        for p in paths:
            q = int8_nodes(p)
            out.append(1.0 + sum(i8 if name in q else fp for name, (fp, i8) in costs.items()))
        return out

    return latency


def test_a_group_whose_int8_is_slower_is_kept_float_for_latency(prepared, tmp_path):
    cfg, pre, model, ranges, feeds, reference = prepared
    plan = default_plan(model, cfg)
    assert {"head", "pw"} <= set(plan.nodes_to_quantize)
    # int8 halves every layer except the head, where Q/DQ overhead makes it 3x slower
    costs = {n: (1.0, 0.5) for n in plan.nodes_to_quantize} | {"head": (0.2, 0.6)}
    result = search_placement(
        pre,
        ranges,
        plan,
        node_groups(model),
        cfg,
        feeds=feeds,
        reference=reference,
        workdir=tmp_path / "cands",
        search=SearchConfig(min_cosine=0.99),
        latency=cost_model(costs),
    )
    by_group = {d.group: d for d in result.decisions}
    assert by_group["head"].decision == "float" and by_group["head"].reason == "latency"
    assert by_group["head"].latency_float_ms < by_group["head"].latency_int8_ms
    assert "head" not in result.plan.nodes_to_quantize
    assert "pw" in result.plan.nodes_to_quantize and by_group["pw"].decision == "int8"
    assert result.plan.reasons["head"].startswith("latency")
    assert "head" not in int8_nodes(result.path) and "pw" in int8_nodes(result.path)
    assert result.fidelity.cosine >= 0.99


def test_search_stops_at_max_candidates_and_leaves_the_rest_default(prepared, tmp_path):
    cfg, pre, model, ranges, feeds, reference = prepared
    plan = default_plan(model, cfg)
    costs = {n: (1.0, 2.0) for n in plan.nodes_to_quantize}  # int8 never pays
    result = search_placement(
        pre,
        ranges,
        plan,
        node_groups(model),
        cfg,
        feeds=feeds,
        reference=reference,
        workdir=tmp_path / "cands",
        search=SearchConfig(max_candidates=2, min_cosine=0.99),
        latency=cost_model(costs),
    )
    assert result.searched == 2 and result.stopped == "max_candidates"
    assert sum(d.reason == "latency" for d in result.decisions) == 2
    assert all(d.decision == "int8" for d in result.decisions if d.reason == "default")


def test_real_measurement_search_is_bounded_and_returns_a_valid_model(prepared, tmp_path):
    cfg, pre, model, ranges, feeds, reference = prepared
    plan = default_plan(model, cfg)
    search = SearchConfig(max_candidates=3, rounds=2, runs_per_round=5, min_cosine=0.999)
    result = search_placement(
        pre,
        ranges,
        plan,
        node_groups(model),
        cfg,
        feeds=feeds,
        reference=reference,
        workdir=tmp_path / "cands",
        search=search,
    )
    assert result.searched <= 3
    assert result.plan.nodes_to_quantize
    fid = compare_outputs(reference, run_all(ort_runner(result.path), feeds), rows=True)
    assert fid.cosine >= 0.999
    assert all(c.latency_ms > 0 for c in result.candidates)


def test_ort_latency_times_each_model(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(attention_model(), str(p))
    times = ort_latency({"input": np.zeros((1, 3, RES, RES), np.float32)}, rounds=2, runs_per_round=2)([p, p])
    assert len(times) == 2 and all(t > 0 for t in times)


def test_search_config_is_validated():
    with pytest.raises(ConfigError, match="min_gain"):
        SearchConfig(min_gain=1.5)
    with pytest.raises(ConfigError, match="level"):
        SearchConfig(level="layer")


def test_quantize_search_writes_the_chosen_plan_and_a_hashed_report(artifact, calib_npz, tmp_path):
    out = tmp_path / "int8"
    search = SearchConfig(rounds=1, runs_per_round=5, min_cosine=0.999, max_sensitivity_groups=2)
    result = quantize(artifact, QuantConfig(search=search), calib=calib_npz, out=out)
    loaded = Artifact.load(out)  # verifies every hash, the report's included
    for name in ("quant_report.json", "quant_report.md", "quant_report.png", "model.onnx", "plan.json"):
        assert name in loaded.manifest.files
    assert loaded.manifest.parent_sha == artifact.sha and loaded.precision == "int8"
    report = json.loads((out / "quant_report.json").read_text())
    plan = json.loads((out / "plan.json").read_text())
    floated = {g["group"] for g in report["groups"] if g["decision"] == "float"}
    assert not floated & set(plan["nodes_to_quantize"])
    assert report["fidelity"]["cosine"] >= 0.999
    assert report["latency"]["fp32_ms"] > 0 and report["device"]["device_id"]
    assert loaded.manifest.extra["placement"]["fidelity"]["cosine"] >= 0.999
    assert result.manifest.step_config["search"]["rounds"] == 1


def test_max_drop_without_eval_data_is_a_config_error(artifact, calib_npz, tmp_path):
    with pytest.raises(ConfigError, match="--eval"):
        quantize(artifact, calib=calib_npz, out=tmp_path / "o", max_drop=0.5)
