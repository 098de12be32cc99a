"""Building blocks shared by the families.

Export rules every block follows (they keep ONNX graphs small and every runtime happy):
- BatchNorm sits right after a conv/linear and is folded by ``fuse()`` before export;
- attention position biases are gathered with an index buffer during training and precomputed into a
  dense buffer by ``fuse()``, so the exported graph has no Gather on a constant table;
- no data-dependent control flow, no in-place ops on inputs, shapes derived from static sizes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def fuse_conv_bn(conv: nn.Conv2d | nn.Conv1d, bn: nn.BatchNorm2d | nn.BatchNorm1d) -> nn.Module:
    """Return a conv with ``bn`` folded in: ``w' = w * g/σ``, ``b' = (b - μ) * g/σ + β``."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    fused = type(conv)(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
    )
    shape = (-1,) + (1,) * (conv.weight.dim() - 1)
    fused.weight.data.copy_(conv.weight.detach() * scale.reshape(shape))
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.data.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
    return fused


def fuse_bn_linear(bn: nn.BatchNorm1d, linear: nn.Linear) -> nn.Linear:
    """Fold a BatchNorm1d that runs *before* a linear layer into the linear (``y = W·bn(x) + b``)."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias.detach() - bn.running_mean * scale
    fused = nn.Linear(linear.in_features, linear.out_features, bias=True)
    fused.weight.data.copy_(linear.weight.detach() * scale[None, :])
    bias = linear.bias.detach() if linear.bias is not None else torch.zeros(linear.out_features)
    fused.bias.data.copy_(bias + linear.weight.detach() @ shift)
    return fused


class ConvBN(nn.Sequential):
    """Conv followed by BatchNorm; ``fuse()`` returns the single folded conv."""

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int = 1,
        stride: int = 1,
        pad: int | None = None,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, k, stride, k // 2 if pad is None else pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(cout))
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    @torch.no_grad()
    def fuse(self) -> nn.Module:
        return fuse_conv_bn(self.c, self.bn)


def fuse_children(module: nn.Module) -> None:
    """Replace, depth first, every child that has ``fuse()`` by what its ``fuse()`` returns."""
    for name, child in list(module.named_children()):
        fuse_children(child)
        if hasattr(child, "fuse") and not isinstance(child, ElasticModel):
            fused = child.fuse()
            if fused is not child:
                setattr(module, name, fused)


class ElasticModel(nn.Module):
    """Base of every zoo model: built from a frozen ``arch``; fusable; sliceable by NAS.

    Subclasses set ``self.arch`` in ``__init__`` and may override:

    - :meth:`parent_key_map` when a child's state-dict keys differ from its parent's (e.g. a dropped
      block shifts indices); the default maps every key to itself;
    - :meth:`slice_param` when leading-channel slicing is wrong for a tensor (e.g. per-head layouts).
    """

    arch: Any

    @torch.no_grad()
    def fuse(self) -> ElasticModel:
        """Fold BatchNorms and precompute attention biases in place; call after ``eval()``. Returns self."""
        fuse_children(self)
        self.fused = True
        return self

    def parent_key_map(self, parent_arch: Any) -> dict[str, str]:
        return {k: k for k in self.state_dict()}

    def slice_param(self, key: str, parent_value: torch.Tensor, child_shape: torch.Size) -> torch.Tensor:
        """Default: keep the leading entries of every dimension."""
        index = tuple(slice(0, n) for n in child_shape)
        return parent_value[index].clone()
