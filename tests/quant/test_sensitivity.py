from __future__ import annotations

import math

import numpy as np
import onnx
import pytest

from edgeformer.compare import ort_runner, run_all
from edgeformer.quant import QuantConfig, compute_ranges, default_plan, node_groups, open_calibration, preprocess
from edgeformer.quant.sensitivity import fake_quant, fake_quant_weight, group_alone, group_sqnr, sqnr_db, tensor_sqnr


def test_fake_quant_is_exact_on_the_grid_and_clips_outside_the_range():
    scale = 2.0 / 255
    grid = (np.arange(256) * scale - 1.0).astype(np.float32)
    q = fake_quant(grid, -1.0, 1.0)
    assert np.max(np.abs(q - grid)) <= scale / 2 + 1e-6
    assert fake_quant(np.array([5.0, -5.0], np.float32), -1.0, 1.0).tolist() == pytest.approx([1.0, -1.0], abs=scale)
    assert fake_quant(np.zeros(3, np.float32), 0.5, 2.0).tolist() == [0.0, 0.0, 0.0]  # range widened to hold 0


def test_sqnr_of_8_bit_uniform_data_is_about_6_db_per_bit():
    x = np.random.default_rng(0).uniform(-1, 1, 100_000).astype(np.float32)
    s8 = sqnr_db(x, fake_quant(x, -1, 1))
    s_sym = sqnr_db(x, fake_quant(x, -1, 1, dtype="int8", symmetric=True))
    assert 46 < s8 < 50 and 46 < s_sym < 50  # 6.02·8 + 1.76 - 10·log10(3) ≈ 48 dB for a uniform signal
    assert sqnr_db(x, x) == math.inf


def test_per_channel_weights_beat_per_tensor_when_channel_scales_differ():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 16)).astype(np.float32) * np.logspace(-3, 0, 8)[:, None].astype(np.float32)
    # the smallest channel: its own scale keeps it (~40 dB); the tensor-wide scale rounds it to zero (0 dB)
    assert sqnr_db(w[0], fake_quant_weight(w, axis=0)[0]) > 30
    assert sqnr_db(w[0], fake_quant_weight(w, axis=None)[0]) < 1
    assert sqnr_db(w, fake_quant_weight(w, axis=0, bits=7)) < sqnr_db(w, fake_quant_weight(w, axis=0, bits=8))


@pytest.fixture
def setup(artifact, calib_npz, tmp_path):
    cfg = QuantConfig()
    data = open_calibration(calib_npz, inputs=artifact.manifest.inputs, preprocessing=None, config=cfg)
    pre = preprocess(artifact.model_path, tmp_path / "pre.onnx", cfg)
    model = onnx.load(str(pre))
    return cfg, pre, model, compute_ranges(pre, data.reader, cfg), data.holdout, artifact


def test_tensor_sqnr_covers_every_quantized_node_from_the_calibrated_ranges(setup):
    cfg, pre, model, ranges, feeds, _ = setup
    plan = default_plan(model, cfg)
    rows = tensor_sqnr(pre, ranges, plan, cfg, feeds)
    assert {r.node for r in rows} == set(plan.nodes_to_quantize)
    assert {"weight", "activation"} == {r.kind for r in rows}
    assert all(15 < r.sqnr_db < 80 for r in rows)
    # a range 100x too narrow clips the activation: its SQNR collapses
    narrow = type(ranges)(
        method="minmax", num_samples=1, ranges={k: (lo / 100, hi / 100) for k, (lo, hi) in ranges.ranges.items()}
    )
    bad = {r.tensor: r.sqnr_db for r in tensor_sqnr(pre, narrow, plan, cfg, feeds) if r.kind == "activation"}
    good = {r.tensor: r.sqnr_db for r in rows if r.kind == "activation"}
    assert all(bad[t] < good[t] - 20 for t in good)
    per_group = group_sqnr(node_groups(model), rows)
    assert per_group["head"] == min(r.sqnr_db for r in rows if r.node == "head")


def test_group_alone_quantizes_one_group_at_a_time(setup):
    cfg, pre, model, ranges, feeds, artifact = setup
    plan = default_plan(model, cfg)
    reference = run_all(ort_runner(artifact.model_path), feeds)
    alone = group_alone(
        pre, ranges, plan, node_groups(model), cfg, feeds, reference, max_groups=3, metric=lambda p: 42.0
    )
    assert len(alone) == 3
    assert all(0.99 < a.cosine <= 1.0 and a.metric == 42.0 and a.problem is None for a in alone)
