"""Fuzz the array-file reader of ``edgeformer predict`` (``edgeformer/runtimes/arrays.py``: ``read_array_file``).

The first byte picks the file (even: ``input.npy``, odd: ``input.npz``) and whether an input name is asked for
(bit 1: ``x``), the rest is the file, read as ``predict MODEL input.npz`` reads it. Expected:
:class:`EdgeformerError` (InvalidInputError naming the file). Anything else is a finding. The seeds are those of
``calib_arrays``, whose first byte means the same.
"""

from __future__ import annotations

import numpy as np
from _harness import instrumented, main, scratch, write

with instrumented(__name__, "numpy.lib.format", "numpy.lib._npyio_impl", "zipfile"):
    from edgeformer.errors import EdgeformerError
    from edgeformer.runtimes.arrays import read_array_file

NAME = "predict_arrays"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    path = write(scratch() / NAME / ("input.npz" if data[0] & 1 else "input.npy"), data[1:])
    try:
        array = read_array_file(path, "x" if data[0] & 2 else None)
    except EdgeformerError:
        return
    if not isinstance(array, np.ndarray):  # predict feeds it to the model next
        raise TypeError(f"read_array_file returned a {type(array).__name__}, not an array")


if __name__ == "__main__":
    main(NAME, test_one_input)
