"""``edgeformer quantize --plan``: the searched placement, recorded in the artifact, rebuilds byte for byte; a bad
plan gets its exit code; INT8 slower than FP32 gets one line. Real ORT on the tiny graphs of tests/quant."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from quant.conftest import RES, attention_model, write_artifact  # tests/ is on sys.path
from typer.testing import CliRunner

from edgeformer.cli.app import app
from edgeformer.cli.quantize import slower_line
from edgeformer.quant.plan import PLAN_FILE, PlanRecord, load_plan

runner = CliRunner()


@pytest.fixture
def model(tmp_path) -> Path:
    return write_artifact(attention_model(), tmp_path / "fp32").path


@pytest.fixture
def calib(tmp_path) -> Path:
    """Image-like inputs in [0, 1): the default plan meets the search's cosine bar (0.999) on them."""
    path = tmp_path / "calib.npz"
    np.savez(path, input=np.random.default_rng(1).uniform(0, 1, (40, 3, RES, RES)).astype(np.float32))
    return path


def quantize(model: Path, calib: Path, out: Path, *extra: str):
    result = runner.invoke(app, ["quantize", str(model), "--calib", str(calib), "--out", str(out), *extra])
    return result


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow  # the CLI's default search: about a minute on the shared 2-core machine
def test_a_searched_plan_rebuilds_byte_identical_models(model, calib, tmp_path):
    first = quantize(model, calib, tmp_path / "searched", "--no-cache")  # the latency-driven search
    assert first.exit_code == 0, first.output
    assert (tmp_path / "searched" / "quant_report.md").is_file()  # the search ran
    record = PlanRecord.from_dict(json.loads((tmp_path / "searched" / PLAN_FILE).read_text()))
    again = [
        quantize(model, calib, tmp_path / f"again{i}", "--no-cache", "--plan", str(src))
        for i, src in enumerate((tmp_path / "searched", tmp_path / "searched" / PLAN_FILE))  # folder, then file
    ]
    for i, result in enumerate(again):
        assert result.exit_code == 0, result.output
        out = tmp_path / f"again{i}"
        assert not (out / "quant_report.md").exists()  # no search ran
        assert PlanRecord.from_dict(json.loads((out / PLAN_FILE).read_text())) == record
    hashes = {sha(tmp_path / d / "model.onnx") for d in ("searched", "again0", "again1")}
    assert len(hashes) == 1, hashes


@pytest.mark.parametrize("inputs", ["image-like", "normal"])
def test_a_plan_from_a_short_search_rebuilds_byte_identical_models_through_the_api(model, calib, tmp_path, inputs):
    """The fast twin of the CLI test above: a short search, then its plan.json given back twice, uncached. On normal
    inputs the default plan misses the search's cosine bar, so the fidelity fallback keeps an op float first."""
    from edgeformer import quantize as api_quantize
    from edgeformer.quant import QuantConfig, SearchConfig

    if inputs == "normal":
        calib = tmp_path / "normal.npz"
        np.savez(calib, input=np.random.default_rng(1).standard_normal((40, 3, RES, RES)).astype(np.float32))
    config = QuantConfig(search=SearchConfig(rounds=1, max_candidates=2, max_sensitivity_groups=0, time_budget_s=2))
    searched = api_quantize(model, config, calib=calib, out=tmp_path / "searched", cache=None)
    assert ("fallback" in searched.manifest.extra) == (inputs == "normal")
    assert (searched.path / "quant_report.md").is_file()
    plan = load_plan(searched.path)
    again = [api_quantize(model, config, calib=calib, out=tmp_path / f"a{i}", cache=None, plan=plan) for i in (0, 1)]
    assert {sha(a.model_path) for a in again} == {sha(searched.model_path)}
    assert all(load_plan(a.path) == plan for a in again)


def test_no_search_with_the_same_plan_is_byte_identical_too(model, calib, tmp_path):
    assert quantize(model, calib, tmp_path / "a", "--no-search", "--no-cache").exit_code == 0
    b = quantize(model, calib, tmp_path / "b", "--no-search", "--no-cache", "--plan", str(tmp_path / "a"))
    assert b.exit_code == 0, b.output
    assert sha(tmp_path / "a" / "model.onnx") == sha(tmp_path / "b" / "model.onnx")


def _error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error (")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_a_plan_naming_nodes_the_model_lacks_is_a_usage_error_naming_them(model, calib, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"nodes_to_quantize": ["pw", "no_such_conv", "nor_this"], "reasons": {}}))
    result = quantize(model, calib, tmp_path / "q", "--plan", str(plan))
    assert result.exit_code == 2
    line = _error(result)
    assert "no_such_conv" in line and "nor_this" in line and "2 of its 3" in line
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not JSON"),
        ('{"nodes": ["pw"]}', "unknown key"),
        ('{"nodes_to_quantize": "pw"}', "nodes_to_quantize"),
        ('{"nodes_to_quantize": []}', "empty"),
    ],
)
def test_a_malformed_plan_is_invalid_input_naming_the_file(model, calib, tmp_path, content, needle):
    plan = tmp_path / "bad plan.json"
    plan.write_text(content)
    result = quantize(model, calib, tmp_path / "q", "--plan", str(plan))
    assert result.exit_code == 3, result.output
    line = _error(result)
    assert needle in line and "bad plan.json" in line


def test_a_missing_plan_and_plan_with_search_are_usage_errors(model, calib, tmp_path):
    missing = quantize(model, calib, tmp_path / "q", "--plan", str(tmp_path / "nowhere.json"))
    assert missing.exit_code == 2 and "does not exist" in _error(missing)
    empty_dir = tmp_path / "folder"
    empty_dir.mkdir()
    no_plan = quantize(model, calib, tmp_path / "q", "--plan", str(empty_dir))
    assert no_plan.exit_code == 2 and "holds no plan.json" in _error(no_plan)
    both = quantize(model, calib, tmp_path / "q", "--plan", str(empty_dir), "--search")
    assert both.exit_code == 2 and "drop --search" in _error(both)
    assert not (tmp_path / "q").exists()


def test_help_says_which_paths_are_deterministic():
    result = runner.invoke(app, ["quantize", "--help"], terminal_width=200)
    text = " ".join(result.output.split())
    assert "--plan" in text and "Deterministic" in text and "Not deterministic: the placement search" in text


def test_the_slower_line_is_printed_only_when_int8_loses_beyond_the_interval():
    speedup = dict(
        ratio=0.9, low=0.85, high=0.95, decided=True, int8_slower=True, fp32_ms=1.0, int8_ms=1.11, rounds=6,
        backend="ort", threads=2, method="interleaved",
    )  # fmt: skip
    line = slower_line({"placement": {"speedup": speedup}})
    assert line is not None and "INT8 is slower than FP32" in line and "0.90x [0.85, 0.95]" in line
    tie = speedup | {"ratio": 0.98, "high": 1.03, "decided": False, "int8_slower": False}
    assert slower_line({"placement": {"speedup": tie}}) is None
    assert slower_line({}) is None  # --no-search: nothing timed, nothing claimed


def test_load_plan_reads_what_quantize_wrote(model, calib, tmp_path):
    assert quantize(model, calib, tmp_path / "q", "--no-search").exit_code == 0
    plan = load_plan(tmp_path / "q")
    assert "pw" in plan.nodes_to_quantize and "Softmax" in plan.reasons["softmax"]
