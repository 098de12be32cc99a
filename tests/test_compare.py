"""edgeformer.compare: one cosine, one zero/NaN rule, one comparison, one ONNX Runtime runner."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeformer.compare import (
    CheckRecord,
    OutputFigures,
    compare_outputs,
    cosine,
    min_cosine_problem,
    ort_runner,
    run_all,
)
from edgeformer.errors import ModelFileError

LOGITS = np.array([[2.0, -1.0, 0.5], [0.1, 0.3, -0.2]])


def affine_model(path) -> None:
    """y = x * 2 + 1 on a (2, 3) float input: exact in float32 for the small integers the tests feed."""
    nodes = [helper.make_node("Mul", ["x", "two"], ["t"]), helper.make_node("Add", ["t", "one"], ["y"])]
    inits = [helper.make_tensor(n, TensorProto.FLOAT, [], [v]) for n, v in (("two", 2.0), ("one", 1.0))]
    graph = helper.make_graph(
        nodes,
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), path)


def test_identical_outputs_agree_perfectly_and_pass_every_gate():
    outs = [{"logits": LOGITS, "vec": np.arange(4.0)}] * 2
    agreement = compare_outputs(outs, outs, sample_names=["a", "b"])
    assert (agreement.cosine, agreement.max_abs, agreement.max_rel, agreement.problem) == (1.0, 0.0, 0.0, None)
    assert agreement.samples == 2 and [o.name for o in agreement.outputs] == ["logits", "vec"]
    assert agreement.meets(min_cosine=1.0, atol=0.0, rtol=0.0) is None


def test_scaled_output_keeps_cosine_one_but_shows_the_relative_error():
    ref = np.array([4.0, -2.0, 1.0])
    agreement = compare_outputs([[ref]], [[ref * 1.5]], output_names=["y"])
    (y,) = agreement.outputs
    assert y.name == "y" and y.cosine == pytest.approx(1.0, abs=1e-15)
    assert y.max_abs == 2.0 and y.max_rel == 0.5  # |4 - 6| / max |reference|
    assert agreement.meets(min_cosine=0.99999) is None
    reason = agreement.meets(min_cosine=0.99999, atol=1.0, rtol=0.1)
    assert reason == "y: max_abs 2 > 1.0, max_rel 0.5 > 0.1 (worst on 0)"


def test_cosine_zero_rule():
    assert cosine(np.zeros(4), np.zeros(4)) == 1.0
    assert cosine(np.zeros(4), np.ones(4)) == 0.0 and cosine(np.ones(4), np.zeros(4)) == 0.0
    # float32 rounding noise next to an exact zero is still zero
    assert cosine(np.zeros(3), np.array([1e-9, -1e-9, 0.0])) == 1.0
    assert cosine(np.array([1.0, 0.0]), np.array([-1.0, 0.0])) == -1.0
    assert math.isnan(cosine(np.ones(2), np.array([1.0, np.nan])))
    with pytest.raises(ValueError, match="3 and 2 elements"):
        cosine(np.ones(3), np.ones(2))


def test_equal_cosines_name_the_sample_with_the_larger_error():
    ref = np.array([4.0, -2.0, 1.0])
    agreement = compare_outputs([[ref]] * 3, [[ref * 1.01], [ref * 1.5], [ref]], sample_names=["a", "b", "c"])
    assert agreement.outputs[0].worst == "b"  # every cosine is 1: the gate's "worst on" names the max_rel sample
    assert agreement.meets(rtol=0.1) == "output0: max_rel 0.5 > 0.1 (worst on b)"


def test_zero_against_nonzero_fails_the_cosine_gate():
    agreement = compare_outputs([{"y": np.zeros((1, 4))}], [{"y": np.full((1, 4), 0.5)}])
    assert agreement.cosine == 0.0 and agreement.problem is None
    assert agreement.meets(min_cosine=0.5) == "y: cosine 0.0000000 < 0.5 (worst on 0)"
    assert compare_outputs([{"y": np.zeros(4)}], [{"y": np.zeros(4)}]).meets(min_cosine=1.0) is None


def test_nan_in_the_candidate_is_a_problem_that_fails_even_the_loosest_gate():
    got = LOGITS.copy()
    got[1, 2] = np.nan
    ref, cand = [{"logits": LOGITS}] * 2, [{"logits": LOGITS}, {"logits": got}]
    agreement = compare_outputs(ref, cand, sample_names=["a", "b"])
    assert agreement.problem == "logits: NaN/Inf: 1 NaN and 0 Inf in the candidate, 0 NaN and 0 Inf in the reference"
    assert math.isnan(agreement.cosine) and math.isnan(agreement.max_abs) and math.isnan(agreement.cosine_mean)
    assert agreement.outputs[0].worst == "b" and agreement.outputs[0].top1_agreement == 0.5  # b's rows don't agree
    assert agreement.meets(min_cosine=-1.0).startswith("logits: NaN/Inf: 1 NaN") and "on b" in agreement.meets()
    assert agreement.to_dict()["cosine"] is None  # JSON has no NaN; "problem" says why


def test_the_same_infinity_on_both_sides_agrees_but_a_new_one_does_not():
    ref = np.array([1.0, -np.inf, 2.0])
    same = compare_outputs([[ref]], [[ref.copy()]])
    assert (same.cosine, same.max_abs, same.problem) == (1.0, 0.0, None)
    flipped = compare_outputs([[ref]], [[np.array([1.0, np.inf, 2.0])]])
    assert "1 Inf in the candidate" in flipped.problem


def test_top1_agreement_pools_rows_over_samples_for_2d_outputs_only():
    swapped = LOGITS[:, [0, 2, 1]]  # row 0 keeps its arg-max, row 1's moves
    ref = [{"logits": LOGITS, "vec": np.ones(3)}] * 4
    got = [{"logits": LOGITS, "vec": np.ones(3)}] * 3 + [{"logits": swapped, "vec": np.ones(3)}]
    agreement = compare_outputs(ref, got)
    logits, vec = agreement.outputs
    assert logits.top1_agreement == 7 / 8 and vec.top1_agreement is None
    assert agreement.top1_agreement == 7 / 8 and logits.worst == "3"


def test_rows_score_each_batch_row_and_count_rows():
    got = LOGITS.copy()
    got[1] *= -1
    by_sample = compare_outputs([[LOGITS]], [[got]], sample_names=["s"])
    by_row = compare_outputs([[LOGITS]], [[got]], sample_names=["s"], rows=True)
    assert (by_sample.samples, by_row.samples) == (1, 2) and by_row.outputs[0].worst == "s[1]"
    assert by_row.cosine == pytest.approx(-1.0) and by_row.cosine_mean == pytest.approx(0.0)
    assert by_sample.cosine > by_row.cosine  # a whole-batch cosine averages the bad row away


def test_shape_mismatch_and_missing_output_are_problems():
    agreement = compare_outputs([{"a": np.ones((1, 4)), "b": np.ones(2)}], [{"a": np.ones((1, 3)), "extra": 1}])
    assert agreement.problem == "a: shape (1, 3) != the reference's (1, 4); b: missing from the candidate's outputs"
    assert agreement.meets() == (
        "a: shape (1, 3) != the reference's (1, 4) on 0; b: missing from the candidate's outputs on 0"
    )
    assert [o.name for o in agreement.failing(min_cosine=0.0)] == ["a", "b"]


def test_gate_lists_only_the_failing_outputs():
    ref = [{"a": np.ones(3), "b": np.ones(3)}]
    agreement = compare_outputs(ref, [{"a": np.ones(3) * 1.5, "b": np.ones(3) * 1.001}])
    assert agreement.meets(rtol=1e-2) == "a: max_rel 0.5 > 0.01 (worst on 0)"
    assert [o.name for o in agreement.failing(rtol=1e-2)] == ["a"]


def test_nothing_compared_fails_the_gate():
    assert compare_outputs([], []).meets(min_cosine=0.0) == "no samples compared"
    assert compare_outputs([{}], [{}]).meets() == "the reference has no outputs"
    with pytest.raises(ValueError, match="2 reference samples but 1 candidate"):
        compare_outputs([{}, {}], [{}])


def test_to_dict_rounds_to_six_digits_and_keys_outputs_by_name():
    ref = np.array([[1.0, 2.0]])
    d = compare_outputs([[ref]], [[ref + np.array([[0.0, 1e-4 / 3]])]], on="2 held-out samples").to_dict()
    assert d["max_abs"] == 3.3e-05 and d["on"] == "2 held-out samples" and d["problem"] is None
    assert set(d) == {
        "cosine",
        "cosine_mean",
        "max_abs",
        "max_rel",
        "top1_agreement",
        "samples",
        "outputs",
        "on",
        "problem",
    }
    assert d["outputs"]["output0"]["max_rel"] == 1.7e-05 and d["outputs"]["output0"]["top1_agreement"] == 1.0


def test_the_written_record_is_the_rounded_figures_plus_the_gate_and_round_trips():
    ref = np.array([[1.0, 2.0]])
    agreement = compare_outputs([[ref]], [[ref + np.array([[0.0, 1e-4 / 3]])]], sample_names=["s0"])
    record = agreement.to_record(sample_names=["s0"], min_cosine=0.999, rtol=1e-6)
    assert (record.ok, record.min_cosine, record.rtol, record.atol) == (False, 0.999, 1e-6, None)  # max_rel 1.7e-5
    assert record.outputs["output0"] == OutputFigures(
        cosine=record.cosine,
        cosine_mean=record.cosine_mean,
        max_abs=3.3e-05,
        max_rel=1.7e-05,
        top1_agreement=1.0,
        samples=1,
        worst="s0",
    )
    assert agreement.to_record().ok is None  # no gate: recorded only
    written = record.to_dict()
    assert agreement.to_dict() == {k: written[k] for k in agreement.to_dict()}  # the same figures, minus the gate
    assert CheckRecord.from_dict(json.loads(json.dumps(written))) == record


def test_a_check_with_a_nan_output_is_written_without_nan_and_fails_its_gate():
    record = compare_outputs([[np.ones(3)]], [[np.array([1.0, np.nan, 1.0])]]).to_record(min_cosine=-1.0)
    assert record.ok is False and record.cosine is None and "NaN" in record.problem
    json.dumps(record.to_dict(), allow_nan=False)  # raises on a NaN figure: JSON has none


def test_ort_runner_gives_exact_outputs_by_name(tmp_path):
    affine_model(tmp_path / "affine.onnx")
    run = ort_runner(tmp_path / "affine.onnx", threads=1)
    feeds = [{"x": np.arange(6, dtype=np.float32).reshape(2, 3)}, {"x": -np.ones((2, 3), np.float32)}]
    outs = run_all(run, feeds)
    assert list(outs[0]) == ["y"] and outs[0]["y"].dtype == np.float32
    np.testing.assert_array_equal(outs[0]["y"], [[1, 3, 5], [7, 9, 11]])
    np.testing.assert_array_equal(outs[1]["y"], -np.ones((2, 3)))
    agreement = compare_outputs([{"y": f["x"] * 2 + 1} for f in feeds], outs)
    assert (agreement.cosine, agreement.max_abs, agreement.top1_agreement) == (1.0, 0.0, 1.0)


def test_ort_runner_names_the_op_onnxruntime_cannot_run(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Frobnicate", ["x"], ["y"], domain="my.ops")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("my.ops", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), tmp_path / "m.onnx")
    with pytest.raises(ModelFileError, match=r"onnxruntime .* cannot load it: .*Frobnicate"):
        ort_runner(tmp_path / "m.onnx")


@pytest.mark.parametrize("value", [True, 1.5, -2, "0.9"])
def test_min_cosine_problem_rejects_non_numbers_and_out_of_range(value):
    assert min_cosine_problem(value) == f"min_cosine must be a number in [-1, 1] or None, got {value!r}"


@pytest.mark.parametrize("value", [None, -1, 0.99999, 1])
def test_min_cosine_problem_accepts_a_bar_or_none(value):
    assert min_cosine_problem(value) is None
