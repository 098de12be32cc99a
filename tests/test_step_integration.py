"""Export, quantize and compile run through run_step: the same step on the same inputs comes from the step cache
(nothing is recomputed), other inputs, other settings or ``cache=None`` recompute.

Evidence of a hit is timing-independent: the step's own log line ("exported ...", "quantized ...") is not emitted
again, ``run_step`` logs "cached result", the cache gains no entry, and ``artifact.json`` is the same bytes
(``created`` included).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgeformer
from edgeformer.cache import StepCache
from edgeformer.export.onnx import OnnxExportConfig
from edgeformer.quant import QuantConfig, SearchConfig

# a few-KB SHViT at 32x32 through the TorchScript exporter: an export in a fraction of a second
TINY = {
    "embed_dims": (16, 32, 48),
    "depths": (1, 1, 1),
    "partial_dims": (8, 8, 16),
    "qk_dims": (8, 8, 8),
    "mlp_ratios": ((2.0,), (2.0,), (2.0,)),
    "attention": ((False,), (True,), (True,)),
    "num_classes": 10,
}
EXPORT = OnnxExportConfig(resolution=32, parity_samples=1, dynamo=False)
QUANT = QuantConfig(calib_size=6, fidelity_samples=2, search=SearchConfig(enabled=False))


@pytest.fixture
def cache(tmp_path) -> StepCache:
    return StepCache(tmp_path / "cache")


@pytest.fixture(scope="module")
def fp32(tmp_path_factory) -> edgeformer.Artifact:
    return edgeformer.export("shvit_s1", out=tmp_path_factory.mktemp("fp32") / "a", config=EXPORT, cache=None, **TINY)


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (40, 36, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def runs(caplog, text: str) -> int:
    """How many log records contain ``text``."""
    return sum(text in r.getMessage() for r in caplog.records)


def same_file(a: edgeformer.Artifact, b: edgeformer.Artifact) -> bool:
    return (a.path / "artifact.json").read_bytes() == (b.path / "artifact.json").read_bytes()


def test_a_zoo_export_is_cached_by_name_weights_overrides_and_config(tmp_path, cache, caplog):
    with caplog.at_level(logging.INFO, logger="edgeformer"):
        first = edgeformer.export("shvit_s1", out=tmp_path / "a", config=EXPORT, cache=cache, **TINY)
        again = edgeformer.export("shvit_s1", out=tmp_path / "b", config=EXPORT, cache=cache, **TINY)
        assert runs(caplog, "exported shvit_s1") == 1 and runs(caplog, "cached result") == 1
        assert same_file(first, again) and again.manifest.created == first.manifest.created
        assert cache.stats().entries == 1 and edgeformer.Artifact.load(again.path).manifest.parity.ok

        edgeformer.export("shvit_s1", out=tmp_path / "c", config=EXPORT, cache=None, **TINY)
        assert runs(caplog, "exported shvit_s1") == 2 and cache.stats().entries == 1  # not read, not written
        other = {**TINY, "num_classes": 7}
        edgeformer.export("shvit_s1", out=tmp_path / "d", config=EXPORT, cache=cache, **other)
        edgeformer.export(
            "shvit_s1", out=tmp_path / "e", config=dataclasses.replace(EXPORT, seed=1), cache=cache, **TINY
        )
        assert runs(caplog, "exported shvit_s1") == 4 and cache.stats().entries == 3


def test_your_own_module_is_never_cached(tmp_path, cache, caplog):
    import torch

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    module(torch.zeros(1, 3, 8, 8))  # materialize the lazy layer
    with caplog.at_level(logging.INFO, logger="edgeformer"):
        for name in ("a", "b"):
            edgeformer.export(
                module,
                out=tmp_path / name,
                example_inputs=(torch.zeros(1, 3, 8, 8),),
                config=OnnxExportConfig(dynamo=False, parity_samples=1),
                cache=cache,
            )
    assert runs(caplog, "exported Sequential") == 2 and cache.stats().entries == 0


def test_quantize_again_is_a_cache_hit_until_the_calibration_data_changes(fp32, images, tmp_path, cache, caplog):
    with caplog.at_level(logging.INFO, logger="edgeformer"):
        first = edgeformer.quantize(fp32, QUANT, calib=images, out=tmp_path / "a", cache=cache)
        again = edgeformer.quantize(fp32, QUANT, calib=images, out=tmp_path / "b", cache=cache)
        assert runs(caplog, "quantized shvit_s1") == 1 and runs(caplog, "cached result") == 1
        assert same_file(first, again) and cache.stats().entries == 1
        assert (again.path / "model.onnx").read_bytes() == (first.path / "model.onnx").read_bytes()

        Image.fromarray(np.zeros((40, 36, 3), np.uint8)).save(images / "new.png")  # the data changed
        changed = edgeformer.quantize(fp32, QUANT, calib=images, out=tmp_path / "c", cache=cache)
        assert runs(caplog, "quantized shvit_s1") == 2 and cache.stats().entries == 2
        assert changed.manifest.calibration.found == 11

        edgeformer.quantize(fp32, QUANT, calib=images, out=tmp_path / "d", cache=None)
        assert runs(caplog, "quantized shvit_s1") == 3 and cache.stats().entries == 2
        edgeformer.quantize(
            fp32,
            QUANT.replace(method="percentile", min_samples_for_method=2),
            calib=images,
            out=tmp_path / "e",
            cache=cache,
        )
        assert runs(caplog, "quantized shvit_s1") == 4 and cache.stats().entries == 3


def test_quantize_from_a_reader_is_never_cached(fp32, tmp_path, cache, caplog):
    x = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)

    class Reader:
        def __init__(self) -> None:
            self.i = 0

        def get_next(self):
            self.i += 1
            return {"input": x[self.i - 1 : self.i]} if self.i <= len(x) else None

        def rewind(self) -> None:
            self.i = 0

    with caplog.at_level(logging.INFO, logger="edgeformer"):
        for name in ("a", "b"):
            edgeformer.quantize(fp32, QUANT, calib=Reader(), out=tmp_path / name, cache=cache)
    assert runs(caplog, "quantized shvit_s1") == 2 and cache.stats().entries == 0


def test_compile_again_is_a_cache_hit_until_the_config_or_input_changes(fp32, images, tmp_path, cache, caplog):
    with caplog.at_level(logging.INFO, logger="edgeformer"):
        first = edgeformer.compile(fp32, target="ort", out=tmp_path / "a", threads=1, cache=cache)
        again = edgeformer.compile(fp32, target="ort", out=tmp_path / "b", threads=1, cache=cache)
        assert runs(caplog, "optimization of shvit_s1") == 1 and runs(caplog, "cached result") == 1
        assert same_file(first, again) and cache.stats().entries == 1

        edgeformer.compile(fp32, target="ort", out=tmp_path / "c", threads=1, graph_optimization="basic", cache=cache)
        edgeformer.compile(fp32, target="ort", out=tmp_path / "d", threads=1, cache=None)
        assert runs(caplog, "optimization of shvit_s1") == 3 and cache.stats().entries == 2

        int8 = edgeformer.quantize(fp32, QUANT, calib=images, out=tmp_path / "int8", cache=None)
        edgeformer.compile(int8, target="ort", precision="int8", out=tmp_path / "e", threads=1, cache=cache)
        assert runs(caplog, "optimization of shvit_s1") == 4 and cache.stats().entries == 3


def test_the_same_model_bytes_with_other_labels_is_another_input(fp32, tmp_path, cache):
    from edgeformer.artifact import ArtifactWriter

    with ArtifactWriter(tmp_path / "relabelled") as w:
        (w.dir / "model.onnx").write_bytes(fp32.model_path.read_bytes())
        relabelled = w.commit(
            dataclasses.replace(fp32.manifest, labels=tuple(f"class {i}" for i in range(10)), files={}, created="")
        )
    a = edgeformer.compile(fp32, target="ort", out=tmp_path / "a", cache=cache)
    b = edgeformer.compile(relabelled, target="ort", out=tmp_path / "b", cache=cache)
    assert cache.stats().entries == 2 and a.manifest.labels != b.manifest.labels == relabelled.manifest.labels
