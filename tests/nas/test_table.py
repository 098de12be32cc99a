"""Latency table files and the latency model: exact on an additive truth, refusing what they cannot answer."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from edgeformer.errors import LatencyTableError
from edgeformer.nas import LatencyModel, SearchSpace
from edgeformer.nas.blocks import segments
from edgeformer.nas.fit import fit_correction
from edgeformer.nas.keys import BlockKey
from edgeformer.nas.table import Entry, LatencyTable, open_for_build, read_table, update, write_table
from edgeformer.nas.timing import local_device

from .conftest import some_members, synthetic_table, truth_ms


def test_predictions_are_exact_on_an_additive_truth(tmp_path):
    space = SearchSpace.of("digits_shvit")
    table = synthetic_table(space, const=0.3)
    table = dataclasses.replace(table, correction=fit_correction(table, space))
    write_table(tmp_path / "t.json", table)
    lm = LatencyModel.load(tmp_path / "t.json")
    for arch in some_members(space, 25):
        truth = sum(truth_ms(s.key.id) for s in segments(space.zoo_model, arch, space.input_shape)) + 0.3
        assert lm.predict_ms(arch) == pytest.approx(truth, rel=1e-3)
        b = lm.breakdown(arch)
        assert b.blocks_ms == pytest.approx(sum(r.ms for r in b.rows))
        assert next(r.path for r in b.rows) == "front" and b.correction_ms == pytest.approx(0.3, rel=1e-2)


def test_round_trip_is_strict(tmp_path):
    space = SearchSpace.of("digits_shvit")
    table = synthetic_table(space)
    write_table(tmp_path / "t.json", table)
    assert read_table(tmp_path / "t.json") == table
    raw = json.loads((tmp_path / "t.json").read_text())
    raw["entries"][next(iter(raw["entries"]))]["key"]["surprise"] = 1
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(LatencyTableError, match="surprise"):
        read_table(tmp_path / "bad.json")


def test_a_table_refuses_another_device_naming_both(tmp_path):
    space = SearchSpace.of("digits_shvit")
    here = local_device("ort", 2, "fp32")
    other = dataclasses.replace(here, device_id="0123456789ab", label="Raspberry Pi 5 · 4 cores")
    write_table(tmp_path / "t.json", synthetic_table(space, device=other))
    with pytest.raises(LatencyTableError) as e:
        LatencyModel.load(tmp_path / "t.json", device=here)
    assert "Raspberry Pi 5" in str(e.value) and here.label in str(e.value)
    with pytest.raises(LatencyTableError, match="threads"):
        LatencyModel.load(tmp_path / "t.json", device=dataclasses.replace(other, threads=4))
    assert LatencyModel.load(tmp_path / "t.json", device=other).predict_ms(space.parent) > 0


def test_a_missing_entry_is_an_error_naming_the_block(tmp_path):
    space = SearchSpace.of("digits_shvit")
    table = synthetic_table(space)
    gone = next(s for s in segments(space.zoo_model, space.parent, space.input_shape) if s.path == "stages.2.blocks.0")
    entries = {k: v for k, v in table.entries.items() if k != gone.key.id}
    write_table(tmp_path / "t.json", dataclasses.replace(table, entries=entries))
    with pytest.raises(LatencyTableError) as e:
        LatencyModel.load(tmp_path / "t.json").predict_ms(space.parent)
    assert gone.key.id in str(e.value) and "stages.2.blocks.0" in str(e.value)


def test_another_family_is_refused(tmp_path):
    space = SearchSpace.of("digits_shvit")
    write_table(tmp_path / "t.json", synthetic_table(space))
    with pytest.raises(LatencyTableError, match="cannot predict"):
        LatencyModel.load(tmp_path / "t.json").predict_ms(SearchSpace.of("audioformer_t").parent)


@pytest.mark.parametrize("damage", [b"", b'{"schema": 1, "model": "digits_sh', b"\x00\xff garbage"])
def test_a_corrupt_table_is_quarantined_and_started_over(tmp_path, caplog, damage):
    space = SearchSpace.of("digits_shvit")
    path = tmp_path / "t.json"
    path.write_bytes(damage)
    with pytest.raises(LatencyTableError, match="rebuild"):
        LatencyModel.load(path)
    fresh = dataclasses.replace(synthetic_table(space), entries={}, whole=())
    with caplog.at_level("WARNING"):
        got = open_for_build(path, fresh)
    assert got == fresh and read_table(path) == fresh
    aside = list(tmp_path.glob("t.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == damage
    assert "moved it to" in caplog.text


def _add_entries(path: str, worker: int, n: int) -> None:
    for i in range(n):
        key = BlockKey(kind="block:X", input_shape=(worker, i), signature=f"w{worker}i{i}", params=1)
        entry = Entry(key=key, p50_ms=1.0, noise=0.0, rounds=1, runs=1, witness="x", measured=time.time())
        update(Path(path), lambda t, k=key.id, e=entry: t.with_entries({k: e}))


def test_two_processes_extending_one_table_lose_no_entry(tmp_path):
    path = tmp_path / "t.json"
    base = LatencyTable(
        model="digits_shvit", zoo_model="shvit_s1", width_step=16, device=local_device("ort", 2, "fp32")
    )
    write_table(path, base)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_add_entries, args=(str(path), w, 25)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert len(read_table(path).entries) == 75


@pytest.mark.parametrize("name", ["digits_efficientformerv2", "keywords_audioformer", "digits_shvit"])
def test_an_arch_read_back_from_json_is_the_same_hashable_arch(name):
    from edgeformer.nas.table import arch_dict

    space = SearchSpace.of(name)
    lm = LatencyModel(synthetic_table(space), space)
    for arch in some_members(space, 3):
        back = lm.arch_from_dict(json.loads(json.dumps(arch_dict(arch))))
        assert back == arch and hash(back) == hash(arch) and lm.predict_ms(back) == lm.predict_ms(arch)
