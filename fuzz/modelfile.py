"""Fuzz model-file sniffing, the ONNX loader and its external-data checks (``edgeformer/modelfile.py``).

The input is the bytes of ``model.onnx``, loaded as a bare model file the way ``Artifact.load`` and every
command do (:func:`manifest_for_bare_file`: sniff by content, parse, versions, external data, full checker,
embedded manifest). Beside it lie what a fuzzed external-data location can name: ``weights.bin`` (the data the
seeds point at), a folder, a symlink and a hard-linked file, and outside the folder a file that ``../`` reaches.
Expected: :class:`EdgeformerError` (ModelFileError, UnsafeInputError). Anything else is a finding.
"""

from __future__ import annotations

import os

from _harness import instrumented, main, scratch, write

with instrumented(__name__):
    from edgeformer.errors import EdgeformerError
    from edgeformer.modelfile import manifest_for_bare_file, sniff

NAME = "modelfile"
WEIGHTS = bytes(range(256))  # 64 float32s; the external-data seeds point at it


def _folder():
    root = scratch() / NAME
    model_dir = root / "model"
    if not model_dir.is_dir():
        write(root / "outside.bin", WEIGHTS)
        write(model_dir / "weights.bin", WEIGHTS)
        write(model_dir / "sub" / "weights.bin", WEIGHTS)
        os.symlink("weights.bin", model_dir / "link.bin")
        write(model_dir / "hard.bin", WEIGHTS)
        os.link(model_dir / "hard.bin", root / "hard-twin.bin")
    return model_dir


def test_one_input(data: bytes) -> None:
    path = write(_folder() / "model.onnx", data)
    try:
        sniff(path)
        manifest_for_bare_file(path)
    except EdgeformerError:
        pass


if __name__ == "__main__":
    main(NAME, test_one_input)
