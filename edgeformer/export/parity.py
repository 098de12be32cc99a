"""Parity between a torch module and its exported graph: every output, on several inputs.

The measure is :mod:`edgeformer.compare`'s: ``max_rel`` is the largest absolute difference divided by the
output's scale (``max |torch output|``), so one tolerance (:class:`~edgeformer.models.spec.ExportHints`'
``atol``) serves logits of any magnitude; the cosine between the flattened outputs catches a wrong sign or
a permuted class order that a loose error bound could miss. Inputs are seeded random tensors plus, for
images and waveforms, one "natural" input (a smooth gradient, a chirp): random noise exercises every value
range, natural inputs the statistics the model was trained on.

This module stays torch-free: the compile targets measure their fidelity with :func:`compare_on` on
:func:`parity_inputs` too.

Example::

    inputs = parity_inputs({"input": (1, 3, 64, 64)}, kind="image", samples=3, seed=0)
    agreement = compare_on(torch_fn, ort_runner("build/l1/model.onnx"), inputs)
    if reason := agreement.meets(min_cosine=0.99999, rtol=1e-4):
        raise ParityError(f"the export differs from torch: {reason}", failures=agreement.failing(rtol=1e-4))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ..compare import Agreement, Feeds, compare_outputs, run_all

RunFn = Callable[[Feeds], Mapping[str, np.ndarray]]


def compare_on(reference: RunFn, candidate: RunFn, inputs: Mapping[str, Feeds]) -> Agreement:
    """Run both functions on every named input (e.g. from :func:`parity_inputs`) and compare every output;
    the samples keep the inputs' names, so a failure says which input it was worst on."""
    feeds = list(inputs.values())
    return compare_outputs(run_all(reference, feeds), run_all(candidate, feeds), sample_names=list(inputs))


def parity_inputs(
    shapes: Mapping[str, tuple[int, ...]],
    *,
    kind: str | None = None,
    samples: int = 3,
    seed: int = 0,
    dtypes: Mapping[str, str] | None = None,
    sample_rate: int = 16000,
) -> dict[str, dict[str, np.ndarray]]:
    """Seeded random feeds, plus one natural input for ``kind`` ``"image"`` (NCHW) or ``"audio"`` (waveform).

    Image tensors are drawn in normalized space (N(0, 1), what a normalized photo looks like); waveforms
    in [-1, 1]; integer inputs uniformly over 0..9.
    """
    rng = np.random.default_rng(seed)
    dtypes = dict(dtypes or {})
    out: dict[str, dict[str, np.ndarray]] = {}
    for i in range(samples):
        feeds = {}
        for name, shape in shapes.items():
            dtype = np.dtype(dtypes.get(name, "float32"))
            if dtype.kind in "iub":
                feeds[name] = rng.integers(0, 10 if dtype.kind != "b" else 2, size=shape).astype(dtype)
            elif kind == "audio":
                feeds[name] = rng.uniform(-1, 1, size=shape).astype(dtype)
            else:
                feeds[name] = rng.standard_normal(size=shape).astype(dtype)
        out[f"random-{i}"] = feeds
    if kind in ("image", "audio") and len(shapes) == 1:
        ((name, shape),) = shapes.items()
        maker = _gradient if kind == "image" else _chirp
        out["natural"] = {name: maker(shape, sample_rate).astype(np.dtype(dtypes.get(name, "float32")))}
    return out


def _gradient(shape: tuple[int, ...], _sample_rate: int) -> np.ndarray:
    """A smooth colour gradient with a soft blob, in normalized space (about [-2, 2] like ImageNet pixels)."""
    n, c, h, w = shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    blob = np.exp(-((xx - 0.3) ** 2 + (yy + 0.2) ** 2) * 4)
    channels = [np.sin(np.pi * (xx * (k + 1) / c + yy * 0.5) + k) + blob for k in range(c)]
    img = np.stack(channels) * 1.2
    return np.broadcast_to(img, (n, c, h, w)).copy()


def _chirp(shape: tuple[int, ...], sample_rate: int) -> np.ndarray:
    """A 100 Hz -> 4 kHz sweep at half scale: speech-band energy in every frame."""
    samples = shape[-1]
    t = np.arange(samples) / sample_rate
    duration = max(samples / sample_rate, 1e-3)
    f0, f1 = 100.0, 4000.0
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * duration))
    return np.broadcast_to(0.5 * np.sin(phase), shape).copy()
