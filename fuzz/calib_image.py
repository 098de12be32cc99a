"""Fuzz the image reader behind image calibration (``edgeformer/data/images.py`` through the calibration source).

The input is one image file (``img.png``; Pillow identifies it by content, whatever the suffix) in a
calibration folder, opened by :func:`open_calibration` for a 16x16 RGB model and read as ``quantize --calib DIR``
does (decode, explicit mode conversion, resize, crop, normalise). Pillow's Python decoders are instrumented
too, so that coverage steers the mutations into its formats. Expected: :class:`EdgeformerError`
(CalibrationError naming the file). Anything else is a finding.
"""

from __future__ import annotations

from _harness import instrumented, main, scratch, write

with instrumented(__name__, "PIL"):
    from edgeformer.errors import EdgeformerError
    from edgeformer.inputs import ImageInput
    from edgeformer.manifest import TensorSpec
    from edgeformer.quant.calibration import open_calibration
    from edgeformer.quant.config import QuantConfig

NAME = "calib_image"
SPEC = ImageInput(resolution=16, crop_pct=1.0)
INPUT = TensorSpec(name="x", shape=SPEC.shape(), dtype="float32")
CONFIG = QuantConfig(calib_size=2, fidelity_samples=1)


def test_one_input(data: bytes) -> None:
    folder = scratch() / NAME
    write(folder / "img.png", data)
    try:
        calib = open_calibration(folder, inputs=[INPUT], preprocessing=SPEC, config=CONFIG)
        while calib.reader.get_next() is not None:
            pass
    except EdgeformerError:
        pass


if __name__ == "__main__":
    main(NAME, test_one_input)
