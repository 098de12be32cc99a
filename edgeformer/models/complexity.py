"""Parameter and MAC counts, measured the way the papers count them.

MACs come from ``torch.utils.flop_counter`` (FLOPs / 2) on the meta device, so even L7 at 224² is
counted in milliseconds without allocating weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, exclude: Callable[[str], bool] | None = None) -> int:
    """Number of parameters, optionally leaving out those whose name matches ``exclude``."""
    return sum(p.numel() for n, p in model.named_parameters() if not (exclude and exclude(n)))


def count_macs(build: Callable[[], nn.Module], input_shape: tuple[int, ...]) -> int:
    """MACs of one forward pass of ``build()`` on an input of ``input_shape``, on the meta device."""
    with torch.device("meta"):
        model = build().eval()
        x = torch.empty(input_shape)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2
