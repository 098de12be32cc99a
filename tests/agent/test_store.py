"""The agent's model store on a real folder: content addressing, the limits, LRU eviction, pins, recovery."""

from __future__ import annotations

import hashlib
import os

import pytest

from edgeformer.agent.store import ModelStore, StoreError
from edgeformer.errors import ConfigError

from .conftest import store_files


def put(store: ModelStore, data: bytes, sha: str | None = None):
    with store.upload() as up:
        for i in range(0, len(data), 7):
            up.write(data[i : i + 7])
        return up.commit(sha or hashlib.sha256(data).hexdigest())


def blob(i: int, size: int = 100) -> bytes:
    return bytes([i]) * size


def test_a_file_is_stored_under_its_sha256_and_only_complete(tmp_path):
    store = ModelStore(tmp_path, cap_bytes=1000, max_upload_bytes=200)
    stored = put(store, blob(1))
    assert stored.created and stored.size == 100
    assert (tmp_path / "blobs" / stored.sha).read_bytes() == blob(1)
    assert not put(store, blob(1)).created  # the same bytes again: nothing new
    assert store_files(tmp_path) == {"blobs": [stored.sha], "tmp": [], "jobs": []}


def test_a_wrong_sha_or_an_oversized_upload_writes_nothing(tmp_path):
    store = ModelStore(tmp_path, cap_bytes=1000, max_upload_bytes=200)
    with pytest.raises(StoreError, match="not 0000") as e:
        put(store, blob(1), sha="0" * 64)
    assert e.value.status == 422
    with pytest.raises(StoreError, match="limit of 200 bytes") as e:
        put(store, blob(2, 201))
    assert e.value.status == 413
    assert store_files(tmp_path) == {"blobs": [], "tmp": [], "jobs": []}


def test_the_least_recently_used_files_are_evicted_to_stay_under_the_cap(tmp_path):
    store = ModelStore(tmp_path, cap_bytes=300, max_upload_bytes=200)
    a, b, c = (put(store, blob(i)).sha for i in range(3))
    assert store.pin([a]) == []  # a job used a: now b is the least recently used
    store.unpin([a])
    d = put(store, blob(3)).sha
    assert store.get(b) is None and all(store.get(s) for s in (a, c, d))
    assert store.info().bytes == 300 and sorted(store_files(tmp_path)["blobs"]) == sorted([a, c, d])


def test_pinned_files_are_never_evicted_and_a_full_store_is_507(tmp_path):
    store = ModelStore(tmp_path, cap_bytes=200, max_upload_bytes=200)
    a, b = put(store, blob(1)).sha, put(store, blob(2)).sha
    store.pin([a, b])
    with pytest.raises(StoreError, match="held by queued or running jobs") as e:
        put(store, blob(3))
    assert e.value.status == 507 and store.get(a) and store.get(b)
    store.unpin([a, b])
    put(store, blob(3))
    assert store.get(a) is None  # the older one went first
    with pytest.raises(StoreError, match="more than the whole store holds"):
        ModelStore(tmp_path / "small", cap_bytes=50, max_upload_bytes=50)._evict_for(60)


def test_use_order_survives_a_restart_and_leftovers_are_cleared(tmp_path):
    store = ModelStore(tmp_path, cap_bytes=300, max_upload_bytes=200)
    shas = [put(store, blob(i)).sha for i in range(3)]
    for i, sha in enumerate(shas):  # the blobs' mtimes are their last use
        os.utime(tmp_path / "blobs" / sha, ns=(10**18 + i, 10**18 + (2 - i) * 10**9))
    (tmp_path / "tmp" / "up-killed").write_bytes(b"half")
    (tmp_path / "jobs" / ("0" * 32)).mkdir()
    (tmp_path / "blobs" / "not-a-sha").write_bytes(b"junk")
    store.close()
    store = ModelStore(tmp_path, cap_bytes=300, max_upload_bytes=200)
    assert store_files(tmp_path) == {"blobs": sorted(shas), "tmp": [], "jobs": []}
    put(store, blob(9))
    assert store.get(shas[2]) is None  # the oldest mtime is evicted first


def test_a_damaged_blob_is_dropped_when_a_job_asks_for_it(tmp_path):
    store = ModelStore(tmp_path, cap_bytes=300, max_upload_bytes=200)
    sha = put(store, blob(1)).sha
    (tmp_path / "blobs" / sha).write_bytes(b"flipped")
    store.close()
    store = ModelStore(tmp_path, cap_bytes=300, max_upload_bytes=200)  # hashes are checked after a restart
    assert store.pin([sha]) == [sha] and store.get(sha) is None
    assert store_files(tmp_path)["blobs"] == []


def test_a_jobs_folder_links_the_blobs_under_their_names(tmp_path):
    store = ModelStore(tmp_path, cap_bytes=300, max_upload_bytes=200)
    sha = put(store, blob(1)).sha
    folder = store.materialize("a" * 32, {"model.onnx": sha, "weights/w.bin": sha})
    assert (folder / "weights" / "w.bin").read_bytes() == blob(1)
    with pytest.raises(StoreError, match="not allowed"):
        store.materialize("b" * 32, {"../escape": sha})
    store.release(folder)
    assert not folder.exists()


def test_one_store_folder_serves_one_agent_at_a_time(tmp_path):
    store = ModelStore(tmp_path, cap_bytes=300, max_upload_bytes=200)
    with pytest.raises(ConfigError, match="another agent is using the store"):
        ModelStore(tmp_path, cap_bytes=300, max_upload_bytes=200)
    store.close()
    ModelStore(tmp_path, cap_bytes=300, max_upload_bytes=200).close()
