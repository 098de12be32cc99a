"""Labelled data for slimming: training batches (BatchNorm re-estimation, fine-tuning), a validation split the
search scores sub-networks on, and a test split only the final report reads.

Sources: a trained reference model's own dataset (``"reference"``: digits, cluttered digits, keywords), or an
``.npz`` with ``x``/``y`` (model-ready float arrays, NCHW images or waveforms) and optionally ``x_test``/``y_test``.
The validation split is carved from the training data (seeded), so the search never looks at the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.clutter import clutter_split
from ..data.reference import digits_split
from ..errors import ConfigError, InvalidInputError
from ..models.reference import read_reference_meta, reference_heldout

VAL_FRACTION = 0.2


@dataclass(frozen=True, eq=False)
class SlimData:
    """``train(epoch)`` gives that epoch's training arrays (fresh augmentation where the dataset has one)."""

    name: str
    train: Callable[[int], tuple[np.ndarray, np.ndarray]]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    num_classes: int


def _carve(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, val): a stratified, seeded VAL_FRACTION of every class is validation."""
    rng = np.random.default_rng([seed, 17])
    val = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        val[idx[: max(1, round(VAL_FRACTION * len(idx)))]] = True
    return ~val, val


def reference_data(name: str, seed: int = 0) -> SlimData:
    """The dataset a reference model was trained on, split into train/validation (from train) and test (held-out)."""
    meta = read_reference_meta(name)
    kind = meta.dataset.get("name")
    if kind == "clutter":
        x0, y0 = clutter_split("train", epoch=0)
        keep, val = _carve(x0, y0, seed)

        def train(epoch: int) -> tuple[np.ndarray, np.ndarray]:
            x, y = clutter_split("train", epoch=epoch)  # new clutter every epoch, same digits and split
            return x[keep], y[keep]

        return SlimData(name, train, (x0[val], y0[val]), reference_heldout(meta), len(meta.labels))
    if kind == "digits":
        x0, y0 = digits_split("train", resolution=meta.input.resolution)
        keep, val = _carve(x0, y0, seed)
        return SlimData(
            name, lambda e: (x0[keep], y0[keep]), (x0[val], y0[val]), reference_heldout(meta), len(meta.labels)
        )
    raise ConfigError(f"{name}: slimming on its {kind!r} data is not wired; pass --data FILE.npz with x and y.")


def npz_data(path: str | Path, num_classes: int, seed: int = 0) -> SlimData:
    """``x``/``y`` (and optionally ``x_test``/``y_test``) from an ``.npz`` (never pickles)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"{path}: not a readable .npz of arrays ({e}).") from e
    missing = {"x", "y"} - set(arrays)
    if missing:
        raise InvalidInputError(
            f"{path}: needs arrays x (inputs) and y (labels); missing {', '.join(sorted(missing))}."
        )
    x, y = arrays["x"].astype(np.float32), arrays["y"].astype(np.int64)
    if len(x) != len(y) or len(y) < 20:
        raise InvalidInputError(f"{path}: x and y must hold the same number (>= 20) of samples, got {len(x)}/{len(y)}.")
    if y.min() < 0 or y.max() >= num_classes:
        raise InvalidInputError(f"{path}: labels must lie in [0, {num_classes}), got {y.min()}..{y.max()}.")
    keep, val = _carve(x, y, seed)
    test = (
        (arrays["x_test"].astype(np.float32), arrays["y_test"].astype(np.int64))
        if "x_test" in arrays
        else (x[val], y[val])
    )
    return SlimData(path.stem, lambda e: (x[keep], y[keep]), (x[val], y[val]), test, num_classes)
