from __future__ import annotations

import json

import pytest
from PIL import Image

from edgeformer.artifact import Artifact, ArtifactWriter, Manifest
from edgeformer.errors import ModelFileError
from edgeformer.quant.report import JSON_NAME, MD_NAME, PNG_NAME, QuantReport, write_report


def make_report() -> QuantReport:
    return QuantReport(
        model="tiny",
        device={"device_id": "abc123", "label": "test CPU"},
        latency={"fp32_ms": 2.0, "int8_ms": 1.0, "speedup": 2.0, "threads": 2},
        fidelity={
            "samples": 8,
            "cosine": 0.9995,
            "cosine_mean": 0.9998,
            "top1_agreement": 1.0,
            "on": "held-out",
            "problem": None,
        },
        groups=[
            {
                "group": "stages.0.blocks.0",
                "quantized_nodes": 4,
                "decision": "int8",
                "reason": "latency",
                "latency_int8_ms": 1.0,
                "latency_float_ms": 1.2,
                "sqnr_db": 31.5,
                "alone_cosine": 0.9999,
                "note": "",
            },
            {
                "group": "head",
                "quantized_nodes": 1,
                "decision": "float",
                "reason": "accuracy",
                "latency_int8_ms": None,
                "latency_float_ms": None,
                "sqnr_db": 12.0,
                "alone_cosine": 0.98,
                "note": "x|y",
            },
        ],
        tensors=[
            {"tensor": "pooled", "kind": "activation", "node": "head", "sqnr_db": 12.0},
            {"tensor": "w", "kind": "weight", "node": "fc", "sqnr_db": None},
        ],
        candidates=[{"label": "default", "quantized_nodes": 5, "latency_ms": 1.1, "cosine": 0.9991}],
        accuracy={"fp32_top1": 90.0, "int8_top1": 89.6, "max_drop": 0.5, "fallbacks": []},
    )


def test_report_files_are_written_and_the_png_is_a_real_png(tmp_path):
    names = write_report(tmp_path, make_report())
    assert names == [JSON_NAME, MD_NAME, PNG_NAME]
    assert (tmp_path / PNG_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(tmp_path / PNG_NAME) as img:
        img.verify()
    data = json.loads((tmp_path / JSON_NAME).read_text())
    assert data["groups"][1]["reason"] == "accuracy" and data["latency"]["speedup"] == 2.0
    md = (tmp_path / MD_NAME).read_text()
    assert "| head | 1 | float | accuracy |" in md and "x/y" in md  # pipes in notes cannot break the table
    assert "2.00x" in md and "INT8 89.60" in md and "abc123" in md
    assert md.index("| pooled |") < md.index("| w |")  # worst SQNR first; unknown (exact) last
    assert "cosine min 0.99950, mean 0.99980" in md and "Not measurable" not in md


def test_an_unmeasurable_fidelity_is_said_and_left_off_the_plot(tmp_path):
    base = make_report()
    broken = QuantReport(
        **{
            **base.to_dict(),
            "fidelity": {**base.fidelity, "cosine": None, "cosine_mean": None, "problem": "logits: NaN/Inf: 2 NaN"},
            "candidates": [
                *base.candidates,
                {"label": "head float", "quantized_nodes": 4, "latency_ms": 1.0, "cosine": None},
            ],
        }
    )
    write_report(tmp_path, broken)
    md = (tmp_path / MD_NAME).read_text()
    assert "cosine min -, mean -" in md and "**Not measurable: logits: NaN/Inf: 2 NaN.**" in md
    assert broken.summary()["fidelity"] == {
        "cosine": None,
        "cosine_mean": None,
        "top1_agreement": 1.0,
        "problem": "logits: NaN/Inf: 2 NaN",
    }


def test_summary_counts_float_groups_by_reason():
    s = make_report().summary()
    assert s["float_groups"] == {"latency": 0, "accuracy": 1}
    assert s["files"] == [JSON_NAME, MD_NAME, PNG_NAME]


def test_report_inside_an_artifact_is_hashed_so_edits_are_detected(tmp_path):
    with ArtifactWriter(tmp_path / "a") as w:
        (w.dir / "model.onnx").write_bytes(b"not really a model")
        write_report(w.dir, make_report())
        art = w.commit(Manifest(format="onnx", precision="int8", model_name="tiny", main_file="model.onnx"))
    assert {JSON_NAME, MD_NAME, PNG_NAME} <= set(art.manifest.files)
    Artifact.load(art.path)
    (art.path / MD_NAME).write_text("edited", encoding="utf-8")
    with pytest.raises(ModelFileError, match="sha256"):
        Artifact.load(art.path)
