"""profile() end to end on small real ONNX artifacts: shapes, per-op, errors for shapes it cannot fill."""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import pytest

from edgeformer.artifact import TensorSpec
from edgeformer.errors import ConfigError, DynamicShapeError
from edgeformer.profiling import ProfileConfig, build_feeds, profile

FAST = ProfileConfig(warmup=2, runs=5, threads=1)


def test_profile_reports_latency_size_memory_device_and_per_op(tiny_artifact):
    cfg = ProfileConfig(warmup=2, runs=5, threads=1, batch=3, per_op=True, per_op_runs=4, top_n=2)
    result = profile(tiny_artifact, cfg)
    assert result.artifact.input_shapes == {"x": (3, 3, 32, 32)}
    assert result.artifact.model_name == "tiny_cnn" and result.artifact.sha == tiny_artifact.sha
    assert result.latency.runs == 5 and len(result.latency.warmup_ms) == 2
    assert result.latency.batch == 3
    assert result.size_bytes == tiny_artifact.model_path.stat().st_size
    assert result.peak_rss_mb > 0 and result.memory.peak_rss_mb >= result.memory.rss_before_mb
    assert result.device.backend == "ort" and result.device.threads == 1
    assert result.per_op is not None and result.per_op.runs == 4
    d = result.to_dict()
    assert len(d["per_op"]["nodes"]) == 2
    json.dumps(d)
    md = result.to_markdown()
    assert "tiny_cnn" in md and "warm-up (2 runs, excluded)" in md and "| op type |" in md


def test_profile_accepts_an_artifact_folder_path(tiny_artifact):
    result = profile(str(tiny_artifact.path), FAST)
    assert result.per_op is None
    assert result.artifact.input_shapes == {"x": (1, 3, 32, 32)}


def test_a_foreign_bare_onnx_file_is_probed_in_a_child_then_profiled(tmp_path, caplog, make_onnx):
    path = tmp_path / "from elsewhere.onnx"
    onnx.save(make_onnx(("n", 3, 16, 16)), path)
    with caplog.at_level(logging.INFO, logger="edgeformer.profiling"):
        result = profile(path, FAST)
    assert any("child process" in r.getMessage() for r in caplog.records)
    assert result.artifact.input_shapes == {"x": (1, 3, 16, 16)}
    assert result.artifact.model_name == "from elsewhere"


def test_symbolic_spatial_dims_raise_listing_dims_and_flags(spatial_dynamic_artifact):
    with pytest.raises(DynamicShapeError) as e:
        profile(spatial_dynamic_artifact, FAST)
    msg = str(e.value)
    assert "height" in msg and "width" in msg and "--resolution" in msg


def test_resolution_fills_symbolic_spatial_dims(spatial_dynamic_artifact):
    result = profile(spatial_dynamic_artifact, ProfileConfig(warmup=1, runs=5, threads=1, resolution=24, batch=2))
    assert result.artifact.input_shapes == {"x": (2, 3, 24, 24)}


def test_fixed_batch_that_differs_is_refused_with_the_flag(tmp_path, make_artifact):
    artifact = make_artifact(tmp_path / "fixed", (1, 3, 16, 16))
    with pytest.raises(ConfigError, match="--batch 1"):
        profile(artifact, ProfileConfig(warmup=1, runs=5, batch=2))
    assert profile(artifact, FAST).latency.runs == 5


def test_per_op_needs_the_ort_backend(tiny_artifact):
    with pytest.raises(ConfigError, match="per-op"):
        profile(tiny_artifact, ProfileConfig(per_op=True), backend="openvino")


def test_unknown_backend_is_a_usage_error(tiny_artifact):
    with pytest.raises(ConfigError, match="backend"):
        profile(tiny_artifact, FAST, backend="onnxrt")


def test_feeds_are_seeded_and_typed():
    specs = [
        TensorSpec(name="x", shape=("batch", 3, 8, 8), dtype="float32"),
        TensorSpec(name="ids", shape=("batch", 5), dtype="int64"),
        TensorSpec(name="mask", shape=("batch", 5), dtype="bool"),
    ]
    a, b = build_feeds(specs, batch=2, seed=7), build_feeds(specs, batch=2, seed=7)
    assert {k: v.dtype.name for k, v in a.items()} == {"x": "float32", "ids": "int64", "mask": "bool"}
    assert a["x"].shape == (2, 3, 8, 8) and a["ids"].shape == (2, 5)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["x"], build_feeds(specs, batch=2, seed=8)["x"])


def test_every_symbolic_dim_of_every_input_is_listed_at_once():
    specs = [
        TensorSpec(name="wave", shape=("batch", "samples"), dtype="float32"),
        TensorSpec(name="img", shape=("batch", 3, "h", "w"), dtype="float32"),
    ]
    with pytest.raises(DynamicShapeError) as e:
        build_feeds(specs)
    msg = str(e.value)
    assert "'wave'" in msg and "samples" in msg and "'img'" in msg and "--resolution" in msg
