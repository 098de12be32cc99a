"""quantize() with the search calibrates once and hands that calibration to the core, whose model must be
byte-identical to quantize() with the search off calibrating on its own with the same plan."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeformer.artifact import sha256_file
from edgeformer.errors import ConfigError
from edgeformer.modelfile import read_embedded_manifest
from edgeformer.quant import QuantConfig, QuantPlan, SearchConfig, calibrate, quantize

from .conftest import RES
from .test_placement import cost_model, int8_nodes

# one timing round and no sensitivity table: what is tested here is calibration, not the search
SEARCH = SearchConfig(rounds=1, runs_per_round=1, warmup=0, min_cosine=0.99, max_sensitivity_groups=0)
SEARCHED = QuantConfig(search=SEARCH)
CORE = QuantConfig(search=SearchConfig(enabled=False))


class CountingReader:
    """A real calibration reader over fixed samples that counts the passes read to the end.

    A pass that stops early (the fidelity check reads a few batches) is not a calibration pass; only
    reaching the end after a rewind is.
    """

    def __init__(self, samples: np.ndarray) -> None:
        self.samples, self.pos, self.full_passes, self._ended = samples, 0, 0, False

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.pos >= len(self.samples):
            if not self._ended:
                self.full_passes += 1
                self._ended = True
            return None
        self.pos += 1
        return {"input": self.samples[self.pos - 1 : self.pos]}

    def rewind(self) -> None:
        self.pos, self._ended = 0, False


def samples(n: int = 40) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((n, 3, RES, RES)).astype(np.float32)


def head_slower_in_int8(plan_nodes):
    """A latency that makes INT8 pay everywhere but the head, so the search returns a non-default plan."""
    return cost_model({n: (1.0, 0.5) for n in plan_nodes} | {"head": (0.2, 0.6)})


def searched_plan(out) -> QuantPlan:
    return QuantPlan.from_dict(json.loads((out / "plan.json").read_text()))


def assert_same_model(searched: Path, core: Path) -> None:
    """The same bytes once the embedded manifests are set aside, and those differ in the search settings alone
    (the searched model records ``search``, the core one ``enabled=False``)."""
    a, b = onnx.load(str(searched)), onnx.load(str(core))
    ma, mb = read_embedded_manifest(a), read_embedded_manifest(b)
    assert ma.step_config["search"]["enabled"] and not mb.step_config["search"]["enabled"]
    without_search = [dataclasses.replace(m, step_config={**m.step_config, "search": None}) for m in (ma, mb)]
    assert without_search[0] == without_search[1]
    for m in (a, b):
        del m.metadata_props[:]
    assert a.SerializeToString() == b.SerializeToString()


def test_quantize_search_model_equals_the_core_quantize_output_with_the_same_plan(artifact, calib_npz, tmp_path):
    lat = head_slower_in_int8(["pw", "q", "k", "v", "proj", "residual"])
    searched = quantize(artifact, SEARCHED, calib=calib_npz, out=tmp_path / "search", latency=lat)
    plan = searched_plan(searched.path)
    assert "head" not in plan.nodes_to_quantize and "head" not in int8_nodes(searched.model_path)  # not the default
    core = quantize(artifact, CORE, calib=calib_npz, out=tmp_path / "core", plan=plan)
    assert_same_model(searched.model_path, core.model_path)
    assert searched.manifest.calibration == core.manifest.calibration and core.manifest.calibration is not None


def test_quantize_search_reads_the_calibration_data_once(artifact, tmp_path):
    reader = CountingReader(samples())
    lat = head_slower_in_int8(["pw", "q", "k", "v", "proj", "residual"])
    searched = quantize(artifact, SEARCHED, calib=reader, out=tmp_path / "search", latency=lat)
    assert reader.full_passes == 1
    # a reader holds nothing out, so the fidelity check reuses calibration samples: still the same bytes
    alone = CountingReader(samples())
    core = quantize(artifact, CORE, calib=alone, out=tmp_path / "core", plan=searched_plan(searched.path))
    assert alone.full_passes == 1
    assert_same_model(searched.model_path, core.model_path)


def test_one_calibration_serves_several_plans_and_is_checked_against_model_and_config(artifact, tmp_path):
    cfg = QuantConfig(calib_size=16, fidelity_samples=4, search=SearchConfig(enabled=False))
    reader = CountingReader(samples(20))
    cal = calibrate(
        artifact.model_path, reader, inputs=artifact.manifest.inputs, preprocessing=None, config=cfg, workdir=tmp_path
    )
    full = quantize(artifact, cfg, calibration=cal, out=tmp_path / "full")
    fewer = QuantPlan.from_dict(json.loads((full.path / "plan.json").read_text())).without(["q", "k"], "test")
    quantize(artifact, cfg, calibration=cal, out=tmp_path / "fewer", plan=fewer)
    assert reader.full_passes == 1
    again = quantize(artifact, cfg, calib=CountingReader(samples(20)), out=tmp_path / "again")
    assert sha256_file(full.model_path) == sha256_file(again.model_path)
    with pytest.raises(ConfigError, match="method differ"):
        quantize(artifact, cfg.replace(method="entropy"), calibration=cal, out=tmp_path / "x")
    with pytest.raises(ConfigError, match="not both"):
        quantize(artifact, cfg, calib=reader, calibration=cal, out=tmp_path / "x")
    with pytest.raises(ConfigError, match="not neither"):
        quantize(artifact, cfg, out=tmp_path / "x")
    assert not (tmp_path / "x").exists()
