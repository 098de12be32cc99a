"""The step cache: keys, round trips, LRU eviction, corruption, bounds, env configuration and concurrent writers."""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgeformer import cache as cache_mod
from edgeformer.cache import DEFAULT_MAX_BYTES, StepCache, step_key
from edgeformer.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
PAYLOAD = 10_000  # bytes of model.onnx in every test folder
SLACK = 2_000  # room for index.json and the small side file, which count towards the bound


def key(n: int) -> str:
    return step_key(step="export", input_sha=f"{n:064x}", config={"n": n}, tools={"onnx": "1.17.0"})


def make_src(parent: Path, n: int, size: int = PAYLOAD) -> Path:
    """A step output folder whose content depends only on ``n``, with a nested file and a spaced name."""
    src = parent / f"src {n}"
    (src / "sub dir").mkdir(parents=True)
    (src / "model.onnx").write_bytes(random.Random(n).randbytes(size))
    (src / "sub dir" / "artifact.json").write_text(json.dumps({"n": n}), encoding="utf-8")
    return src


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def stored(cache: StepCache, *ns: int) -> list[bool]:
    """Which of ``ns`` are cached, looked up without get(), which would count as a use."""
    return [(cache.root / "entries" / key(n)[:2] / key(n)).is_dir() for n in ns]


def leftovers(root: Path) -> list[Path]:
    return list((root / "tmp").glob("*"))


@pytest.fixture
def cache(tmp_path: Path) -> StepCache:
    return StepCache(tmp_path / "cäche dir", max_bytes=3 * (PAYLOAD + SLACK))


# --- keys ------------------------------------------------------------------------------------------------------
def test_step_key_is_stable_and_ignores_config_order():
    a = step_key(step="quantize", input_sha="ab" * 32, config={"x": 1, "y": [1, 2]}, tools={"onnx": "1", "ort": "2"})
    b = step_key(step="quantize", input_sha="ab" * 32, config={"y": [1, 2], "x": 1}, tools={"ort": "2", "onnx": "1"})
    assert a == b and len(a) == 64 and int(a, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [{"step": "compile"}, {"input_sha": "cd" * 32}, {"config": {"x": 2}}, {"tools": {"onnx": "1.18.0"}}],
    ids=["step", "input", "config", "tools"],
)
def test_step_key_changes_with_any_part(change):
    base = dict(step="quantize", input_sha="ab" * 32, config={"x": 1}, tools={"onnx": "1.17.0"})
    assert step_key(**base) != step_key(**(base | change))


def test_step_key_refuses_nan_which_has_no_canonical_json():
    with pytest.raises(ValueError):
        step_key(step="s", input_sha="", config={"x": float("nan")}, tools={})


def test_a_key_that_is_not_a_step_key_is_refused(cache):
    with pytest.raises(ValueError, match="64 lowercase hex"):
        cache.get("../../etc")


# --- round trip --------------------------------------------------------------------------------------------------
def test_put_then_get_and_copy_out_reproduce_the_folder(cache, tmp_path):
    src = make_src(tmp_path, 1)
    assert cache.get(key(1)) is None and not cache.copy_out(key(1), tmp_path / "nothing")
    stored = cache.put(key(1), src)
    assert stored is not None and tree(stored) == tree(src)
    assert cache.get(key(1)) == stored
    assert cache.copy_out(key(1), tmp_path / "out ü") and tree(tmp_path / "out ü") == tree(src)
    assert cache.stats().entries == 1 and cache.stats().bytes >= PAYLOAD
    assert leftovers(cache.root) == []


def test_put_of_a_cached_key_keeps_the_existing_entry(cache, tmp_path):
    first = cache.put(key(1), make_src(tmp_path / "a", 1))
    assert cache.put(key(1), make_src(tmp_path / "b", 2)) == first
    assert tree(first) == tree(tmp_path / "a" / "src 1")


def test_put_refuses_a_source_that_is_not_a_folder(cache, tmp_path):
    with pytest.raises(NotADirectoryError):
        cache.put(key(1), tmp_path / "missing")


def test_clear_removes_every_entry(cache, tmp_path):
    for n in range(2):
        cache.put(key(n), make_src(tmp_path, n))
    cache.clear()
    assert cache.stats() == (0, 0) and cache.get(key(0)) is None


# --- bounds and LRU ----------------------------------------------------------------------------------------------
def test_lru_evicts_the_least_recently_used_entry(cache, tmp_path):
    for n in (1, 2, 3):
        cache.put(key(n), make_src(tmp_path, n))
    assert cache.get(key(1)) is not None  # 1 is now more recent than 2 and 3
    cache.put(key(4), make_src(tmp_path, 4))
    assert stored(cache, 1, 2, 3, 4) == [True, False, True, True]
    cache.put(key(5), make_src(tmp_path, 5))
    assert stored(cache, 1, 3, 4, 5) == [True, False, True, True]
    assert cache.stats().bytes <= cache.max_bytes and leftovers(cache.root) == []


def test_entry_larger_than_the_bound_is_not_cached(cache, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="edgeformer.cache"):
        assert cache.put(key(1), make_src(tmp_path, 1, size=cache.max_bytes + 1)) is None
    assert "over the bound" in caplog.text
    assert cache.get(key(1)) is None and cache.stats().entries == 0


def test_a_failed_write_is_logged_and_leaves_no_temp_folder(cache, tmp_path, caplog, monkeypatch):
    real, calls = cache_mod._stream, []

    def disk_fills_on_second_file(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_mod, "_stream", disk_fills_on_second_file)
    with caplog.at_level(logging.WARNING, logger="edgeformer.cache"):
        assert cache.put(key(1), make_src(tmp_path, 1)) is None
    assert "No space left" in caplog.text
    assert leftovers(cache.root) == [] and cache.get(key(1)) is None


def test_stale_temp_folders_of_killed_writers_are_pruned(cache, tmp_path):
    stale, fresh = cache.root / "tmp" / "put-stale", cache.root / "tmp" / "put-fresh"
    for folder in (stale, fresh):
        folder.mkdir(parents=True)
    two_days_ago = time.time() - 2 * 86400
    os.utime(stale, (two_days_ago, two_days_ago))
    cache.put(key(1), make_src(tmp_path, 1))
    assert leftovers(cache.root) == [fresh]


# --- corruption --------------------------------------------------------------------------------------------------
def _truncate(entry: Path) -> None:
    (entry / "files" / "model.onnx").write_bytes((entry / "files" / "model.onnx").read_bytes()[:100])


def _flip_a_byte(entry: Path) -> None:
    data = bytearray((entry / "files" / "model.onnx").read_bytes())
    data[5] ^= 0xFF
    (entry / "files" / "model.onnx").write_bytes(bytes(data))


def _index_escaping(entry: Path) -> None:
    index = json.loads((entry / "index.json").read_text())
    index["files"]["../../../outside"] = index["files"].pop("model.onnx")
    (entry / "index.json").write_text(json.dumps(index))


CORRUPTIONS = {
    "truncated file": _truncate,
    "flipped byte": _flip_a_byte,
    "missing file": lambda e: (e / "files" / "model.onnx").unlink(),
    "missing index": lambda e: (e / "index.json").unlink(),
    "garbage index": lambda e: (e / "index.json").write_bytes(b"\x00\xff not json"),
    "truncated index": lambda e: (e / "index.json").write_text((e / "index.json").read_text()[:40]),
    "index of another schema": lambda e: (e / "index.json").write_text("[1, 2]"),
    "index naming a path outside": _index_escaping,
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupt_entry_is_quarantined_then_rebuilt(cache, tmp_path, caplog, corrupt):
    src = make_src(tmp_path, 1)
    entry = cache.put(key(1), src).parent
    corrupt(entry)
    with caplog.at_level(logging.WARNING, logger="edgeformer.cache"):
        assert cache.get(key(1)) is None
    assert "corrupt" in caplog.text
    assert not entry.exists() and len(list((cache.root / "quarantine").iterdir())) == 1
    assert cache.put(key(1), src) is not None and tree(cache.get(key(1))) == tree(src)


def test_get_without_verify_checks_sizes_but_not_hashes(cache, tmp_path):
    entry = cache.put(key(1), make_src(tmp_path, 1)).parent
    _flip_a_byte(entry)
    assert cache.get(key(1), verify=False) is not None  # the documented price of skipping the hash
    _truncate(entry)
    assert cache.get(key(1), verify=False) is None


def test_copy_out_checks_hashes_and_leaves_nothing_on_a_mismatch(cache, tmp_path):
    _flip_a_byte(cache.put(key(1), make_src(tmp_path, 1)).parent)
    dest = tmp_path / "dest"
    assert not cache.copy_out(key(1), dest)
    assert not [p for p in dest.rglob("*") if p.is_file()]
    assert len(list((cache.root / "quarantine").iterdir())) == 1


def test_quarantine_keeps_only_the_newest_entries(cache, tmp_path):
    for i in range(8):
        (cache.root / "quarantine" / f"{i:04d}-x").mkdir(parents=True)
    cache.put(key(1), make_src(tmp_path, 1))
    assert sorted(p.name for p in (cache.root / "quarantine").iterdir()) == [f"{i:04d}-x" for i in range(3, 8)]


# --- configuration from the environment --------------------------------------------------------------------------
@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("EDGEFORMER_NO_CACHE", "EDGEFORMER_CACHE_DIR", "EDGEFORMER_CACHE_MAX_BYTES", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_default_cache_lives_under_the_xdg_cache_home(clean_env, tmp_path):
    assert StepCache.default().root == tmp_path / "home" / ".cache" / "edgeformer" / "steps"
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert StepCache.default().root == tmp_path / "xdg" / "edgeformer" / "steps"
    clean_env.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    assert StepCache.default().root == tmp_path / "home" / ".cache" / "edgeformer" / "steps"
    clean_env.setenv("EDGEFORMER_CACHE_DIR", str(tmp_path / "mine"))
    assert StepCache.default().root == tmp_path / "mine"


def test_default_bound_is_5_gib_unless_overridden(clean_env):
    assert StepCache.default().max_bytes == DEFAULT_MAX_BYTES == 5 * 2**30
    clean_env.setenv("EDGEFORMER_CACHE_MAX_BYTES", "1000")
    assert StepCache.default().max_bytes == 1000
    clean_env.setenv("EDGEFORMER_CACHE_MAX_BYTES", "5G")
    with pytest.raises(ConfigError, match="EDGEFORMER_CACHE_MAX_BYTES"):
        StepCache.default()


@pytest.mark.parametrize(("value", "enabled"), [("1", False), ("yes", False), ("0", True), ("", True)])
def test_no_cache_env_disables_the_default_cache(clean_env, value, enabled):
    clean_env.setenv("EDGEFORMER_NO_CACHE", value)
    assert (StepCache.default() is not None) == enabled


# --- concurrency -------------------------------------------------------------------------------------------------
_WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from edgeformer.cache import StepCache

    root, max_bytes, key, src, work = sys.argv[1:]
    work = Path(work)
    (work / "ready").touch()
    for _ in range(3000):  # start together: wait for the parent's go file, but not forever
        if (work.parent / "go").exists():
            break
        time.sleep(0.005)
    cache = StepCache(root, int(max_bytes))
    put = cache.put(key, Path(src))
    copied = cache.copy_out(key, work / "dest")
    (work / "result.json").write_text(json.dumps({"put": put is not None, "copied": copied}))
    """
)


@pytest.mark.parametrize(
    ("scenario", "bound_entries"), [("distinct keys", 100), ("same key", 100), ("distinct keys, evicting", 3)]
)
def test_eight_concurrent_writers_leave_no_torn_lost_or_temp_entries(tmp_path, scenario, bound_entries):
    root, max_bytes, n_procs = tmp_path / "shared cache", bound_entries * (PAYLOAD + SLACK), 8
    ids = [0] * n_procs if scenario == "same key" else list(range(n_procs))
    procs, works = [], []
    for i, n in enumerate(ids):
        work = tmp_path / "workers" / str(i)
        work.mkdir(parents=True)
        src = make_src(work, n)
        argv = [sys.executable, "-c", _WORKER, str(root), str(max_bytes), key(n), str(src), str(work)]
        procs.append(subprocess.Popen(argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}))
        works.append(work)
    for _ in range(1200):  # all interpreters up before any writes, so the puts overlap
        if all((w / "ready").exists() for w in works):
            break
        time.sleep(0.05)
    (tmp_path / "workers" / "go").touch()
    assert [p.wait(timeout=120) for p in procs] == [0] * n_procs

    results = [json.loads((w / "result.json").read_text()) for w in works]
    assert all(r["put"] for r in results)
    for work, n, r in zip(works, ids, results, strict=True):  # whatever a writer copied out is whole and right
        if r["copied"]:
            assert tree(work / "dest") == tree(work / f"src {n}")
    cache = StepCache(root, max_bytes)
    survivors = [n for n in sorted(set(ids)) if cache.get(key(n)) is not None]  # get verifies every hash
    assert not (root / "quarantine").exists(), "a surviving entry was torn"
    assert leftovers(root) == []
    assert cache.stats().entries == len(survivors) and cache.stats().bytes <= max_bytes
    if scenario == "distinct keys, evicting":
        assert 1 <= len(survivors) <= bound_entries
    else:  # nothing lost, and every same-key writer got the one valid entry
        assert survivors == sorted(set(ids)) and all(r["copied"] for r in results)
