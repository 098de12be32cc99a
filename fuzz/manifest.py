"""Fuzz manifest loading: ``artifact.json`` read by ``Artifact.load`` (``edgeformer/artifact.py``,
``edgeformer/manifest.py``).

The input is the bytes of ``artifact.json`` in a folder that also holds a real model (the tiny image
classifier of ``tests/fixtures``), loaded with hash verification as every command loads an artifact folder:
JSON, schema upgrade (v1), typed records, input specs, then every listed file checked against its sha256.
Expected: :class:`EdgeformerError` (ModelFileError, InvalidInputError). Anything else is a finding.
"""

from __future__ import annotations

import contextlib

from _harness import FUZZ_DIR, instrumented, json_mutator, main, scratch, write

with instrumented(__name__):
    from edgeformer.artifact import Artifact
    from edgeformer.errors import EdgeformerError

NAME = "manifest"
MODEL = FUZZ_DIR.parent / "tests" / "fixtures" / "tiny_image_artifact" / "model.onnx"


def test_one_input(data: bytes) -> None:
    folder = scratch() / NAME
    if not (folder / "model.onnx").is_file():
        write(folder / "model.onnx", MODEL.read_bytes())
    write(folder / "artifact.json", data)
    with contextlib.suppress(EdgeformerError):
        Artifact.load(folder)


if __name__ == "__main__":
    main(NAME, test_one_input, json_mutator)
