"""Cluttered digits: a harder image task the project generates itself, for reference models that are not saturated.

Each 64 px image holds one digit of the split (the label) at a random size and place, plus a fragment of another
digit of the same split at lower contrast, on a background of Gaussian noise. The digits task is saturated (99 %+)
and slimming needs parents whose accuracy can visibly drop; on this one small models land between 85 and 97 %.
Held-out images are fixed (seeded per sample); training draws new clutter every epoch. Torch-free: numpy and Pillow.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .reference import SPLIT_SEED, digits_images, digits_input

RESOLUTION = 64
NOISE_STD = 0.3  # in the model's [-1, 1] input range
FRAGMENTS = 1


def _paste(canvas: np.ndarray, img: np.ndarray, top: int, left: int, gain: float) -> None:
    h, w = img.shape
    region = canvas[top : top + h, left : left + w]
    np.maximum(region, img[: region.shape[0], : region.shape[1]] * gain, out=region)


def _resized(raw: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(raw, "L").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0


def render(images: np.ndarray, index: int, rng: np.random.Generator) -> np.ndarray:
    """One cluttered 64 px image (3, 64, 64) float32 in [-1, 1] around digit ``images[index]``."""
    canvas = np.zeros((RESOLUTION, RESOLUTION), np.float32)
    for _ in range(FRAGMENTS):  # pieces of other digits: strokes that look like digit strokes, at lower contrast
        other = _resized(images[int(rng.integers(len(images)))], int(rng.integers(24, 44)))
        h = other.shape[0]
        r0, c0 = int(rng.integers(0, h // 2)), int(rng.integers(0, h // 2))
        piece = other[r0 : r0 + h // 2, c0 : c0 + h // 2]
        _paste(
            canvas,
            piece,
            int(rng.integers(0, RESOLUTION - piece.shape[0])),
            int(rng.integers(0, RESOLUTION - piece.shape[1])),
            float(rng.uniform(0.25, 0.5)),
        )
    size = int(rng.integers(30, 48))
    digit = _resized(images[index], size)
    _paste(
        canvas,
        digit,
        int(rng.integers(0, RESOLUTION - size)),
        int(rng.integers(0, RESOLUTION - size)),
        float(rng.uniform(0.7, 1.0)),
    )
    x = canvas * 2 - 1 + rng.normal(0, NOISE_STD, canvas.shape).astype(np.float32)
    return np.repeat(np.clip(x, -1, 1)[None], 3, axis=0)


def clutter_split(
    split: str = "train", *, epoch: int | None = None, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """The cluttered images of ``split`` (float32 NCHW, the digits models' [-1, 1] range) and int64 labels.

    ``heldout`` is the same every call; ``train`` with ``epoch`` draws that epoch's clutter (seeded by it).
    """
    images, labels = digits_images(split, seed=seed)
    salt = 1 if split == "heldout" else 2 + (epoch or 0)
    rng = np.random.default_rng([seed, salt])
    return np.stack([render(images, i, rng) for i in range(len(images))]), labels


def clutter_input():
    """The input spec of the clutter models: already 64 px [-1, 1] arrays; images would take the digits recipe."""
    return digits_input(RESOLUTION)
