"""EfficientFormer (V1): l1, l3, l7.

Paper: Yanyu Li, Geng Yuan, Yang Wen, Eric Hu, Georgios Evangelidis, Sergey Tulyakov, Yanzhi Wang, Jian Ren,
"EfficientFormer: Vision Transformers at MobileNet Speed", NeurIPS 2022 (arXiv:2206.01191).
Upstream: https://github.com/snap-research/EfficientFormer (Apache-2.0); timm's port ``timm/models/efficientformer.py``.

The network: a stem of two stride-2 conv-BN-ReLU, four stages of Meta4D blocks (token mixer ``pool(x) - x``, 1x1-conv
MLP with BatchNorm, layer scale) joined by stride-2 conv-BN downsampling, and at the end of the last stage ``num_vit``
Meta3D blocks (flatten to tokens, LayerNorm, attention with learned relative-position biases, linear MLP). A final
LayerNorm, token mean, and two linear heads (``head`` + distillation ``head_dist``) whose mean is the eval logits.

What we changed, and why:
- The architecture is explicit and elastic (:class:`EfficientFormerArch`): per-stage widths and depths, per-block MLP
  ratio and per-block kind, one of ``"pool"`` (Meta4D), ``"attn"`` (Meta3D) or ``"mlp"`` (a Meta3D block with its
  attention branch turned off: LayerNorm + MLP only). ``"mlp"`` exists so NAS can turn attention off in a trained
  block and still inherit every remaining weight; a Meta4D block could not inherit from a Meta3D one (its MLP has
  BatchNorms the parent never had). Token blocks may sit at any position of any stage; the model flattens and
  unflattens between layouts with static sizes.
- ``resolution`` (the square input size) is an arch field: it sizes the attention-bias tables (7x7 grid at 224, as
  upstream) so tests can run at 64x64. Inputs must have that size when the arch has token blocks.
- Block numbering is per stage without upstream's parameterless ``Flat`` slot, so a child that keeps the first blocks
  has the same keys as its parent; :func:`remap_checkpoint` closes the gap in official and timm checkpoints.
- ``attention_bias_idxs`` is derived from ``resolution`` and not saved; checkpoints may carry it or not.
- ``fuse()`` folds every BatchNorm, folds layer scales that follow a linear/conv into it, stores each attention bias
  as a dense ``(heads, N, N)`` buffer, and merges ``head`` and ``head_dist`` into one linear (their mean is linear).
- Drop path and dropout are left out: this zoo serves inference, export and NAS weight inheritance.
- With no token block in the last stage, we flatten before the final LayerNorm (upstream would normalise over W).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from ..errors import InputMismatchError, InvalidArchError
from ..inputs import IMAGENET_MEAN, IMAGENET_STD, ImageInput
from .layers import ElasticModel, fuse_conv_bn
from .spec import ArchBase, ExportHints, ModelSpec
from .spec import to_tuples as _to_tuples
from .zoo import register_model

# name: (widths, depths, attention blocks ending the last stage, published params (M) and MACs (G) at 224²)
_VARIANTS = {
    "efficientformer_l1": ((48, 96, 224, 448), (3, 2, 6, 4), 1, 12.3, 1.3),
    "efficientformer_l3": ((64, 128, 320, 512), (4, 4, 12, 6), 4, 31.3, 3.9),
    "efficientformer_l7": ((96, 192, 384, 768), (6, 6, 18, 8), 8, 82.1, 10.2),
}

POOL, ATTN, MLP = "pool", "attn", "mlp"
_KINDS = (POOL, ATTN, MLP)
_TOKEN_KINDS = (ATTN, MLP)  # blocks that run on (B, N, C) tokens


def _is_pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _is_pos_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def _half(n: int) -> int:
    return (n + 1) // 2  # output size of a 3x3 stride-2 conv with padding 1


@dataclass(frozen=True, kw_only=True)
class EfficientFormerArch(ArchBase):
    """Elastic EfficientFormer architecture; every per-block field has one tuple per stage.

    Example::

        arch = EfficientFormerArch.uniform(widths=(48, 96, 224, 448), depths=(3, 2, 6, 4), num_attn=1)
        # fewer blocks, attention turned off in the last block, smaller MLPs at the end
        child = arch.replace(depths=(2, 2, 4, 4), mixers=((POOL,) * 2, (POOL,) * 2, (POOL,) * 4, (POOL,) * 3 + (MLP,)),
                             mlp_ratios=((4,) * 2, (4,) * 2, (4,) * 4, (4, 4, 2, 2)))
    """

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    mlp_ratios: tuple[tuple[float, ...], ...]  # hidden = int(width * ratio), per block
    mixers: tuple[tuple[str, ...], ...]  # per block: "pool" (Meta4D), "attn" (Meta3D), "mlp" (Meta3D, attention off)
    num_heads: int = 8  # upstream's attention has 8 heads of key_dim 32, value dim 4 * 32, at every width
    key_dim: int = 32
    val_dim: int = 128
    pool_size: int = 3
    resolution: int = 224  # square input size; sizes the attention-bias tables
    num_classes: int = 1000
    distillation: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _to_tuples(getattr(self, f.name)))

    @classmethod
    def uniform(
        cls, *, widths: tuple[int, ...], depths: tuple[int, ...], num_attn: int, mlp_ratio: float = 4.0, **kw: Any
    ) -> EfficientFormerArch:
        """Upstream's layout: one MLP ratio everywhere, the last ``num_attn`` blocks of the last stage attention."""
        last = len(depths) - 1
        mixers = tuple(
            tuple(ATTN if s == last and b >= d - num_attn else POOL for b in range(d)) for s, d in enumerate(depths)
        )
        ratios = tuple((mlp_ratio,) * d for d in depths)
        return cls(widths=tuple(widths), depths=tuple(depths), mlp_ratios=ratios, mixers=mixers, **kw)

    @property
    def attention(self) -> tuple[tuple[bool, ...], ...]:
        """Which blocks are attention blocks, per stage."""
        return tuple(tuple(k == ATTN for k in stage) for stage in self.mixers)

    def grids(self) -> tuple[int, ...]:
        """Token grid side of each stage: the stem divides by 4, each later stage by 2 (rounding up)."""
        side, out = _half(_half(self.resolution)), []
        for s in range(len(self.widths)):
            side = _half(side) if s else side
            out.append(side)
        return tuple(out)

    def problems(self) -> list[str]:
        bad: dict[str, list[str]] = {}

        def note(name: str, msg: str) -> None:
            bad.setdefault(name, []).append(msg)

        widths_ok = isinstance(self.widths, tuple) and len(self.widths) > 0 and all(map(_is_pos_int, self.widths))
        if not widths_ok:
            note("widths", f"must be a non-empty tuple of positive ints, got {self.widths!r}")
        elif self.widths[0] < 2:
            note(
                "widths",
                f"widths[0] must be >= 2 (the stem's first conv has widths[0] // 2 channels), got {self.widths[0]}",
            )
        n = len(self.widths) if widths_ok else None
        depths_ok = isinstance(self.depths, tuple) and all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in self.depths
        )
        if not depths_ok:
            note("depths", f"must be a tuple of non-negative ints, got {self.depths!r}")
        elif n is not None and len(self.depths) != n:
            note("depths", f"has {len(self.depths)} stages but widths has {n}")
            depths_ok = False

        def per_block(name: str, value: Any, ok: Any, what: str) -> None:
            if not isinstance(value, tuple) or not all(isinstance(s, tuple) for s in value):
                note(name, f"must be a tuple (one per stage) of tuples (one per block), got {value!r}")
                return
            if depths_ok and len(value) != len(self.depths):
                note(name, f"has {len(value)} stages but depths has {len(self.depths)}")
            for s, stage in enumerate(value):
                if depths_ok and s < len(self.depths) and len(stage) != self.depths[s]:
                    note(
                        name,
                        f"stage {s} has {len(stage)} entries but depths[{s}] is {self.depths[s]}; "
                        "give one entry per block",
                    )
                wrong = [b for b, v in enumerate(stage) if not ok(v)]
                if wrong:
                    note(name, f"stage {s} blocks {wrong} must be {what}")

        per_block("mlp_ratios", self.mlp_ratios, _is_pos_num, "positive numbers")
        per_block("mixers", self.mixers, lambda v: v in _KINDS, f"one of {', '.join(map(repr, _KINDS))}")
        if widths_ok and "mlp_ratios" not in bad:
            for s, stage in enumerate(self.mlp_ratios[:n]):
                if any(int(self.widths[s] * r) < 1 for r in stage):
                    note("mlp_ratios", f"stage {s}: width {self.widths[s]} * ratio gives an empty MLP")
        for name in ("num_heads", "key_dim", "val_dim", "resolution", "num_classes"):
            if not _is_pos_int(getattr(self, name)):
                note(name, f"must be a positive int, got {getattr(self, name)!r}")
        if not (_is_pos_int(self.pool_size) and self.pool_size % 2 == 1):
            note("pool_size", f"must be a positive odd int (stride-1 pooling keeps the size), got {self.pool_size!r}")
        if not isinstance(self.distillation, bool):
            note("distillation", f"must be a bool, got {self.distillation!r}")
        return [f"{name}: {'; '.join(msgs)}" for name, msgs in bad.items()]


# --- blocks -------------------------------------------------------------------------------------


class ConvNorm(nn.Module):
    """Conv (with bias, as upstream) + BatchNorm; ``fuse()`` returns the folded conv."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))

    def fuse(self) -> nn.Module:
        return fuse_conv_bn(self.conv, self.norm)


class Stem(nn.Module):
    """Two stride-2 3x3 conv-BN-ReLU; keys follow timm (``stem.conv1``, ``stem.norm1``, ...)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout // 2, 3, 2, 1)
        self.norm1 = nn.BatchNorm2d(cout // 2)
        self.conv2 = nn.Conv2d(cout // 2, cout, 3, 2, 1)
        self.norm2 = nn.BatchNorm2d(cout)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm2(self.conv2(self.act(self.norm1(self.conv1(x))))))

    def fuse(self) -> nn.Module:
        return nn.Sequential(
            fuse_conv_bn(self.conv1, self.norm1), nn.ReLU(), fuse_conv_bn(self.conv2, self.norm2), nn.ReLU()
        )


class LayerScale(nn.Module):
    """Per-channel scale; channels last for tokens, or at dim 1 for NCHW maps."""

    def __init__(self, dim: int, channels_first: bool, init: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))
        self.channels_first = channels_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.gamma[:, None, None] if self.channels_first else self.gamma)


def _fold_scale(layer: nn.Module, scale: LayerScale) -> None:
    """``scale * layer(x)`` into ``layer``: its output channels are dim 0 of its weight, for conv and linear alike."""
    g = scale.gamma.detach()
    layer.weight.mul_(g.reshape((-1,) + (1,) * (layer.weight.dim() - 1)))
    layer.bias.mul_(g)


class ConvMlp(nn.Module):
    """1x1 conv - BN - GELU - 1x1 conv - BN (Meta4D's MLP)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.norm1 = nn.BatchNorm2d(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.norm2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.fc2(self.act(self.norm1(self.fc1(x)))))

    def fuse(self) -> nn.Module:
        self.fc1, self.norm1 = fuse_conv_bn(self.fc1, self.norm1), nn.Identity()
        self.fc2, self.norm2 = fuse_conv_bn(self.fc2, self.norm2), nn.Identity()
        return self


class PoolBlock(nn.Module):
    """Meta4D: ``x + ls1 * (avgpool(x) - x)``, then ``x + ls2 * mlp(x)``, on NCHW maps."""

    def __init__(self, dim: int, hidden: int, pool_size: int) -> None:
        super().__init__()
        # count_include_pad=False: border averages ignore padding, as upstream (PoolFormer)
        self.pool = nn.AvgPool2d(pool_size, 1, pool_size // 2, count_include_pad=False)
        self.ls1 = LayerScale(dim, channels_first=True)
        self.mlp = ConvMlp(dim, hidden)
        self.ls2 = LayerScale(dim, channels_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.pool(x) - x)
        return x + self.ls2(self.mlp(x))

    def fuse(self) -> nn.Module:
        _fold_scale(self.mlp.fc2, self.ls2)  # children are fused first: fc2 is a plain conv with bias by now
        self.ls2 = nn.Identity()
        return self


class Attention(nn.Module):
    """Multi-head attention with a learned bias per head and per relative offset ``(|dy|, |dx|)``.

    ``qkv`` is packed per head as ``[q (key_dim), k (key_dim), v (val_dim)]`` (upstream's layout); the bias table
    is ``(heads, grid * grid)`` indexed by ``|dy| * grid + |dx|``, the order upstream's offsets dict assigns.
    """

    def __init__(self, dim: int, num_heads: int, key_dim: int, val_dim: int, grid: int) -> None:
        super().__init__()
        self.num_heads, self.key_dim, self.val_dim, self.n = num_heads, key_dim, val_dim, grid * grid
        self.scale = key_dim**-0.5
        self.qkv = nn.Linear(dim, num_heads * (2 * key_dim + val_dim))
        self.proj = nn.Linear(num_heads * val_dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, grid * grid))
        pos = torch.stack(torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")).flatten(1)
        rel = (pos[:, :, None] - pos[:, None, :]).abs()
        # derived, never saved: checkpoints with or without upstream's idxs buffer both load
        self.register_buffer("attention_bias_idxs", rel[0] * grid + rel[1], persistent=False)
        self.fused = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C)
        qkv = self.qkv(x).reshape(-1, self.n, self.num_heads, 2 * self.key_dim + self.val_dim).transpose(1, 2)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.val_dim], dim=3)
        bias = self.dense_bias if self.fused else self.attention_biases[:, self.attention_bias_idxs]
        attn = ((q @ k.transpose(-2, -1)) * self.scale + bias).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(-1, self.n, self.num_heads * self.val_dim))

    def fuse(self) -> nn.Module:
        # a dense (heads, N, N) constant: the exported graph adds it instead of gathering from the table
        self.register_buffer("dense_bias", self.attention_biases[:, self.attention_bias_idxs].detach().clone())
        del self.attention_biases
        self.fused = True
        return self


class LinearMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TokenBlock(nn.Module):
    """Meta3D on (B, N, C) tokens: ``x + ls1 * attn(ln(x))`` (``"attn"`` only), then ``x + ls2 * mlp(ln(x))``."""

    def __init__(self, dim: int, hidden: int, attention: bool, arch: EfficientFormerArch, grid: int) -> None:
        super().__init__()
        self.has_attention = attention
        if attention:
            self.norm1 = nn.LayerNorm(dim)
            self.token_mixer = Attention(dim, arch.num_heads, arch.key_dim, arch.val_dim, grid)
            self.ls1 = LayerScale(dim, channels_first=False)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = LinearMlp(dim, hidden)
        self.ls2 = LayerScale(dim, channels_first=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_attention:
            x = x + self.ls1(self.token_mixer(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))

    def fuse(self) -> nn.Module:
        if self.has_attention:
            _fold_scale(self.token_mixer.proj, self.ls1)
            self.ls1 = nn.Identity()
        _fold_scale(self.mlp.fc2, self.ls2)
        self.ls2 = nn.Identity()
        return self


class Stage(nn.Module):
    """Optional downsample, then blocks; switches between NCHW maps and tokens where the block kind changes."""

    def __init__(self, cin: int, s: int, arch: EfficientFormerArch, grid: int, out_tokens: bool) -> None:
        super().__init__()
        dim = arch.widths[s]
        self.downsample = ConvNorm(cin, dim) if s else nn.Identity()
        self.kinds, self.dim, self.grid, self.out_tokens = arch.mixers[s], dim, grid, out_tokens
        self.blocks = nn.ModuleList(
            PoolBlock(dim, int(dim * r), arch.pool_size)
            if kind == POOL
            else TokenBlock(dim, int(dim * r), kind == ATTN, arch, grid)
            for kind, r in zip(arch.mixers[s], arch.mlp_ratios[s], strict=True)
        )

    def _to_map(self, x: torch.Tensor) -> torch.Tensor:
        # static C, H, W from the arch; batch stays dynamic in the exported graph
        return x.transpose(1, 2).reshape(-1, self.dim, self.grid, self.grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, tokens = self.downsample(x), False
        for kind, block in zip(self.kinds, self.blocks, strict=True):
            if (kind in _TOKEN_KINDS) != tokens:
                x = self._to_map(x) if tokens else x.flatten(2).transpose(1, 2)
                tokens = not tokens
            x = block(x)
        if tokens != self.out_tokens:
            x = self._to_map(x) if tokens else x.flatten(2).transpose(1, 2)
        return x


# --- model --------------------------------------------------------------------------------------


class EfficientFormer(ElasticModel):
    """EfficientFormer built from an :class:`EfficientFormerArch`; eval logits are the mean of both heads."""

    def __init__(self, arch: EfficientFormerArch) -> None:
        super().__init__()
        arch.validate()
        self.arch = arch
        self.distilled_training = False  # set True to get (head, head_dist) logits in training, as timm
        self.stem = Stem(3, arch.widths[0])
        grids, last = arch.grids(), len(arch.widths) - 1
        self.stages = nn.Sequential(
            *(Stage(arch.widths[s - 1] if s else arch.widths[0], s, arch, grids[s], s == last) for s in range(last + 1))
        )
        self.needs_resolution = any(k in _TOKEN_KINDS for stage in arch.mixers for k in stage)
        self.norm = nn.LayerNorm(arch.widths[-1])
        self.head = nn.Linear(arch.widths[-1], arch.num_classes)
        self.head_dist = nn.Linear(arch.widths[-1], arch.num_classes) if arch.distillation else None
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        r = self.arch.resolution
        if self.needs_resolution and not torch.jit.is_tracing() and tuple(x.shape[-2:]) != (r, r):
            raise InputMismatchError(
                f"input is {tuple(x.shape[-2:])} but this arch's attention biases are sized for {r}x{r}; "
                f"resize the input or build the model with resolution={x.shape[-1]}."
            )
        x = self.norm(self.stages(self.stem(x))).mean(1)
        if self.head_dist is None:
            return self.head(x)
        logits, dist = self.head(x), self.head_dist(x)
        if self.training and self.distilled_training:
            return logits, dist
        return (logits + dist) / 2

    @torch.no_grad()
    def fuse(self) -> EfficientFormer:
        if getattr(self, "fused", False):
            return self
        super().fuse()
        if self.head_dist is not None:  # mean of two linears is one linear
            self.head.weight.add_(self.head_dist.weight).mul_(0.5)
            self.head.bias.add_(self.head_dist.bias).mul_(0.5)
            self.head_dist = None
        return self

    def parent_key_map(self, parent_arch: EfficientFormerArch) -> dict[str, str]:
        """Keys are numbered per stage, so they equal the parent's; checks what plain slicing cannot."""
        a, p, problems = self.arch, parent_arch, []
        if any(ATTN in stage for stage in a.mixers):
            problems += [
                f"{f}: {getattr(a, f)} exceeds the parent's {getattr(p, f)}"
                for f in ("num_heads", "key_dim", "val_dim")
                if getattr(a, f) > getattr(p, f)
            ]
        if len(a.depths) == len(p.depths):
            a_grids, p_grids = a.grids(), p.grids()
            for s, (kinds, pkinds) in enumerate(zip(a.mixers, p.mixers, strict=True)):
                if ATTN in kinds and a_grids[s] > p_grids[s]:
                    problems.append(f"resolution: stage {s} grid {a_grids[s]} exceeds the parent's {p_grids[s]}")
                for b, kind in enumerate(kinds[: len(pkinds)]):
                    if kind != pkinds[b] and not (kind == MLP and pkinds[b] == ATTN):
                        problems.append(
                            f"mixers: stage {s} block {b} is {kind!r} but the parent's is {pkinds[b]!r}; a block "
                            "keeps its kind, or turns attention off with 'mlp'"
                        )
        if problems:
            raise InvalidArchError(problems, arch_name=f"sub-network of {type(self).__name__}")
        self._parent_arch = parent_arch
        return super().parent_key_map(parent_arch)

    def slice_param(self, key: str, parent_value: torch.Tensor, child_shape: torch.Size) -> torch.Tensor:
        """Per-head slicing for the packed attention tensors and the 2-D bias table; leading slices elsewhere."""
        a, p = self.arch, getattr(self, "_parent_arch", self.arch)
        if key.endswith("token_mixer.attention_biases"):
            s = int(key.split(".")[1])
            side, pside = a.grids()[s], p.grids()[s]
            table = parent_value.reshape(p.num_heads, pside, pside)[: a.num_heads, :side, :side]
            return table.reshape(a.num_heads, side * side).clone()
        if key.endswith("token_mixer.qkv.weight") or key.endswith("token_mixer.qkv.bias"):
            per_head = parent_value.reshape(p.num_heads, 2 * p.key_dim + p.val_dim, *parent_value.shape[1:])
            per_head = per_head[: a.num_heads]
            q = per_head[:, : a.key_dim]
            k = per_head[:, p.key_dim : p.key_dim + a.key_dim]
            v = per_head[:, 2 * p.key_dim : 2 * p.key_dim + a.val_dim]
            packed = torch.cat([q, k, v], dim=1).reshape(-1, *parent_value.shape[1:])
            return packed[(slice(None), *(slice(0, n) for n in child_shape[1:]))].clone()
        if key.endswith("token_mixer.proj.weight"):
            per_head = parent_value.reshape(parent_value.shape[0], p.num_heads, p.val_dim)
            return per_head[: child_shape[0], : a.num_heads, : a.val_dim].reshape(child_shape).clone()
        return super().slice_param(key, parent_value, child_shape)


def _init_weights(m: nn.Module) -> None:
    # upstream: truncated normal (std 0.02) for linears and the MLPs' 1x1 convs, zero biases
    if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)


# --- checkpoint remap ---------------------------------------------------------------------------

_OFFICIAL_STEM = {"0": "conv1", "1": "norm1", "3": "conv2", "4": "norm2"}


def _official_to_timm(key: str) -> str:
    # official: patch_embed = Sequential(conv, bn, relu, conv, bn, relu); network = [stage0, down1, stage1, ...]
    if m := re.match(r"patch_embed\.(\d)\.(.*)", key):
        return f"stem.{_OFFICIAL_STEM[m[1]]}.{m[2]}"
    if m := re.match(r"network\.(\d+)\.(proj|norm)\.(.*)", key):  # odd entries: the downsample before a stage
        return f"stages.{(int(m[1]) + 1) // 2}.downsample.{'conv' if m[2] == 'proj' else 'norm'}.{m[3]}"
    if m := re.match(r"network\.(\d+)\.(\d+)\.(.*)", key):
        key = f"stages.{int(m[1]) // 2}.blocks.{m[2]}.{m[3]}"
    key = re.sub(r"layer_scale_([12])$", r"ls\1.gamma", key)
    return re.sub(r"^dist_head\.", "head_dist.", key)


def remap_checkpoint(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official (snap-research) or timm EfficientFormer keys to ours; our own keys pass through unchanged.

    Both upstreams put a parameterless ``Flat`` module before the last stage's first attention block, so their block
    indices skip one number there; ours count blocks only, so the indices above that slot move down. Any other gap
    is left alone, so a stray key is reported under its own name. ``attention_bias_idxs`` buffers are
    dropped: we derive them from the resolution.
    """
    renamed = {}
    for key, value in state.items():
        if key.endswith("attention_bias_idxs"):
            continue
        renamed[_official_to_timm(key)] = value
    present: dict[str, set[int]] = {}
    for key in renamed:
        if m := re.match(r"(stages\.\d+\.blocks\.)(\d+)\.", key):
            present.setdefault(m[1], set()).add(int(m[2]))
    flat_slot = {}  # only upstream's pattern: one index missing, right before a token block (it has norm2.weight)
    for prefix, idx in present.items():
        missing = sorted(set(range(max(idx) + 1)) - idx)
        if len(missing) == 1 and f"{prefix}{missing[0] + 1}.norm2.weight" in renamed:
            flat_slot[prefix] = missing[0]
    out = {}
    for key, value in renamed.items():
        if (m := re.match(r"(stages\.\d+\.blocks\.)(\d+)(\..*)", key)) and m[1] in flat_slot:
            i = int(m[2])
            key = f"{m[1]}{i - (i > flat_slot[m[1]])}{m[3]}"
        out[key] = value
    return out


# --- registration -------------------------------------------------------------------------------


for name, (widths, depths, num_attn, params_m, macs_g) in _VARIANTS.items():
    register_model(
        ModelSpec(
            name=name,
            family="efficientformer",
            task="image-classification",
            build=EfficientFormer,
            arch=EfficientFormerArch.uniform(widths=widths, depths=depths, num_attn=num_attn),
            # timm's config (crop 0.95); the official eval script used Resize(256) + CenterCrop(224), i.e. 0.875
            input=ImageInput(
                resolution=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=0.95, interpolation="bicubic"
            ),
            num_classes=1000,
            export=ExportHints(opset=18, dynamo=True),
            remap=remap_checkpoint,
            labels="imagenet",
            paper="Li et al., EfficientFormer: Vision Transformers at MobileNet Speed, NeurIPS 2022, arXiv:2206.01191",
            repo="https://github.com/snap-research/EfficientFormer",
            license="Apache-2.0",
            params_m=params_m,
            macs_g=macs_g,
            counts_distillation_head=True,
            notes="Input size is fixed by the attention-bias tables (arch field `resolution`); fuse() before export.",
        )
    )
