"""The strict record mechanism: exact round trips and error messages that name the key, path and fix."""

from __future__ import annotations

import enum
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from edgeformer.errors import ConfigError
from edgeformer.records import SKIP, Record, from_dict, to_dict


class Precision(enum.Enum):
    FP32 = "fp32"
    INT8 = "int8"


@dataclass(frozen=True, kw_only=True)
class Calibration(Record):
    method: Literal["minmax", "entropy"] = "minmax"
    samples: int
    percentile: float | None = None


@dataclass(frozen=True, kw_only=True)
class Tensor(Record):
    name: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True, kw_only=True)
class Manifest(Record):
    model: str
    precision: Precision
    inputs: tuple[Tensor, ...] = ()
    calibration: Calibration | None = None
    labels: tuple[str, ...] | None = None
    size_hw: tuple[int, int] = (224, 224)
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None


@dataclass(frozen=True, kw_only=True)
class Timing(Record):
    p50_ms: float
    samples_ms: tuple[float, ...] = field(default=(), metadata=SKIP)


@dataclass(frozen=True)
class Plain:  # a dataclass that does not inherit Record
    n: int
    tags: tuple[str, ...]


MANIFEST = Manifest(
    model="efficientformer_l1",
    precision=Precision.INT8,
    inputs=(Tensor(name="pixel_values", shape=("batch", 3, 224, 224)),),
    calibration=Calibration(method="entropy", samples=64, percentile=99.9),
    labels=("cat", "dog"),
    size_hw=(256, 192),
    metrics={"top1": 0.75},
    extra={"parity": {"max_abs": 1e-4, "outputs": ["logits"]}},
    source=Path("models/l1.onnx"),
)
MANIFEST_DICT = {
    "model": "efficientformer_l1",
    "precision": "int8",
    "inputs": [{"name": "pixel_values", "shape": ["batch", 3, 224, 224]}],
    "calibration": {"method": "entropy", "samples": 64, "percentile": 99.9},
    "labels": ["cat", "dog"],
    "size_hw": [256, 192],
    "metrics": {"top1": 0.75},
    "extra": {"parity": {"max_abs": 1e-4, "outputs": ["logits"]}},
    "source": "models/l1.onnx",
}


def _raises(match: str):
    """Pin the whole message: a test that only checks the type would pass on a useless error."""
    return pytest.raises(ConfigError, match="^" + re.escape(match) + "$")


def test_to_dict_writes_json_ready_values():
    assert MANIFEST.to_dict() == MANIFEST_DICT


def test_round_trip_through_json_restores_an_equal_record():
    back = Manifest.from_json(MANIFEST.to_json())
    assert back == MANIFEST
    assert back.precision is Precision.INT8
    assert isinstance(back.source, Path)


def test_to_json_sorts_keys_with_indent_two():
    text = Calibration(samples=8).to_json()
    assert text == '{\n  "method": "minmax",\n  "percentile": null,\n  "samples": 8\n}'


def test_lists_become_tuples():
    m = Manifest.from_dict(MANIFEST_DICT)
    assert m.inputs[0].shape == ("batch", 3, 224, 224)
    assert type(m.inputs) is tuple and type(m.inputs[0].shape) is tuple
    assert m.labels == ("cat", "dog") and m.size_hw == (256, 192)


def test_any_field_is_passed_through_unchanged():
    m = Manifest.from_dict(MANIFEST_DICT)
    assert m.extra == {"parity": {"max_abs": 1e-4, "outputs": ["logits"]}}
    assert type(m.extra["parity"]["outputs"]) is list


def test_omitted_default_fields_take_their_defaults():
    m = Manifest.from_dict({"model": "m", "precision": "fp32"})
    assert m == Manifest(model="m", precision=Precision.FP32)
    assert m.size_hw == (224, 224) and m.metrics == {} and m.calibration is None


def test_float_field_accepts_int_and_stores_float():
    t = Timing.from_dict({"p50_ms": 2})
    assert t.p50_ms == 2.0 and type(t.p50_ms) is float


def test_unknown_key_names_key_path_and_known_keys():
    d = {**MANIFEST_DICT, "calibration": {"samples": 8, "foo": 1}}
    with _raises("artifact.json: Manifest.calibration: unknown key 'foo'; known: method, samples, percentile"):
        Manifest.from_dict(d, where="artifact.json")


def test_unknown_key_suggests_close_match():
    with _raises("Calibration: unknown key 'sample'; known: method, samples, percentile; did you mean 'samples'?"):
        Calibration.from_dict({"sample": 8})


def test_missing_required_key_is_named():
    with _raises("m.json: Manifest: missing required key 'precision'"):
        Manifest.from_dict({"model": "m"}, where="m.json")


def test_missing_required_key_in_nested_record_has_its_path():
    d = {**MANIFEST_DICT, "inputs": [{"name": "x", "shape": [1]}, {"shape": [1]}]}
    with _raises("Manifest.inputs[1]: missing required key 'name'"):
        Manifest.from_dict(d)


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({"samples": True}, "Calibration.samples: expected int, got bool (True)"),
        ({"samples": 1.0}, "Calibration.samples: expected int, got float (1.0)"),
        ({"samples": 8, "percentile": "99"}, "Calibration.percentile: expected float | None, got str ('99')"),
        ({"samples": 8, "percentile": False}, "Calibration.percentile: expected float | None, got bool (False)"),
        ({"samples": 8, "method": "max"}, "Calibration.method: expected 'minmax' | 'entropy', got str ('max')"),
        ([8], "Calibration: expected a Calibration object, got list ([8])"),
    ],
)
def test_wrong_type_names_field_expected_type_and_value_type(d, message):
    with _raises(message):
        Calibration.from_dict(d)


def test_wrong_type_deep_in_nested_record_has_full_path():
    d = {**MANIFEST_DICT, "inputs": [{"name": "x", "shape": [1, 2.5]}]}
    with _raises("a.json: Manifest.inputs[0].shape[1]: expected int | str, got float (2.5)"):
        Manifest.from_dict(d, where="a.json")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("precision", "fp16", "Manifest.precision: expected 'fp32' | 'int8', got str ('fp16')"),
        ("size_hw", [1, 2, 3], "Manifest.size_hw: expected tuple[int, int] (2 items), got 3 items"),
        ("labels", "cat", "Manifest.labels: expected tuple[str, ...] | None, got str ('cat')"),
        ("metrics", {"top1": "high"}, "Manifest.metrics['top1']: expected float, got str ('high')"),
        ("source", 3, "Manifest.source: expected Path | None, got int (3)"),
    ],
)
def test_wrong_type_of_enum_tuple_dict_and_path_fields(key, value, message):
    with _raises(message):
        Manifest.from_dict({**MANIFEST_DICT, key: value})


def test_skip_field_is_not_written_and_not_read():
    t = Timing(p50_ms=1.5, samples_ms=(1.0, 2.0))
    assert t.to_dict() == {"p50_ms": 1.5}
    assert Timing.from_dict(t.to_dict()) == Timing(p50_ms=1.5)
    with pytest.raises(ConfigError, match=r"^Timing: unknown key 'samples_ms'; known: p50_ms\b"):
        Timing.from_dict({"p50_ms": 1.5, "samples_ms": [1.0]})


def test_functions_work_on_plain_dataclasses():
    assert to_dict(Plain(n=2, tags=("a",))) == {"n": 2, "tags": ["a"]}
    assert from_dict(Plain, {"n": 2, "tags": ["a"]}) == Plain(n=2, tags=("a",))
    with _raises("p.json: Plain.n: expected int, got str ('2')"):
        from_dict(Plain, {"n": "2", "tags": []}, where="p.json")


def test_to_dict_refuses_values_json_cannot_hold():
    with pytest.raises(TypeError, match="cannot write a set to JSON"):
        Manifest(model="m", precision=Precision.FP32, extra={"s": {1}}).to_dict()


def test_from_json_reports_invalid_json_with_where():
    with pytest.raises(ConfigError, match=r"^bench\.json: not valid JSON \("):
        Timing.from_json("{", where="bench.json")


def test_to_dict_output_is_accepted_by_json():
    assert json.loads(json.dumps(MANIFEST.to_dict())) == MANIFEST_DICT


def test_union_of_records_and_scalars_picks_the_matching_option():
    @dataclass(frozen=True)
    class Holder:
        value: int | str | None

    assert from_dict(Holder, {"value": "a"}) == Holder(value="a")
    assert from_dict(Holder, {"value": None}) == Holder(value=None)
    with _raises("Holder.value: expected int | str | None, got list ([1])"):
        from_dict(Holder, {"value": [1]})


@dataclass(frozen=True)
class Opset:
    version: Literal[17, 18]


@pytest.mark.parametrize("value", [True, 17.0, "17", 19])
def test_int_literal_rejects_equal_values_of_other_types(value):
    with _raises(f"Opset.version: expected 17 | 18, got {type(value).__name__} ({value!r})"):
        from_dict(Opset, {"version": value})


def test_records_module_imports_only_the_standard_library_and_errors():
    roots = "('edgeformer', 'torch', 'numpy')"
    code = f"import sys, edgeformer.records; print(sorted(m for m in sys.modules if m.split('.')[0] in {roots}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['edgeformer', 'edgeformer.errors', 'edgeformer.records']"
