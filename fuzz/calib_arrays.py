"""Fuzz the calibration array reader: ``.npy`` / ``.npz`` files (``edgeformer/quant/calibration.py``).

The first byte picks the file name (even: ``calib.npy`` for a one-input model, odd: ``calib.npz`` for a model
with inputs ``x`` and ``y``), the rest is the file. It goes through :func:`open_calibration` as ``quantize
--calib FILE`` does, then every batch and held-out sample is read. Expected: :class:`EdgeformerError`
(CalibrationError naming the file). Anything else is a finding.
"""

from __future__ import annotations

import contextlib

from _harness import instrumented, main, scratch, write

with instrumented(__name__, "numpy.lib.format", "numpy.lib._npyio_impl", "zipfile"):
    from edgeformer.errors import EdgeformerError
    from edgeformer.manifest import TensorSpec
    from edgeformer.quant.calibration import open_calibration
    from edgeformer.quant.config import QuantConfig

NAME = "calib_arrays"
X = TensorSpec(name="x", shape=(1, 3, 4, 4), dtype="float32")
Y = TensorSpec(name="y", shape=("batch", 8), dtype="float32")
CONFIG = QuantConfig(calib_size=4, fidelity_samples=1)


def drain(data) -> None:
    """Read every calibration batch and the held-out feeds, as quantize does."""
    for _ in range(CONFIG.calib_size + 1):
        if data.reader.get_next() is None:
            break
    data.fidelity_feeds(1)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    npz = data[0] & 1
    path = write(scratch() / NAME / ("calib.npz" if npz else "calib.npy"), data[1:])
    with contextlib.suppress(EdgeformerError):
        drain(open_calibration(path, inputs=[X, Y] if npz else [X], preprocessing=None, config=CONFIG))


if __name__ == "__main__":
    main(NAME, test_one_input)
