"""Fuzz the WAV reader behind audio calibration (``edgeformer/data/audio.py`` through the calibration source).

The input is one ``.wav`` file in a calibration folder, opened by :func:`open_calibration` for a model with a
host log-mel front-end (read, rate check, fixed length, log-mel), as ``quantize --calib DIR`` does; every
sample is then read. Expected: :class:`EdgeformerError` (CalibrationError naming the file). Anything else is a
finding.
"""

from __future__ import annotations

from _harness import instrumented, main, scratch, write

with instrumented(__name__, "wave"):
    from edgeformer.errors import EdgeformerError
    from edgeformer.inputs import AudioInput
    from edgeformer.manifest import TensorSpec
    from edgeformer.quant.calibration import open_calibration
    from edgeformer.quant.config import QuantConfig

NAME = "calib_wav"
# a tenth of a second at 8 kHz keeps one log-mel well under a millisecond
SPEC = AudioInput(
    sample_rate=8000,
    clip_seconds=0.1,
    n_fft=128,
    win_length=100,
    hop_length=40,
    n_mels=16,
    f_max=4000.0,
    frontend="host",
)
INPUT = TensorSpec(name="mel", shape=SPEC.shape(), dtype="float32")
CONFIG = QuantConfig(calib_size=2, fidelity_samples=1)


def test_one_input(data: bytes) -> None:
    folder = scratch() / NAME
    write(folder / "clip.wav", data)
    try:
        calib = open_calibration(folder, inputs=[INPUT], preprocessing=SPEC, config=CONFIG)
        while calib.reader.get_next() is not None:
            pass
    except EdgeformerError:
        pass


if __name__ == "__main__":
    main(NAME, test_one_input)
