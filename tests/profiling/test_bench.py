"""The bench pipeline: rows from a producer table, failures isolated, report files written."""

from __future__ import annotations

import importlib
import json

import pytest
import torch
from torch import nn

from edgeformer.errors import BackendUnavailableError, ConfigError, OutputExistsError
from edgeformer.profiling.bench import (
    ROW_PRODUCERS,
    BenchConfig,
    BenchRow,
    RowProducer,
    bench,
    parity_cosine,
)

FAST = BenchConfig(warmup=1, runs=5)
PARITY = {"ok": True, "min_cosine": 0.99999, "outputs": [{"name": "logits", "cosine": 0.9999991, "max_abs": 1e-6}]}


def _exporter_available() -> bool:
    return hasattr(importlib.import_module("edgeformer.exporters"), "export") and (
        importlib.util.find_spec("edgeformer.exporters.onnx") is not None
    )


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.conv(x).relu().mean((2, 3)))


def producers_with_failures(make_artifact, made: list):
    """An ORT row from a prebuilt artifact, a row that crashes, one whose backend is missing, one that
    depends on a failed artifact."""

    def make(dest):
        made.append(dest.name)
        return make_artifact(dest, ("batch", 3, 32, 32), parity=PARITY)

    def ort_row(ctx):
        return ctx.profile_row(ctx.artifact("onnx-fp32", make), backend="ort")

    def crash(ctx):
        raise RuntimeError("converter exploded")

    def missing(ctx):
        raise BackendUnavailableError("TensorRT needs an NVIDIA GPU")

    def broken_export(dest):
        raise ValueError("cannot export int8 here")

    def dependent(ctx):
        return ctx.profile_row(ctx.artifact("onnx-int8", broken_export), backend="ort")

    return [
        RowProducer("crash", "onnx", "int4", "ort", crash),
        RowProducer("onnx-fp32-ort", "onnx", "fp32", "ort", ort_row),
        RowProducer("tensorrt-fp16", "tensorrt", "fp16", "tensorrt", missing),
        RowProducer("int8-a", "onnx", "int8", "ort", dependent),
        RowProducer("int8-b", "onnx", "int8", "openvino", dependent),
        RowProducer("fp32-again", "onnx", "fp32", "ort", ort_row),  # reuses the export, does not redo it
    ]


def test_failing_rows_do_not_stop_the_others_and_reports_are_written(tmp_path, make_artifact):
    made: list = []
    out = tmp_path / "bench out"  # a space: paths are not split anywhere
    report = bench("tiny_cnn", out=out, batch=2, threads=1, config=FAST,
                   producers=producers_with_failures(make_artifact, made))  # fmt: skip
    status = [(r.precision, r.backend, r.status) for r in report.rows]
    assert status == [
        ("int4", "ort", "failed"),
        ("fp32", "ort", "ok"),
        ("fp16", "tensorrt", "skipped"),
        ("int8", "ort", "failed"),
        ("int8", "openvino", "failed"),
        ("fp32", "ort", "ok"),
    ]
    assert made == ["onnx-fp32"]
    crash, ok, skipped, int8_a, int8_b, _ = report.rows
    assert "RuntimeError: converter exploded" in crash.reason
    assert "NVIDIA GPU" in skipped.reason
    assert int8_a.reason == int8_b.reason and "cannot export int8" in int8_a.reason
    assert ok.p50_ms > 0 and ok.p90_ms >= ok.p50_ms and ok.fps > 0 and ok.size_mb > 0
    assert ok.parity_cosine == pytest.approx(0.9999991)  # the measured value, not the 0.99999 threshold
    assert ok.artifact_path == str(out / "onnx-fp32")
    assert report.fastest_ok() in (report.rows[1], report.rows[5])
    assert report.failed == (crash, int8_a, int8_b)

    saved = json.loads((out / "bench.json").read_text())
    assert [r["status"] for r in saved["rows"]] == [s for _, _, s in status]
    assert saved["device"]["device_id"] and saved["batch"] == 2 and saved["threads"] == 1
    assert saved["fastest"]["status"] == "ok"
    md = (out / "bench.md").read_text()
    assert md.count("\n| onnx |") == 5 and "converter exploded" in md and "| skipped |" in md
    assert (out / "onnx-fp32" / "artifact.json").is_file()


def test_existing_report_needs_overwrite(tmp_path, make_artifact):
    producers = producers_with_failures(make_artifact, [])[:2]
    bench("tiny_cnn", out=tmp_path, config=FAST, producers=producers)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        bench("tiny_cnn", out=tmp_path, config=FAST, producers=producers)
    again = bench("tiny_cnn", out=tmp_path, config=FAST, producers=producers, overwrite=True)
    assert again.rows[1].status == "ok"


def test_rows_are_selected_by_name_and_unknown_names_refused(tmp_path, make_artifact):
    producers = producers_with_failures(make_artifact, [])
    report = bench("tiny_cnn", out=tmp_path / "a", config=BenchConfig(warmup=1, runs=5, rows=("tensorrt-fp16",)),
                   producers=producers)  # fmt: skip
    assert [r.status for r in report.rows] == ["skipped"]
    with pytest.raises(ConfigError, match="onnx-fp33"):
        bench("tiny_cnn", out=tmp_path / "b", config=BenchConfig(rows=("onnx-fp33",)), producers=producers)


def test_bad_settings_fail_before_any_row_runs(tmp_path):
    ran = []
    producers = [RowProducer("x", "onnx", "fp32", "ort", lambda ctx: ran.append(1))]
    with pytest.raises(ConfigError, match="batch"):
        bench("tiny_cnn", out=tmp_path / "r", batch=0, producers=producers)
    assert not ran and not (tmp_path / "r").exists()


def test_eager_row_times_a_user_module_with_its_threads(tmp_path):
    before = torch.get_num_threads()
    eager = next(p for p in ROW_PRODUCERS if p.backend == "eager")
    report = bench(TinyNet(), out=tmp_path, threads=2, config=FAST, example_inputs=(torch.randn(1, 3, 16, 16),),
                   producers=[eager])  # fmt: skip
    (row,) = report.rows
    assert (row.format, row.backend, row.status) == ("pytorch", "eager", "ok")
    assert row.p50_ms > 0 and row.size_mb == pytest.approx((8 * 3 * 9 + 8 + 8 * 4 + 4) * 4 / 1e6)
    assert torch.get_num_threads() == before
    assert report.model == "TinyNet"


def test_eager_row_without_example_inputs_fails_with_the_fix(tmp_path):
    eager = next(p for p in ROW_PRODUCERS if p.backend == "eager")
    (row,) = bench(TinyNet(), out=tmp_path, config=FAST, producers=[eager]).rows
    assert row.status == "failed" and "example_inputs" in row.reason


def test_parity_cosine_takes_the_worst_output_at_any_depth():
    assert parity_cosine(None) is None
    assert parity_cosine({"min_cosine": 0.99}) is None
    assert parity_cosine({"outputs": [{"cosine": 0.9999}, {"cosine": 0.999}], "min_cosine": 0.5}) == 0.999
    assert parity_cosine({"logits": {"cosine": 0.98}, "dist": {"cosine": 1.0}}) == 0.98


@pytest.mark.slow  # the dynamo exporter takes ~20 s even for a tiny module
@pytest.mark.skipif(not _exporter_available(), reason="edgeformer.exporters.onnx is not written yet")
def test_default_table_benches_a_user_module_export_and_eager(tmp_path):
    report = bench(TinyNet(), out=tmp_path, threads=1, config=FAST, example_inputs=(torch.randn(1, 3, 16, 16),))
    rows = {(r.format, r.backend): r for r in report.rows}
    assert rows[("onnx", "ort")].status == "ok", rows[("onnx", "ort")].reason
    assert rows[("onnx", "ort")].parity_cosine is not None and rows[("onnx", "ort")].parity_cosine > 0.9999
    assert rows[("pytorch", "eager")].status == "ok"
    assert isinstance(report.fastest_ok(), BenchRow)
    assert (tmp_path / "bench.json").is_file() and (tmp_path / "bench.md").is_file()
