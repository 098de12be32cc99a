"""run_step: the one step shape (output checks, atomic writer, fidelity gate) and its content-addressed cache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgeformer.artifact import Artifact
from edgeformer.cache import StepCache
from edgeformer.errors import OutputExistsError, QualityGateError
from edgeformer.manifest import Manifest
from edgeformer.steps import StepSpec, artifact_sha, data_fingerprint, export_input_sha, run_step

ROOT = Path(__file__).resolve().parents[1]


class Builder:
    """A step's build function that writes a small model file and counts how often it really ran."""

    def __init__(self, payload: bytes = b"weights", fail: Exception | None = None) -> None:
        self.payload, self.fail, self.calls = payload, fail, 0

    def __call__(self, folder: Path) -> Manifest:
        self.calls += 1
        (folder / "model.bin").write_bytes(self.payload)
        (folder / "sub").mkdir()
        (folder / "sub" / "data.bin").write_bytes(self.payload[::-1])
        if self.fail is not None:
            raise self.fail
        return Manifest(format="onnx", precision="int8", model_name="m", main_file="model.bin", step="quantize")


SPEC = StepSpec(step="quantize", input_sha="a" * 64, config={"method": "minmax", "calib": "dir:1234"})


@pytest.fixture
def cache(tmp_path):
    return StepCache(tmp_path / "cache", max_bytes=1 << 20)


def test_the_same_step_again_comes_from_the_cache_byte_for_byte(tmp_path, cache):
    build = Builder()
    first = run_step(SPEC, build, out=tmp_path / "a", cache=cache)
    second = run_step(SPEC, build, out=tmp_path / "b", cache=cache)
    assert build.calls == 1
    assert (tmp_path / "b" / "artifact.json").read_bytes() == (tmp_path / "a" / "artifact.json").read_bytes()
    assert (second.path / "sub" / "data.bin").read_bytes() == b"sthgiew"
    assert Artifact.load(second.path).manifest == first.manifest  # hashes verified on load


@pytest.mark.parametrize(
    "other",
    [
        StepSpec(step="quantize", input_sha="b" * 64, config=SPEC.config),
        StepSpec(step="quantize", input_sha=SPEC.input_sha, config={**SPEC.config, "method": "entropy"}),
        StepSpec(step="compile:ort", input_sha=SPEC.input_sha, config=SPEC.config),
    ],
)
def test_another_input_config_or_step_is_recomputed(tmp_path, cache, other):
    build = Builder()
    run_step(SPEC, build, out=tmp_path / "a", cache=cache)
    run_step(other, build, out=tmp_path / "b", cache=cache)
    assert build.calls == 2


def test_no_fingerprint_or_no_cache_means_no_caching(tmp_path, cache):
    build = Builder()
    unkeyed = StepSpec(step="export:onnx", input_sha=None, config={})
    run_step(unkeyed, build, out=tmp_path / "a", cache=cache)
    run_step(unkeyed, build, out=tmp_path / "b", cache=cache)
    run_step(SPEC, build, out=tmp_path / "c", cache=None)
    run_step(SPEC, build, out=tmp_path / "d", cache=None)
    assert build.calls == 4 and cache.stats().entries == 0


def test_a_failed_gate_writes_nothing_and_keeps_the_previous_artifact(tmp_path, cache):
    good = run_step(SPEC, Builder(b"good"), out=tmp_path / "a", cache=None)
    before = (good.path / "artifact.json").read_bytes()
    bad = Builder(b"bad", fail=QualityGateError("worst cosine 0.91 < 0.999"))
    with pytest.raises(QualityGateError):
        run_step(SPEC, bad, out=tmp_path / "a", overwrite=True, cache=cache)
    assert (good.path / "artifact.json").read_bytes() == before and (good.path / "model.bin").read_bytes() == b"good"
    assert cache.stats().entries == 0 and not [p for p in tmp_path.iterdir() if p.name.startswith(".a.tmp")]


def test_an_existing_output_is_refused_before_any_work(tmp_path, cache):
    run_step(SPEC, Builder(), out=tmp_path / "a", cache=cache)
    build = Builder()
    with pytest.raises(OutputExistsError):
        run_step(SPEC, build, out=tmp_path / "a", cache=cache)
    with pytest.raises(OutputExistsError):  # the output may not be an input either
        run_step(SPEC, build, out=tmp_path / "a", guard=[tmp_path / "a" / "model.bin"], overwrite=True, cache=cache)
    assert build.calls == 0


def test_a_corrupt_cache_entry_is_quarantined_and_the_step_recomputes(tmp_path, cache):
    build = Builder()
    run_step(SPEC, build, out=tmp_path / "a", cache=cache)
    entry = next((cache.root / "entries").rglob("model.bin"))
    entry.write_bytes(b"torn")  # same length as nothing else: the hash catches it
    again = run_step(SPEC, build, out=tmp_path / "b", cache=cache)
    assert build.calls == 2 and (again.path / "model.bin").read_bytes() == b"weights"
    assert list((cache.root / "quarantine").iterdir())
    run_step(SPEC, build, out=tmp_path / "c", cache=cache)  # rebuilt entry serves again
    assert build.calls == 2


def test_the_cache_can_be_turned_off_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFORMER_CACHE_DIR", str(tmp_path / "envcache"))
    build = Builder()
    run_step(SPEC, build, out=tmp_path / "a")
    run_step(SPEC, build, out=tmp_path / "b")
    assert build.calls == 1
    monkeypatch.setenv("EDGEFORMER_NO_CACHE", "1")
    run_step(SPEC, build, out=tmp_path / "c")
    assert build.calls == 2


def test_eight_processes_running_the_same_step_at_once_all_get_a_whole_artifact(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from test_steps import SPEC, Builder
        from edgeformer.cache import StepCache
        from edgeformer.steps import run_step
        i = int(sys.argv[1])
        art = run_step(SPEC, Builder(), out=Path({str(tmp_path)!r}) / f"out{{i}}",
                       cache=StepCache(Path({str(tmp_path)!r}) / "cache", max_bytes=1 << 20))
        print(art.manifest.files["model.bin"])
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(i)], stdout=subprocess.PIPE, text=True, env=env)
        for i in range(8)
    ]
    digests = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs) and len(digests) == 1
    for i in range(8):
        Artifact.load(tmp_path / f"out{i}")  # every copy verifies
    cache = StepCache(tmp_path / "cache", max_bytes=1 << 20)
    assert cache.stats().entries == 1 and not list((cache.root / "tmp").iterdir())


def test_fingerprints_follow_the_data(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"1")
    first = data_fingerprint(folder)
    assert data_fingerprint(str(folder)) == first and first.startswith("dir:")
    (folder / "b.png").write_bytes(b"2")
    assert data_fingerprint(folder) != first
    arr = tmp_path / "x.npz"
    arr.write_bytes(b"npz")
    assert data_fingerprint(arr).startswith("file:") and data_fingerprint("synthetic") == "synthetic"
    assert data_fingerprint(object()) is None and data_fingerprint(tmp_path / "nope") != data_fingerprint(folder)


def test_artifact_sha_covers_every_file(tmp_path):
    one = run_step(SPEC, Builder(b"x"), out=tmp_path / "a", cache=None)
    two = run_step(SPEC, Builder(b"y"), out=tmp_path / "b", cache=None)
    assert artifact_sha(one) != artifact_sha(two) and len(artifact_sha(one)) == 64


def test_artifact_sha_covers_what_the_manifest_describes_but_not_when_it_was_written(tmp_path):
    import dataclasses

    one = run_step(SPEC, Builder(b"x"), out=tmp_path / "a", cache=None)
    relabelled = Artifact(one.path, dataclasses.replace(one.manifest, labels=("cat", "dog")))
    later = Artifact(one.path, dataclasses.replace(one.manifest, created="2031-01-01T00:00:00+00:00"))
    assert artifact_sha(relabelled) != artifact_sha(one) == artifact_sha(later)


def test_an_export_is_keyed_by_zoo_name_weights_and_overrides_and_a_module_not_at_all(tmp_path):
    ckpt = tmp_path / "w.safetensors"
    ckpt.write_bytes(b"weights")
    base = export_input_sha("shvit_s1", None, {})
    assert base is not None and base == export_input_sha("shvit_s1", None, {})
    assert (
        len(
            {
                base,
                export_input_sha("shvit_s2", None, {}),
                export_input_sha("shvit_s1", ckpt, {}),
                export_input_sha("shvit_s1", None, {"num_classes": 10}),
            }
        )
        == 4
    )
    as_tuple, as_list = ({"depths": (1, 2)}, {"depths": [1, 2]})
    assert export_input_sha("shvit_s1", None, as_tuple) == export_input_sha("shvit_s1", None, as_list)
    # a trained reference model brings its weights: their sha256 keys it as a checkpoint's would
    assert export_input_sha("digits_shvit", None, {}, weights="a" * 64) != export_input_sha("digits_shvit", None, {})
    assert export_input_sha(object(), None, {}) is None  # a module has no fingerprint
    assert export_input_sha("shvit_s1", tmp_path / "missing.pt", {}) is None  # the export reports it
