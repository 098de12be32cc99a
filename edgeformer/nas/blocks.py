"""Cut a zoo model into the segments a latency table measures: front, downsamples, blocks, tail.

Every zoo family has the same skeleton: children registered before ``stages`` run first (the stem; the audio
front-end), then ``stages[i]`` = an optional downsample and ``blocks``, then the children registered after
``stages`` (norm, pooling, heads). A segment's :class:`BlockKey` is its kind, its input shape and a signature
of its structure and parameter shapes, so two blocks share a table entry exactly when they compute the same
shapes with the same layers. Keys are computed on the meta device: no weights are allocated, so predicting an
architecture costs one shape-only forward pass.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..models import get_spec
from .keys import BlockKey

_ATTENTION = re.compile(r"attention|attn|shsa", re.IGNORECASE)


@dataclass(frozen=True)
class Segment:
    """One measured piece of one model: where it sits (``stages.3.blocks.2``) and its key."""

    path: str
    key: BlockKey


def _signature(module: nn.Module) -> tuple[str, int]:
    """Hash of the module tree (class names) and every parameter/buffer shape; and the parameter count."""
    parts = [f"{name}:{type(m).__name__}" for name, m in module.named_modules()]
    parts += [f"{n}{tuple(t.shape)}" for n, t in module.named_parameters()]
    parts += [f"{n}{tuple(t.shape)}" for n, t in module.named_buffers()]
    params = sum(p.numel() for p in module.parameters())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12], params


def _kind(path: str, module: nn.Module) -> str:
    if path in ("front", "tail"):
        return path
    if ".blocks." not in path:
        return "downsample"
    attention = any(_ATTENTION.search(type(m).__name__) for m in module.modules())
    return f"block:{type(module).__name__}{'+attn' if attention else ''}"


class _Front(nn.Sequential):
    """The children that run before ``stages``, in order."""


class _Tail(nn.Module):
    """Everything after ``stages``: the optional ``norm``, global average pooling, the head(s).

    Every zoo family ends this way (EfficientFormer pools its (B, N, C) tokens over N, the others pool NCHW maps
    over H and W; a second, distillation head is averaged with the first, as the models do at inference). It is
    rebuilt here rather than taken from ``model.forward``, which checks its input is an image.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        norm = getattr(model, "norm", None)
        self.norm = norm if isinstance(norm, nn.Module) else nn.Identity()
        self.head = model.head
        dist = getattr(model, "head_dist", None)
        self.head_dist = dist if isinstance(dist, nn.Module) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        x = x.mean(1) if x.dim() == 3 else x.mean((2, 3))
        out = self.head(x)
        return out if self.head_dist is None else (out + self.head_dist(x)) / 2


def _front_names(model: nn.Module) -> list[str]:
    names = list(model._modules)
    if "stages" not in names:
        raise TypeError(f"{type(model).__name__} has no `stages`: not a zoo model layout")
    return [n for n in names[: names.index("stages")] if model._modules[n] is not None]


def segment_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(path, module)`` of every segment of ``model``, in execution order."""
    front = _front_names(model)
    out: list[tuple[str, nn.Module]] = [("front", _Front(*(model._modules[n] for n in front)))]
    for i, stage in enumerate(model.stages):
        for name, child in stage.named_children():
            if name != "blocks" and not isinstance(child, nn.Identity):
                out.append((f"stages.{i}.{name}", child))
        out += [(f"stages.{i}.blocks.{j}", block) for j, block in enumerate(stage.blocks)]
    out.append(("tail", _Tail(model)))
    return out


def segment_inputs(model: nn.Module, example: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input every segment sees when ``model`` runs on ``example`` (one forward pass with hooks)."""
    seen: dict[str, torch.Tensor] = {"front": example}
    hooks = []
    for path, module in segment_modules(model):
        if path in ("front", "tail"):
            continue
        hooks.append(module.register_forward_pre_hook(lambda _m, args, p=path: seen.__setitem__(p, args[0])))
    hooks.append(model.stages.register_forward_hook(lambda _m, _a, out: seen.__setitem__("tail", out)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return seen


def build_model(spec_name: str, arch: Any, device: str = "cpu") -> nn.Module:
    """The zoo model of ``arch`` in eval mode (on ``"meta"``: shapes only, nothing allocated)."""
    with torch.device(device):
        return get_spec(spec_name).build(arch).eval()


@functools.lru_cache(maxsize=4096)  # slimming asks for the same architectures again and again
def segments(spec_name: str, arch: Any, input_shape: tuple[int, ...]) -> tuple[Segment, ...]:
    """The :class:`Segment` list of ``arch`` (a family arch of zoo spec ``spec_name``), computed on meta."""
    model = build_model(spec_name, arch, device="meta")
    inputs = segment_inputs(model, torch.empty(input_shape, device="meta"))
    out = []
    for path, module in segment_modules(model):
        sig, params = _signature(module)
        shape = tuple(int(d) for d in inputs[path].shape[1:])
        out.append(Segment(path, BlockKey(kind=_kind(path, module), input_shape=shape, signature=sig, params=params)))
    return tuple(out)
