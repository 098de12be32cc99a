"""Real latency-table builds on a tiny search space: every block timed on ORT, resumable, int8 through quantize."""

from __future__ import annotations

import pytest

from edgeformer.errors import ConfigError, LatencyTableError
from edgeformer.nas import LatencyModel, build_table, read_table
from edgeformer.nas.build import table_keys
from edgeformer.nas.table import write_table

from .conftest import FAST, some_members


class Stop(Exception):
    pass


def test_build_times_every_block_and_resumes_after_an_interruption(tiny_space, tmp_path):
    path = tmp_path / "t.json"
    keys = table_keys(tiny_space)
    seen = []

    def stop_after_first_batch(done, total, what):
        seen.append((done, total))
        if len(seen) == 2:  # the first call announces the work, the second follows the first timed batch
            raise Stop

    with pytest.raises(Stop):
        build_table(tiny_space, threads=1, out=path, whole_models=4, timing=FAST, progress=stop_after_first_batch)
    partial = read_table(path)
    assert 0 < len(partial.entries) < len(keys) and partial.correction is None
    first = {k: e.measured for k, e in partial.entries.items()}

    progress = []
    table = build_table(
        tiny_space, threads=1, out=path, whole_models=4, timing=FAST, progress=lambda d, t, w: progress.append((d, t))
    )
    assert progress[0][0] == len(first)  # resumed: what was measured is not measured again
    assert set(table.entries) == set(keys) and table.complete
    assert all(table.entries[k].measured == m for k, m in first.items())
    assert len(table.whole) == 4 and table.correction is not None
    assert "4 whole models" in table.correction.fitted_on
    assert all(e.p50_ms > 0 for e in table.entries.values())
    assert table.device.options == ("allow_spinning=0",) and table.device.threads == 1

    lm = LatencyModel.load(path)
    for arch in some_members(tiny_space, 5):
        b = lm.breakdown(arch)
        assert b.total_ms > 0 and len(b.rows) >= 5

    again = build_table(tiny_space, threads=1, out=path, whole_models=4, timing=FAST)
    assert again.entries == table.entries  # nothing left to measure


def test_int8_blocks_go_through_the_quantizer(tiny_space, tmp_path):
    path = tmp_path / "q.json"
    table = build_table(tiny_space, precision="int8", threads=1, out=path, whole_models=3, timing=FAST)
    assert table.device.precision == "int8" and table.complete
    fp32 = read_table(path)
    with pytest.raises(LatencyTableError, match="precision"):
        build_table(tiny_space, precision="fp32", threads=1, out=path, whole_models=3, timing=FAST)
    assert read_table(path) == fp32  # the refused build left the table alone


def test_bad_settings_are_usage_errors(tiny_space, tmp_path):
    for kw, needle in (
        ({"backend": "tflite"}, "ort, openvino"),
        ({"precision": "fp8"}, "fp32, int8"),
        ({"threads": 0}, "threads"),
        ({"device": "ssh://pi"}, "device"),
    ):
        with pytest.raises(ConfigError, match=needle):
            build_table(tiny_space, out=tmp_path / "x.json", **kw)
    assert not (tmp_path / "x.json").exists()


def test_a_table_of_another_model_is_not_extended(tiny_space, tmp_path):
    from edgeformer.nas import SearchSpace

    from .conftest import synthetic_table

    other = synthetic_table(SearchSpace.of("keywords_audioformer"))
    write_table(tmp_path / "t.json", other)
    with pytest.raises(LatencyTableError, match="keywords_audioformer"):
        build_table(tiny_space, threads=2, out=tmp_path / "t.json", timing=FAST)


@pytest.mark.parametrize("backend", ["tensorrt", "coreml"])
def test_a_backend_that_cannot_run_here_is_refused_with_the_reason(tiny_space, tmp_path, backend):
    from edgeformer.errors import BackendUnavailableError
    from edgeformer.nas.artifacts import backend_unavailable

    why = backend_unavailable(backend)
    if why is None:
        pytest.skip(f"{backend} runs on this machine")
    with pytest.raises(BackendUnavailableError, match=f"cannot build a {backend} latency table here"):
        build_table(tiny_space, backend=backend, out=tmp_path / "t.json", timing=FAST)
    assert not (tmp_path / "t.json").exists()


def test_shards_split_one_table_and_the_fit_waits_for_all_of_them(tiny_space, tmp_path):
    from edgeformer.nas.build import fit_table

    path = tmp_path / "t.json"
    keys = list(table_keys(tiny_space))
    first = build_table(tiny_space, threads=1, out=path, whole_models=4, timing=FAST, shard=(0, 2))
    assert set(first.entries) == set(keys[0::2]) and len(first.whole) == 2 and first.correction is None
    with pytest.raises(LatencyTableError, match=f"lacks {len(keys[1::2])} of {len(keys)} blocks"):
        fit_table(path, tiny_space)
    second = build_table(tiny_space, threads=1, out=path, whole_models=4, timing=FAST, shard=(1, 2))
    assert set(second.entries) == set(keys) and len(second.whole) == 4 and second.correction is None
    assert {k: e.p50_ms for k, e in second.entries.items() if k in first.entries} == {
        k: e.p50_ms for k, e in first.entries.items()
    }  # the second shard timed only its own blocks
    fitted = fit_table(path, tiny_space)
    assert fitted.complete and fitted.correction is not None and read_table(path).correction == fitted.correction
    with pytest.raises(ConfigError, match="I/N with 0 <= I < N, got 2/2"):
        build_table(tiny_space, threads=1, out=path, timing=FAST, shard=(2, 2))
