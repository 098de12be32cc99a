"""Parity on named inputs: scale-relative error, cosine, the worst input named, the gate's record, seeded inputs.

The arithmetic itself (zero/NaN rule, shape and missing-output problems) is pinned in tests/test_compare.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeformer.export.parity import compare_on, parity_inputs


def test_error_is_relative_to_the_output_scale():
    ref = {"y": np.array([100.0, -50.0, 0.0])}
    agreement = compare_on(lambda f: ref, lambda f: {"y": ref["y"] + np.array([0.0, 0.01, 0.0])}, {"s": {}})
    (y,) = agreement.outputs
    assert y.max_abs == pytest.approx(0.01) and y.max_rel == pytest.approx(1e-4) and y.cosine > 0.99999
    assert y.problem is None and agreement.meets(min_cosine=0.99999, rtol=2e-4) is None


def test_sign_flip_fails_cosine_even_with_a_loose_tolerance():
    ref = {"logits": np.array([[0.3, -0.2, 0.1]], np.float32)}
    agreement = compare_on(lambda f: ref, lambda f: {"logits": -ref["logits"]}, {"s": {}})
    assert agreement.outputs[0].cosine == pytest.approx(-1.0)
    assert agreement.meets(min_cosine=0.99, rtol=10.0).startswith("logits: cosine -1.0000000 < 0.99")


def test_worst_input_is_named_and_only_failing_outputs_are_listed():
    outputs = iter([{"a": np.ones(3), "b": np.ones(3)}, {"a": np.ones(3) * 1.5, "b": np.ones(3) * 1.001}])
    ref = {"a": np.ones(3), "b": np.ones(3)}
    inputs = {"first": {}, "second": {}}
    agreement = compare_on(lambda f: ref, lambda f: next(outputs), inputs)
    a, b = agreement.outputs
    assert (a.worst, a.max_rel, b.max_rel) == ("second", pytest.approx(0.5), pytest.approx(1e-3))
    reason = agreement.meets(min_cosine=0.9, rtol=1e-2)
    assert reason == "a: max_rel 0.5 > 0.01 (worst on second)" and "b:" not in reason
    assert [o.name for o in agreement.failing(min_cosine=0.9, rtol=1e-2)] == ["a"]
    record = agreement.to_record(sample_names=list(inputs), rtol=1e-2, min_cosine=0.9)
    assert (record.ok, record.rtol, record.min_cosine) == (False, 1e-2, 0.9)
    assert record.sample_names == ("first", "second") and record.samples == 2
    assert record.outputs["a"].worst == "second" and record.outputs["b"].max_rel == pytest.approx(1e-3)


def test_record_of_a_passing_check_is_ok():
    ref = {"y": np.arange(4.0)}
    agreement = compare_on(lambda f: ref, lambda f: ref, {"random-0": {}, "natural": {}})
    record = agreement.to_record(sample_names=["random-0", "natural"], rtol=1e-4, min_cosine=0.99999)
    assert record.ok and record.cosine == 1.0 and record.problem is None


def test_nan_output_fails_parity_whatever_the_tolerance():
    ref = {"y": np.ones(3)}
    agreement = compare_on(lambda f: ref, lambda f: {"y": np.array([1.0, np.nan, 1.0])}, {"s": {}})
    assert agreement.meets(min_cosine=-1.0, rtol=1e9).startswith("y: NaN/Inf")
    assert agreement.to_record(sample_names=["s"], rtol=1e9, min_cosine=-1.0).ok is False


def test_top1_is_pooled_over_rows_and_each_output_keeps_its_worst_input():
    ref = {"logits": np.array([[1.0, 0.0], [0.0, 1.0]]), "vec": np.ones(3)}
    outs = iter([dict(ref), {"logits": ref["logits"][:, ::-1], "vec": np.ones(3)}])
    report = compare_on(lambda f: ref, lambda f: next(outs), {"s0": {}, "s1": {}}).to_dict()
    assert report["samples"] == 2 and report["cosine"] == pytest.approx(0.0)
    logits, vec = report["outputs"]["logits"], report["outputs"]["vec"]
    assert logits["cosine"] == pytest.approx(0.0) and logits["max_abs"] == 1.0 and logits["top1_agreement"] == 0.5
    assert logits["worst"] == "s1"
    assert (vec["cosine"], vec["max_abs"], vec["top1_agreement"]) == (1.0, 0.0, None)  # 1-D: no top-1


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
