"""Fuzz the typed records' strict reader, ``Record.from_json`` / ``from_dict`` (``edgeformer/records.py``), on
every record class of edgeformer.

The input is ``<record name>\\n<JSON text>``; the name (``manifest.Manifest``, ``nas.table.LatencyTable``: the
module under ``edgeformer`` and the class) picks the record among :data:`RECORDS`, every :class:`Record`
subclass found in the modules of :data:`MODULES`. Expected: :class:`EdgeformerError` (ConfigError naming the
path). A record that does read must also survive its own round trip: written with ``to_json`` and read back, it
writes the same JSON again. Anything else is a finding.
"""

from __future__ import annotations

import importlib
import json

from _harness import instrumented, json_mutator, main

MODULES = (
    "agent.fleet",
    "agent.server",
    "agent.wire",
    "compare",
    "compile.openvino",
    "compile.ort_optimize",
    "compile.tensorrt",
    "doctor",
    "export.coreml",
    "inputs",
    "manifest",
    "nas.keys",
    "nas.model",
    "nas.search",
    "nas.slim",
    "nas.table",
    "nas.validate",
    "profiling.device",
    "profiling.harness",
    "profiling.interleave",
    "profiling.per_op",
    "profiling.profile",
    "profiling.side_by_side",
    "quant.plan",
    "quant.timing",
)

with instrumented(__name__):
    from edgeformer.errors import EdgeformerError
    from edgeformer.records import Record

    for _module in MODULES:
        importlib.import_module(f"edgeformer.{_module}")

NAME = "records"


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


RECORDS: dict[str, type[Record]] = {
    f"{c.__module__.removeprefix('edgeformer.')}.{c.__qualname__}": c
    for c in _subclasses(Record)
    if c.__module__.removeprefix("edgeformer.") in MODULES
}


def test_one_input(data: bytes) -> None:
    name, _, body = data.partition(b"\n")
    cls = RECORDS.get(name.decode("latin-1"))
    if cls is None:
        return
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return  # every reader decodes its file first and reports bad UTF-8 itself
    try:
        record = cls.from_json(text, where="fuzz.json")
    except EdgeformerError:
        return
    written = record.to_json()
    again = cls.from_dict(json.loads(written), where="round trip").to_json()
    if again != written:
        raise AssertionError(f"{cls.__name__} does not survive its round trip:\n{written}\n!=\n{again}")


if __name__ == "__main__":
    main(NAME, test_one_input, json_mutator)
