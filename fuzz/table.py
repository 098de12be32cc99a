"""Fuzz the latency-table loader (``edgeformer/nas/table.py``: ``read_table``, ``LatencyTable.from_dict``).

The input is the bytes of a table file, opened as ``edgeformer slim --table`` and ``latency validate`` open one:
:meth:`LatencyModel.load` (strict parse, then the table's search space). Expected: :class:`EdgeformerError`
(LatencyTableError saying to rebuild, a usage error for an unknown model). Anything else is a finding.
"""

from __future__ import annotations

import contextlib

from _harness import instrumented, json_mutator, main, scratch, write

with instrumented(__name__):
    from edgeformer.errors import EdgeformerError
    from edgeformer.nas.model import LatencyModel

NAME = "table"


def test_one_input(data: bytes) -> None:
    path = write(scratch() / NAME / "table.json", data)
    with contextlib.suppress(EdgeformerError):
        LatencyModel.load(path)


if __name__ == "__main__":
    main(NAME, test_one_input, json_mutator)
