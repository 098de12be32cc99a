"""Fuzz the placement-plan reader behind ``quantize --plan FILE`` (``edgeformer/quant/plan.py``: ``load_plan``).

The input is the bytes of a ``plan.json``. Expected: :class:`EdgeformerError` (InvalidInputError naming the
file). Anything else is a finding.
"""

from __future__ import annotations

import contextlib

from _harness import instrumented, json_mutator, main, scratch, write

with instrumented(__name__):
    from edgeformer.errors import EdgeformerError
    from edgeformer.quant.plan import load_plan

NAME = "plan"


def test_one_input(data: bytes) -> None:
    path = write(scratch() / NAME / "plan.json", data)
    with contextlib.suppress(EdgeformerError):
        load_plan(path)


if __name__ == "__main__":
    main(NAME, test_one_input, json_mutator)
