"""Parity arithmetic: scale-relative error, cosine, shape/NaN problems, every failing output listed."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeformer.errors import ModelFileError, ParityError
from edgeformer.export.parity import check_parity, compare, fidelity, ort_runner, parity_inputs


def test_compare_is_relative_to_the_output_scale():
    ref = np.array([100.0, -50.0, 0.0])
    max_abs, max_rel, cosine, problem = compare(ref, ref + np.array([0.0, 0.01, 0.0]))
    assert max_abs == pytest.approx(0.01) and max_rel == pytest.approx(1e-4) and cosine > 0.99999 and not problem


def test_compare_flags_shape_and_nan_mismatches():
    assert "shape" in compare(np.zeros((2, 3)), np.zeros((3, 2)))[3]
    assert "NaN/Inf" in compare(np.ones(3), np.array([1.0, np.nan, 1.0]))[3]
    assert compare(np.array([1.0, np.inf]), np.array([1.0, np.inf]))[:3] == (0.0, 0.0, 1.0)


def test_compare_zero_outputs_agree():
    assert compare(np.zeros(4), np.zeros(4))[2] == 1.0


def test_sign_flip_fails_cosine_even_with_a_loose_tolerance():
    ref = {"logits": np.array([[0.3, -0.2, 0.1]], np.float32)}
    report = check_parity(lambda f: ref, lambda f: {"logits": -ref["logits"]}, {"s": {}}, atol=10.0, min_cosine=0.99)
    assert not report.ok and report.outputs[0].cosine == pytest.approx(-1.0)


def test_report_keeps_worst_case_per_output_and_lists_every_failure():
    outputs = iter([{"a": np.ones(3), "b": np.ones(3)}, {"a": np.ones(3) * 1.5, "b": np.ones(3) * 1.001}])
    ref = {"a": np.ones(3), "b": np.ones(3)}
    report = check_parity(
        lambda f: ref, lambda f: next(outputs), {"first": {}, "second": {}}, atol=1e-2, min_cosine=0.9
    )
    a, b = report.outputs
    assert (a.ok, a.sample, a.max_rel) == (False, "second", pytest.approx(0.5))
    assert (b.ok, b.max_rel) == (True, pytest.approx(1e-3))
    with pytest.raises(ParityError, match=r"a: max_abs=0\.5 max_rel=0\.5") as e:
        report.raise_if_failed("m")
    assert [f.name for f in e.value.failures] == ["a"] and "b:" not in str(e.value)
    assert report.to_dict()["ok"] is False and report.to_dict()["samples"] == ["first", "second"]


def test_missing_output_is_a_failure():
    report = check_parity(lambda f: {"x": np.ones(2)}, lambda f: {}, {"s": {}}, atol=1.0, min_cosine=0.0)
    assert not report.ok and "missing" in report.outputs[0].problem


def test_parity_inputs_are_seeded_and_include_a_natural_input():
    a = parity_inputs({"input": (1, 3, 64, 64)}, kind="image", samples=2, seed=3)
    b = parity_inputs({"input": (1, 3, 64, 64)}, kind="image", samples=2, seed=3)
    assert list(a) == ["random-0", "random-1", "natural"]
    assert all(np.array_equal(a[k]["input"], b[k]["input"]) for k in a)
    natural = a["natural"]["input"]
    assert natural.dtype == np.float32 and np.abs(np.diff(natural, axis=-1)).max() < 0.3  # smooth, not noise
    wave = parity_inputs({"waveform": (2, 1600)}, kind="audio", samples=1)
    assert np.abs(wave["natural"]["waveform"]).max() <= 0.5 and np.abs(wave["random-0"]["waveform"]).max() <= 1
    ints = parity_inputs({"ids": (2, 5)}, samples=1, dtypes={"ids": "int64"})
    assert ints["random-0"]["ids"].dtype == np.int64 and "natural" not in ints


def test_ort_runner_names_the_op_onnxruntime_cannot_run(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Frobnicate", ["x"], ["y"], name="frob_0", domain="my.ops")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("my.ops", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), tmp_path / "m.onnx")
    with pytest.raises(ModelFileError, match=r"onnxruntime .* cannot load it: .*Frobnicate"):
        ort_runner(tmp_path / "m.onnx")


def test_fidelity_keeps_each_outputs_worst_sample_and_pools_top1_over_rows():
    ref = {"logits": np.array([[1.0, 0.0], [0.0, 1.0]]), "vec": np.ones(3)}
    outs = iter([dict(ref), {"logits": ref["logits"][:, ::-1], "vec": np.ones(3)}])
    report = fidelity(lambda f: ref, lambda f: next(outs), {"s0": {}, "s1": {}})
    assert report["samples"] == ["s0", "s1"] and report["min_cosine"] == pytest.approx(0.0)
    logits, vec = report["outputs"]["logits"], report["outputs"]["vec"]
    assert logits["cosine"] == pytest.approx(0.0) and logits["max_abs"] == 1.0 and logits["top1_agreement"] == 0.5
    assert vec == {"cosine": pytest.approx(1.0), "max_abs": 0.0, "top1_agreement": None}  # 1-D: no top-1
