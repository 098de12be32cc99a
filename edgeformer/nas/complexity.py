"""Parameters and MACs of a sub-network, counted on the meta device (the validation's FLOPs/params baselines)."""

from __future__ import annotations

import functools
from typing import Any

from ..models.complexity import count_macs, count_params
from .blocks import build_model


@functools.lru_cache(maxsize=1024)
def _complexity(zoo_model: str, arch: Any, input_shape: tuple[int, ...]) -> tuple[int, int]:
    params = count_params(build_model(zoo_model, arch, device="meta"))
    macs = count_macs(lambda: build_model(zoo_model, arch, device="meta"), input_shape)
    return params, macs


def arch_complexity(space: Any, arch: Any) -> tuple[int, int]:
    """``(parameters, MACs)`` of ``arch`` at the space's input shape."""
    return _complexity(space.zoo_model, arch, space.input_shape)
