"""The search's accuracy signal: a weight-inherited sub-network, BatchNorm statistics re-estimated, scored on the
validation split. Re-estimating matters: a narrower or shallower child sees different activation statistics than
its parent's running averages (the once-for-all / BigNAS recipe); without it, inherited children score near chance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..models import slice_weights
from .data import SlimData


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: np.ndarray, batches: int = 8, batch: int = 64) -> None:
    """Replace every BatchNorm's running statistics by their average over ``batches`` batches of ``x``."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    for i in range(min(batches, max(1, len(x) // batch))):
        model(torch.from_numpy(x[i * batch : (i + 1) * batch]))
    model.eval()


@torch.no_grad()
def top1(model: nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    model.eval()
    pred = np.concatenate(
        [model(torch.from_numpy(x[i : i + batch])).argmax(1).numpy() for i in range(0, len(x), batch)]
    )
    return float((pred == y).mean() * 100)


class Evaluator:
    """Top-1 (in %) of inherited sub-networks on the validation split; cached by architecture."""

    def __init__(self, parent: nn.Module, data: SlimData, *, bn_batches: int = 8, seed: int = 0) -> None:
        self.parent = parent.eval()
        self.data = data
        self.bn_batches = bn_batches
        rng = np.random.default_rng(seed)
        x, _ = data.train(0)
        self.bn_x = x[rng.permutation(len(x))[: 64 * bn_batches]]
        self.cache: dict[Any, float] = {}

    def child(self, arch: Any) -> nn.Module:
        child = slice_weights(self.parent, arch)
        recalibrate_bn(child, self.bn_x, self.bn_batches)
        return child

    def __call__(self, arch: Any) -> float:
        if arch not in self.cache:
            self.cache[arch] = top1(self.child(arch), *self.data.val)
        return self.cache[arch]
