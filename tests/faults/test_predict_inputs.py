"""`edgeformer predict` given array files: every unusable one is exit 3 naming the file, never a traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli.conftest import assert_one_line_error, cli  # tests/ is on sys.path

from edgeformer.errors import InvalidInputError
from edgeformer.runtimes.arrays import read_array_file

GOOD = np.zeros((3, 16, 16), np.float32)


def _write(path, kind):
    if kind == "missing":
        return
    if kind == "truncated_npy":
        np.save(path, GOOD)
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "truncated_npz":
        np.savez(path, x=GOOD)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "pickled_npy":
        np.save(path, np.array([{"payload": 1}], dtype=object), allow_pickle=True)
    elif kind == "pickled_npz":
        np.savez(path, x=np.array([{"payload": 1}], dtype=object))
    elif kind == "not_numpy":
        path.write_bytes(b"hello, not an array")
    elif kind == "two_arrays_npz":
        np.savez(path, a=GOOD, b=GOOD)


@pytest.mark.parametrize(
    ("kind", "suffix", "needle"),
    [
        ("missing", ".npy", "does not exist"),
        ("truncated_npy", ".npy", "truncated"),
        ("truncated_npz", ".npz", "truncated"),
        ("pickled_npy", ".npy", "pickled object array"),
        ("pickled_npz", ".npz", "pickled object array"),
        ("not_numpy", ".npy", "not a numpy array file"),
        ("two_arrays_npz", ".npz", "holds 2 arrays"),
    ],
)
def test_unusable_array_file_is_exit_3_naming_the_file(tiny_artifact, tmp_path, kind, suffix, needle):
    path = tmp_path / f"in put {kind}{suffix}"
    _write(path, kind)
    proc = cli("predict", str(tiny_artifact), str(path), "-k", "1")
    assert_one_line_error(proc, 3, str(path))
    assert needle in proc.stderr.splitlines()[0]


def test_wrong_shape_array_is_exit_3_naming_the_file_among_several(tiny_artifact, tmp_path):
    good, wrong = tmp_path / "good.npy", tmp_path / "wrong.npy"
    np.save(good, GOOD)
    np.save(wrong, np.zeros((3, 32, 32), np.float32))
    proc = cli("predict", str(tiny_artifact), str(good), str(wrong), "-k", "1")
    assert_one_line_error(proc, 3, f"{wrong}: ")
    assert "dim 2 is 32, expected 16" in proc.stderr  # the table of expected vs given follows


def test_pickled_array_is_never_unpickled(tmp_path):
    # a pickle whose loading would create a file: refusing it must run nothing
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.npy"
    np.save(path, np.array([Payload()], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInputError, match="pickled object array"):
        read_array_file(path)
    assert not marker.exists()


def test_npz_with_one_array_or_one_named_like_the_input_is_read(tiny_artifact, tmp_path):
    one, named = tmp_path / "one.npz", tmp_path / "named.npz"
    np.savez(one, whatever=GOOD)
    np.savez(named, input=GOOD, other=np.ones(2))
    proc = cli("predict", str(tiny_artifact), str(one), str(named), "-k", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)) == {str(one), str(named)}
