from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgeformer.compare import ort_runner, run_all
from edgeformer.errors import AccuracyBudgetError, CalibrationError
from edgeformer.quant import QuantConfig, compute_ranges, default_plan, node_groups, open_calibration, preprocess
from edgeformer.quant.budget import apply_budget, load_eval, top1

from .conftest import RES, save_image


@pytest.fixture
def eval_npz(artifact, tmp_path):
    """Labels = the FP32 model's own predictions, so FP32 scores 100%."""
    x = np.random.default_rng(5).standard_normal((24, 3, RES, RES)).astype(np.float32)
    outs = run_all(ort_runner(artifact.model_path), [{"input": x[i : i + 1]} for i in range(24)])
    y = np.array([o["logits"].argmax() for o in outs])
    path = tmp_path / "eval.npz"
    np.savez(path, x=x, y=y)
    return path


def _prepared(artifact, calib, tmp_path, scale=1.0):
    cfg = QuantConfig()
    data = open_calibration(calib, inputs=artifact.manifest.inputs, preprocessing=None, config=cfg)
    pre = preprocess(artifact.model_path, tmp_path / "pre.onnx", cfg)
    model = onnx.load(str(pre))
    ranges = compute_ranges(pre, data.reader, cfg)
    if scale != 1.0:  # simulate calibration on data that does not look like the eval data
        scaled = {k: (lo * scale, hi * scale) for k, (lo, hi) in ranges.ranges.items()}
        ranges = type(ranges)(method="minmax", num_samples=ranges.num_samples, ranges=scaled)
    return cfg, pre, model, ranges


def test_load_eval_npz_and_top1(artifact, eval_npz):
    ev = load_eval(eval_npz, inputs=artifact.manifest.inputs, preprocessing=None)
    assert len(ev) == 24 and len(ev.feeds) == 24  # the model's batch is fixed at 1
    assert top1(artifact.model_path, ev) == 100.0


def test_load_eval_image_folder_maps_class_folders_to_labels(artifact, tmp_path):
    rng = np.random.default_rng(0)
    for c in ("c3", "c7"):
        for i in range(2):
            save_image(tmp_path / "ev" / c / f"{i}.png", "RGB", rng)
    ev = load_eval(
        tmp_path / "ev",
        inputs=artifact.manifest.inputs,
        preprocessing=artifact.manifest.preprocessing,
        labels=artifact.manifest.labels,
    )
    assert ev.labels.tolist() == [3, 3, 7, 7]
    with pytest.raises(CalibrationError, match="needs arrays 'x'"):
        np.savez(tmp_path / "bad.npz", a=np.zeros(3))
        load_eval(tmp_path / "bad.npz", inputs=artifact.manifest.inputs, preprocessing=None)


def test_budget_within_reach_needs_no_fallback(artifact, calib_npz, eval_npz, tmp_path):
    cfg, pre, model, ranges = _prepared(artifact, calib_npz, tmp_path)
    ev = load_eval(eval_npz, inputs=artifact.manifest.inputs, preprocessing=None)
    res = apply_budget(
        pre,
        ranges,
        default_plan(model, cfg),
        node_groups(model),
        cfg,
        eval_set=ev,
        max_drop=50.0,
        fp32_metric=100.0,
        order=[],
        workdir=tmp_path,
    )
    assert res.fallbacks == () and res.final_metric >= 50.0


def test_budget_returns_sensitive_groups_to_float_then_gives_up_with_the_best(artifact, calib_npz, eval_npz, tmp_path):
    cfg, pre, model, ranges = _prepared(artifact, calib_npz, tmp_path, scale=0.02)  # ranges 50x too narrow
    ev = load_eval(eval_npz, inputs=artifact.manifest.inputs, preprocessing=None)
    plan = default_plan(model, cfg)
    with pytest.raises(AccuracyBudgetError, match="best reached") as e:
        apply_budget(
            pre,
            ranges,
            plan,
            node_groups(model),
            cfg,
            eval_set=ev,
            max_drop=0.0,
            fp32_metric=100.0,
            order=["pw", "head"],
            workdir=tmp_path,
            latency=lambda ps: [1.0] * len(ps),
        )
    assert e.value.exit_code == 6


def test_budget_records_each_fallback_with_its_latency_cost(artifact, calib_npz, eval_npz, tmp_path):
    cfg, pre, model, ranges = _prepared(artifact, calib_npz, tmp_path)
    # only the head's input range is broken (50x too narrow): returning the head to float fixes the model
    broken = dict(ranges.ranges)
    broken["pooled"] = tuple(v * 0.02 for v in broken["pooled"])
    ranges = type(ranges)(method="minmax", num_samples=ranges.num_samples, ranges=broken)
    ev = load_eval(eval_npz, inputs=artifact.manifest.inputs, preprocessing=None)
    plan, groups = default_plan(model, cfg), node_groups(model)
    res = apply_budget(
        pre,
        ranges,
        plan,
        groups,
        cfg,
        eval_set=ev,
        max_drop=10.0,
        fp32_metric=100.0,
        order=["pw", "head", "proj"],
        workdir=tmp_path,
        latency=lambda ps: [2.0, 1.5],
    )
    assert res.start_metric < 90.0
    assert [f.group for f in res.fallbacks] == ["pw", "head"]
    assert res.fallbacks[-1].metric >= 90.0 and res.final_metric == res.fallbacks[-1].metric
    assert all(f.latency_before_ms == 2.0 and f.latency_after_ms == 1.5 for f in res.fallbacks)
    assert "head" not in res.plan.nodes_to_quantize and "proj" in res.plan.nodes_to_quantize
    assert res.plan.reasons["head"].startswith("accuracy")


@pytest.mark.slow
def test_trained_digits_model_meets_a_half_point_budget_with_a_report(tmp_path):
    torch = pytest.importorskip("torch")
    from edgeformer.artifact import Artifact
    from edgeformer.export import export
    from edgeformer.models.reference import load_reference, reference_heldout
    from edgeformer.quant import QuantConfig, SearchConfig, quantize

    model, meta = load_reference("digits_shvit")
    x, y = reference_heldout(meta)
    x, y = x[:300], y[:300]  # enough for a 0.5-point budget to mean something, small enough for 2 cores
    fp32 = export(model.eval(), fmt="onnx", out=tmp_path / "fp32", example_inputs=(torch.from_numpy(x[:1]),))
    name = fp32.manifest.inputs[0].name
    np.savez(tmp_path / "calib.npz", **{name: x[:64]})
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    out = quantize(
        fp32,
        QuantConfig(search=SearchConfig(rounds=2, max_candidates=4, max_sensitivity_groups=2)),
        calib=tmp_path / "calib.npz",
        out=tmp_path / "int8",
        eval_data=tmp_path / "eval.npz",
        max_drop=0.5,
    )
    acc = Artifact.load(out.path).manifest.extra["placement"]["accuracy"]
    assert acc["fp32_top1"] - acc["int8_top1"] <= 0.5
    assert acc["fp32_top1"] > 50  # a trained model: the budget is measured on real predictions
