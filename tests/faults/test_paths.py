"""A relative artifact path gives the same result as an absolute one.

ORT's symbolic shape inference once failed on a relative model path (the pre-processing runs from a scratch
working directory) and the quantizer silently fell back to ONNX shape inference; the path is now resolved
before the working directory changes (``quant.ort_adapter.preprocess``).
"""

from __future__ import annotations

import logging
import os

import onnx
from cli.conftest import cli  # tests/ is on sys.path

from edgeformer.quant.config import QuantConfig
from edgeformer.quant.ort_adapter import preprocess


def test_relative_model_path_gets_symbolic_shape_inference_like_an_absolute_one(
    tiny_artifact, tmp_path, monkeypatch, caplog
):
    monkeypatch.chdir(tiny_artifact.parent)
    with caplog.at_level(logging.WARNING, logger="edgeformer.quant.ort_adapter"):
        rel = preprocess(os.path.join(tiny_artifact.name, "model.onnx"), tmp_path / "rel.onnx", QuantConfig())
        ab = preprocess(tiny_artifact / "model.onnx", tmp_path / "abs.onnx", QuantConfig())
    assert not [r for r in caplog.records if "symbolic shape inference failed" in r.getMessage()], caplog.text
    assert onnx.load(str(rel)).graph == onnx.load(str(ab)).graph


def test_quantize_of_a_relative_path_writes_the_same_model_as_of_an_absolute_one(tiny_artifact, tmp_path):
    work = tiny_artifact.parent
    # --no-search: the placement search follows measured timings, so two runs may pick different plans
    args = ("--calib", "synthetic", "--no-search")
    rel = cli("quantize", tiny_artifact.name, *args, "-o", "q-rel", "-v", cwd=work, cache=False)
    ab = cli("quantize", str(tiny_artifact), *args, "-o", str(tmp_path / "q-abs"), cache=False)
    assert rel.returncode == 0 and ab.returncode == 0, (rel.stderr, ab.stderr)
    assert "symbolic shape inference failed" not in rel.stderr
    # the graphs, not the bytes: the embedded manifest records when it was made
    assert (
        onnx.load(str(work / "q-rel" / "model.onnx")).graph == onnx.load(str(tmp_path / "q-abs" / "model.onnx")).graph
    )
