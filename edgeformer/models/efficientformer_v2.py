"""EfficientFormerV2 S0/S1/S2/L.

Paper: Li et al., "Rethinking Vision Transformers for MobileNet Size and Speed", ICCV 2023
(arXiv:2212.08059). Upstream: https://github.com/snap-research/EfficientFormer (``models/efficientformer_v2.py``,
Apache-2.0) and timm's refactor ``timm/models/efficientformer_v2.py``.

The network: a 2-conv stem (stride 4), four stages of FFN blocks (1x1 conv MLP with a depthwise 3x3 in the middle,
BatchNorm everywhere, layer scale); the last blocks of stages 3 and 4 also carry an attention token mixer
(Attention4D: BN'd 1x1 q/k/v, a depthwise "v_local" conv added to the attention output, talking heads before and
after the softmax, learned relative-position biases). Stage-3 attention runs on a stride-2 copy of the 14x14 map
and is upsampled back; the stage 3->4 downsample adds an attention branch (Attention4DDownsample) whose query is
a local-global mix (strided depthwise conv + stride-2 subsampling). Head: BN, global average pool, a class head
and a distillation head, averaged at inference.

What we changed:

- The architecture is explicit and elastic (:class:`EfficientFormerV2Arch`): per-stage widths and depths, a
  per-block MLP ratio and a per-block attention flag (upstream derives both from ``vit_num``), head counts and
  key dims, whether the downsample has its attention branch. Any sub-network of a variant can inherit its weights
  (:func:`edgeformer.models.slice_weights`).
- ``resolution`` is an arch field because the bias tables and the static reshapes depend on the stage sizes: the
  model runs at exactly that input size, no interpolation of the bias tables. The stride-2 attention of stage 3
  is upsampled x2 back to the stage size, so ``ceil(resolution / 16)`` must be even (64, 96, 224, ... work;
  112 does not). Upstream's downsample attention divides its heads and key dims by ``stage_side // 7`` (16 x 32
  for 7..13 px stage maps, a division by zero below 7 px, i.e. inputs <= 96 px); we keep timm's fixed 8 heads x
  16 key dims, what the released 224 px weights use, as explicit arch fields.
- The state-dict layout is timm's, so timm checkpoints load as they are; :func:`remap_checkpoint` converts the
  official release (``network.N`` sequentials, ``layer_scale_*`` of shape (C, 1, 1), ``dist_head``) and drops
  the ``attention_bias_idxs`` buffers, which we always derive from the resolution.
- ``fuse()`` folds every BatchNorm, the layer scales and the attention scale into the convs, the stride-2 query
  pooling into the local query conv, the final BN into the heads, averages the two heads into one, and turns
  the gathered bias tables into dense buffers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputMismatchError
from ..inputs import ImageInput
from .layers import ElasticModel, fuse_bn_linear, fuse_conv_bn
from .spec import ArchBase, ExportHints, ModelSpec
from .zoo import register_model

# name: widths, depths, per-block MLP ratios of stages 3 and 4 (stages 1-2 use 4), attention blocks closing
# stages 3 and 4, published params (M, distillation head included) and MACs (G) at 224 px; kept one variant per
# row so the columns read as the paper's table (ruff would stack every nested tuple vertically)
# fmt: off
_VARIANTS = {
    "efficientformerv2_s0": ((32, 48, 96, 176), (2, 2, 6, 4), ((4, 3, 3, 3, 4, 4), (4, 3, 3, 4)), 2, 3.5, 0.40),
    "efficientformerv2_s1": ((32, 48, 120, 224), (3, 3, 9, 6),
                             ((4, 4, 3, 3, 3, 3, 4, 4, 4), (4, 4, 3, 3, 4, 4)), 2, 6.1, 0.65),
    "efficientformerv2_s2": ((32, 64, 144, 288), (4, 4, 12, 8),
                             ((4, 4, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4), (4, 4, 3, 3, 3, 3, 4, 4)), 4, 12.6, 1.25),
    "efficientformerv2_l": ((40, 80, 192, 384), (5, 5, 15, 10),
                            ((4, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4), (4, 4, 4, 3, 3, 3, 3, 4, 4, 4)),
                            6, 26.1, 2.56),
}
# fmt: on
_NUM_STAGES = 4
_STRIDE_ATTN_STAGE = 2  # stage 3 (0-based 2): attention on a stride-2 copy, upsampled back
_ATTN_STAGES = (2, 3)  # attention at 56x56 / 28x28 would cost N^2 = 10M / 600k entries per head


def _is_int(v: Any, minimum: int = 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= minimum


@dataclass(frozen=True, kw_only=True)
class EfficientFormerV2Arch(ArchBase):
    """Explicit elastic architecture; the defaults are S0 at 224 px.

    ``mlp_ratios[i][j]`` and ``attn[i][j]`` describe block ``j`` of stage ``i``; the hidden width of a block's
    MLP is ``int(widths[i] * mlp_ratios[i][j])``. Attention blocks use ``num_heads`` heads of ``key_dim`` query/key
    dims and ``attn_ratio * key_dim`` value dims; the stage 3->4 downsample attention uses ``down_num_heads`` x
    ``down_key_dim`` with the same ``attn_ratio``.
    """

    widths: tuple[int, ...] = (32, 48, 96, 176)
    depths: tuple[int, ...] = (2, 2, 6, 4)
    mlp_ratios: tuple[tuple[float, ...], ...] = ((4, 4), (4, 4), (4, 3, 3, 3, 4, 4), (4, 3, 3, 4))
    attn: tuple[tuple[bool, ...], ...] = (
        (False, False),
        (False, False),
        (False, False, False, False, True, True),
        (False, False, True, True),
    )
    attn_downsample: bool = True
    num_heads: int = 8
    key_dim: int = 32
    attn_ratio: int = 4
    down_num_heads: int = 8
    down_key_dim: int = 16
    resolution: int = 224
    layer_scale_init: float = 1e-5
    num_classes: int = 1000
    distillation: bool = True

    def problems(self) -> list[str]:
        out = []
        widths_ok = isinstance(self.widths, tuple) and len(self.widths) == _NUM_STAGES
        if not widths_ok or not all(_is_int(w) for w in self.widths):
            out.append(f"widths: need {_NUM_STAGES} positive ints, got {self.widths!r}")
            widths_ok = False
        elif self.widths[0] < 2:
            out.append(f"widths: stage 1 needs >= 2 channels (the stem's first conv has half), got {self.widths[0]}")
        depths_ok = isinstance(self.depths, tuple) and len(self.depths) == _NUM_STAGES
        if not depths_ok or not all(_is_int(d, 0) for d in self.depths):
            out.append(f"depths: need {_NUM_STAGES} ints >= 0, got {self.depths!r}")
            depths_ok = False

        def per_block(name: str, value: Any, ok: Any, rule: str) -> None:
            if not isinstance(value, tuple) or len(value) != _NUM_STAGES:
                out.append(f"{name}: need one tuple per stage ({_NUM_STAGES}), got {value!r}")
                return
            bad = [i + 1 for i, s in enumerate(value) if not isinstance(s, tuple) or not all(ok(i, v) for v in s)]
            if depths_ok:
                bad += [i + 1 for i, s in enumerate(value) if isinstance(s, tuple) and len(s) != self.depths[i]]
            if bad:
                out.append(
                    f"{name}: stage(s) {sorted(set(bad))} need one entry per block (depths {self.depths!r}), "
                    f"each {rule}; got {value!r}"
                )

        def ratio_ok(i: int, r: Any) -> bool:
            if not isinstance(r, int | float) or isinstance(r, bool) or not r > 0:
                return False
            return not widths_ok or int(self.widths[i] * r) >= 1

        per_block("mlp_ratios", self.mlp_ratios, ratio_ok, "a number > 0 leaving >= 1 hidden channel")
        per_block(
            "attn",
            self.attn,
            lambda i, a: isinstance(a, bool) and (not a or i in _ATTN_STAGES),
            "a bool, True only in stages 3 and 4",
        )
        if not isinstance(self.attn_downsample, bool):
            out.append(f"attn_downsample: must be a bool, got {self.attn_downsample!r}")
        for name in ("num_heads", "key_dim", "attn_ratio", "down_num_heads", "down_key_dim", "num_classes"):
            if not _is_int(getattr(self, name)):
                out.append(f"{name}: must be a positive int, got {getattr(self, name)!r}")
        if not _is_int(self.resolution):
            out.append(f"resolution: must be a positive int, got {self.resolution!r}")
        elif self._has_stride_attention() and math.ceil(self.resolution / 16) % 2:
            out.append(
                f"resolution: stage 3 attention works on a stride-2 copy of the {math.ceil(self.resolution / 16)}"
                f"px map and upsamples it x2, so ceil(resolution / 16) must be even; {self.resolution} is not "
                f"(use e.g. {32 * math.ceil(self.resolution / 32)}), or turn stage 3 attention off"
            )
        if not isinstance(self.layer_scale_init, int | float) or not self.layer_scale_init > 0:
            out.append(f"layer_scale_init: must be a positive number, got {self.layer_scale_init!r}")
        if not isinstance(self.distillation, bool):
            out.append(f"distillation: must be a bool, got {self.distillation!r}")
        return out

    def _has_stride_attention(self) -> bool:
        try:
            return any(a is True for a in self.attn[_STRIDE_ATTN_STAGE])
        except (TypeError, IndexError):
            return False

    def stage_resolutions(self) -> tuple[int, ...]:
        """Feature-map side of each stage: stride 4 after the stem, then x2 per stage (convs round up)."""
        r = math.ceil(math.ceil(self.resolution / 2) / 2)
        sizes = [r]
        for _ in range(_NUM_STAGES - 1):
            r = math.ceil(r / 2)
            sizes.append(r)
        return tuple(sizes)


# --- blocks -------------------------------------------------------------------------------------
class ConvNorm(nn.Module):
    """Conv (with bias, as upstream) + BatchNorm; ``fuse()`` returns the folded conv."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        return fuse_conv_bn(self.conv, self.bn)


@torch.no_grad()
def _scale_conv_out(conv: nn.Conv2d, scale: torch.Tensor | float) -> None:
    """``conv(x) * scale`` (per output channel) folded into the conv's own weight and bias."""
    scale = torch.as_tensor(scale, dtype=conv.weight.dtype).expand(conv.out_channels)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    conv.bias.mul_(scale)


def _rel_bias_index(q_side: int, q_step: int, k_side: int) -> torch.Tensor:
    """``(Nq, Nk)`` index into a ``k_side**2`` table, entry ``|dy| * k_side + |dx|``.

    Queries sit on a grid of ``q_side**2`` points ``q_step`` apart, keys on the full ``k_side**2`` grid. This is
    the order the official code discovers offsets in, so its ``attention_biases`` tables load unchanged.
    """
    qy, qx = torch.meshgrid(torch.arange(q_side) * q_step, torch.arange(q_side) * q_step, indexing="ij")
    ky, kx = torch.meshgrid(torch.arange(k_side), torch.arange(k_side), indexing="ij")
    dy = (qy.reshape(-1, 1) - ky.reshape(1, -1)).abs()
    dx = (qx.reshape(-1, 1) - kx.reshape(1, -1)).abs()
    return dy * k_side + dx


class _BiasedAttention(nn.Module):
    """Shared bias handling: gather from the table while training, a dense buffer once fused."""

    attention_bias_idxs: torch.Tensor
    attention_bias_dense: torch.Tensor | None

    def _init_bias(self, num_heads: int, table_side: int, idxs: torch.Tensor) -> None:
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, table_side * table_side))
        self.register_buffer("attention_bias_idxs", idxs, persistent=False)  # derived, never read from files
        self.register_buffer("attention_bias_dense", None)  # set by fuse()

    def _bias(self) -> torch.Tensor:
        if self.attention_bias_dense is not None:
            return self.attention_bias_dense
        return self.attention_biases[:, self.attention_bias_idxs]

    @torch.no_grad()
    def _fuse_bias(self, q_conv: nn.Conv2d) -> None:
        dense = self.attention_biases[:, self.attention_bias_idxs].detach().clone()
        del self.attention_biases, self.attention_bias_idxs
        self.attention_bias_dense = dense
        _scale_conv_out(q_conv, self.scale)  # q·k·s == (s·q)·k: one Mul fewer per attention
        self.scale = 1.0


class Attention4D(_BiasedAttention):
    """Multi-head self-attention on an NCHW map with talking heads, position biases and a local value conv."""

    def __init__(self, dim: int, side: int, num_heads: int, key_dim: int, attn_ratio: int, stride: int = 1) -> None:
        super().__init__()
        self.num_heads, self.key_dim, self.d = num_heads, key_dim, attn_ratio * key_dim
        self.scale = key_dim**-0.5
        self.stride = stride
        if stride > 1:  # attend on a downsampled copy: 4x fewer tokens, 16x smaller attention maps
            self.stride_conv = ConvNorm(dim, dim, 3, stride, groups=dim)
        self.side = math.ceil(side / stride)
        self.n = self.side * self.side
        dh = self.d * num_heads
        self.q = ConvNorm(dim, key_dim * num_heads)
        self.k = ConvNorm(dim, key_dim * num_heads)
        self.v = ConvNorm(dim, dh)
        self.v_local = ConvNorm(dh, dh, 3, groups=dh)
        self.talking_head1 = nn.Conv2d(num_heads, num_heads, 1)
        self.talking_head2 = nn.Conv2d(num_heads, num_heads, 1)
        self.act = nn.GELU()
        self.proj = ConvNorm(dh, dim)
        self._init_bias(num_heads, self.side, _rel_bias_index(self.side, 1, self.side))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = self.stride_conv(x)
        h, n = self.num_heads, self.n
        # reshape(-1, ...) keeps the batch dynamic while every other size is static
        q = self.q(x).reshape(-1, h, self.key_dim, n).transpose(-2, -1)
        k = self.k(x).reshape(-1, h, self.key_dim, n)
        v = self.v(x)
        v_local = self.v_local(v)
        v = v.reshape(-1, h, self.d, n).transpose(-2, -1)
        attn = q @ k
        if self.scale != 1.0:
            attn = attn * self.scale
        attn = self.talking_head2(self.talking_head1(attn + self._bias()).softmax(dim=-1))
        out = (attn @ v).transpose(-2, -1).reshape(-1, h * self.d, self.side, self.side) + v_local
        if self.stride > 1:
            out = F.interpolate(out, scale_factor=float(self.stride), mode="bilinear", align_corners=False)
        return self.proj(self.act(out))

    @torch.no_grad()
    def fuse(self) -> Attention4D:
        self._fuse_bias(self.q)
        return self


class LocalGlobalQuery(nn.Module):
    """Stride-2 query: a depthwise 3x3 (local) plus plain subsampling (global), then a 1x1 projection."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.local = nn.Conv2d(dim, dim, 3, 2, 1, groups=dim)
        self.proj = ConvNorm(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.local(x) + x[:, :, ::2, ::2])  # upstream's AvgPool2d(1, 2) is this subsampling

    @torch.no_grad()
    def fuse(self) -> nn.Sequential:
        # the subsample picks exactly the centre tap of each stride-2 3x3 window: +1 there absorbs it
        local = nn.Conv2d(self.local.in_channels, self.local.out_channels, 3, 2, 1, groups=self.local.groups)
        local.weight.copy_(self.local.weight)
        local.weight[:, :, 1, 1] += 1.0
        local.bias.copy_(self.local.bias)
        return nn.Sequential(local, self.proj)


class Attention4DDownsample(_BiasedAttention):
    """Attention from a stride-2 local-global query onto the full-resolution keys; outputs the next width."""

    def __init__(self, dim: int, out_dim: int, side: int, num_heads: int, key_dim: int, attn_ratio: int) -> None:
        super().__init__()
        self.num_heads, self.key_dim, self.d = num_heads, key_dim, attn_ratio * key_dim
        self.scale = key_dim**-0.5
        self.side, self.side2 = side, math.ceil(side / 2)
        self.n, self.n2 = side * side, self.side2 * self.side2
        dh = self.d * num_heads
        self.q = LocalGlobalQuery(dim, key_dim * num_heads)
        self.k = ConvNorm(dim, key_dim * num_heads)
        self.v = ConvNorm(dim, dh)
        self.v_local = ConvNorm(dh, dh, 3, 2, groups=dh)
        self.act = nn.GELU()
        self.proj = ConvNorm(dh, out_dim)
        self._init_bias(num_heads, side, _rel_bias_index(self.side2, 2, side))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.num_heads
        q = self.q(x).reshape(-1, h, self.key_dim, self.n2).transpose(-2, -1)
        k = self.k(x).reshape(-1, h, self.key_dim, self.n)
        v = self.v(x)
        v_local = self.v_local(v)
        v = v.reshape(-1, h, self.d, self.n).transpose(-2, -1)
        attn = q @ k
        if self.scale != 1.0:
            attn = attn * self.scale
        attn = (attn + self._bias()).softmax(dim=-1)
        out = (attn @ v).transpose(-2, -1).reshape(-1, h * self.d, self.side2, self.side2) + v_local
        return self.proj(self.act(out))

    @torch.no_grad()
    def fuse(self) -> Attention4DDownsample:
        self._fuse_bias(self.q[-1])  # q is LocalGlobalQuery.fuse()'s Sequential(local, proj) by now
        return self


class Downsample(nn.Module):
    """Stride-2 3x3 conv-BN to the next width, plus (stage 3->4) an attention branch."""

    def __init__(self, dim: int, out_dim: int, side: int, arch: EfficientFormerV2Arch, use_attn: bool) -> None:
        super().__init__()
        self.conv = ConvNorm(dim, out_dim, 3, 2)
        self.attn = (
            Attention4DDownsample(dim, out_dim, side, arch.down_num_heads, arch.down_key_dim, arch.attn_ratio)
            if use_attn
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out + self.attn(x) if self.attn is not None else out


class ConvMlp(nn.Module):
    """1x1 expand -> depthwise 3x3 -> 1x1 project, each with BN; GELU after the first two."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = ConvNorm(dim, hidden)
        self.mid = ConvNorm(hidden, hidden, 3, groups=hidden)
        self.fc2 = ConvNorm(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.mid(self.act(self.fc1(x)))))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.reshape(1, -1, 1, 1)


class Block(nn.Module):
    """FFN block, optionally preceded by an attention token mixer; both residual with layer scale."""

    def __init__(
        self, dim: int, mlp_ratio: float, use_attn: bool, side: int, stride: int, arch: EfficientFormerV2Arch
    ) -> None:
        super().__init__()
        if use_attn:
            self.token_mixer = Attention4D(dim, side, arch.num_heads, arch.key_dim, arch.attn_ratio, stride)
            self.ls1 = LayerScale(dim, arch.layer_scale_init)
        else:
            self.token_mixer = self.ls1 = None
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, arch.layer_scale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.token_mixer is not None:
            x = x + self.ls1(self.token_mixer(x))
        return x + self.ls2(self.mlp(x))

    @torch.no_grad()
    def fuse(self) -> Block:
        # children are fused first, so fc2 and proj are plain convs: the layer scales become their output scales
        if self.token_mixer is not None and isinstance(self.ls1, LayerScale):
            _scale_conv_out(self.token_mixer.proj, self.ls1.gamma)
            self.ls1 = nn.Identity()
        if isinstance(self.ls2, LayerScale):
            _scale_conv_out(self.mlp.fc2, self.ls2.gamma)
            self.ls2 = nn.Identity()
        return self


class Stage(nn.Module):
    def __init__(self, i: int, in_dim: int, side: int, arch: EfficientFormerV2Arch) -> None:
        super().__init__()
        dim = arch.widths[i]
        if i > 0:
            self.downsample = Downsample(in_dim, dim, side, arch, use_attn=i == 3 and arch.attn_downsample)
            side = math.ceil(side / 2)
        else:
            self.downsample = nn.Identity()
        stride = 2 if i == _STRIDE_ATTN_STAGE else 1
        self.blocks = nn.Sequential(
            *(Block(dim, r, a, side, stride, arch) for r, a in zip(arch.mlp_ratios[i], arch.attn[i], strict=True))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class Stem(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(3, dim // 2, 3, 2)
        self.conv2 = ConvNorm(dim // 2, dim, 3, 2)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.act(self.conv1(x))))


# --- model --------------------------------------------------------------------------------------
_HEAD_GROUPED = {  # attention tensor name -> (dim whose channels are grouped per head, "k" or "v" group size)
    "q.conv": (0, "k"),
    "q.bn": (0, "k"),
    "q.proj.conv": (0, "k"),
    "q.proj.bn": (0, "k"),
    "k.conv": (0, "k"),
    "k.bn": (0, "k"),
    "v.conv": (0, "v"),
    "v.bn": (0, "v"),
    "v_local.conv": (0, "v"),
    "v_local.bn": (0, "v"),
    "proj.conv.weight": (1, "v"),
}


class EfficientFormerV2(ElasticModel):
    """EfficientFormerV2 built from an explicit :class:`EfficientFormerV2Arch`.

    Example::

        model = EfficientFormerV2(EfficientFormerV2Arch(resolution=96)).eval()
        logits = model(torch.randn(2, 3, 96, 96))
    """

    def __init__(self, arch: EfficientFormerV2Arch) -> None:
        super().__init__()
        arch.validate()
        self.arch = arch
        sides = arch.stage_resolutions()
        self.stem = Stem(arch.widths[0])
        self.stages = nn.Sequential(
            *(Stage(i, arch.widths[max(i - 1, 0)], sides[max(i - 1, 0)], arch) for i in range(_NUM_STAGES))
        )
        self.norm = nn.BatchNorm2d(arch.widths[-1])
        self.head = nn.Linear(arch.widths[-1], arch.num_classes)
        self.head_dist = nn.Linear(arch.widths[-1], arch.num_classes) if arch.distillation else None
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        r = self.arch.resolution
        # sizes are plain ints under torch.export; under TorchScript tracing they are traced values, so skip there
        if not torch.jit.is_tracing() and (x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != r or x.shape[3] != r):
            raise InputMismatchError(
                f"EfficientFormerV2 built for (batch, 3, {r}, {r}) inputs got {tuple(x.shape)}; its attention "
                f"biases are sized for {r}px: resize the input or build with resolution={x.shape[-1]}."
            )
        return self.norm(self.stages(self.stem(x)))

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class and distillation logits separately (for distillation training)."""
        x = self.forward_features(x).mean(dim=(2, 3))
        return self.head(x), (self.head_dist(x) if self.head_dist is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, dist = self.forward_heads(x)
        return logits if dist is None else (logits + dist) / 2  # as upstream at inference

    @torch.no_grad()
    def fuse(self) -> EfficientFormerV2:
        if getattr(self, "fused", False):  # a second fuse would fold the biases and norms again
            return self
        super().fuse()
        if isinstance(self.norm, nn.BatchNorm2d):
            # the BN is per channel and affine, so it commutes with the average pool into the head(s); the two
            # heads are linear, so their average is one linear layer
            heads = [self.head] + ([self.head_dist] if self.head_dist is not None else [])
            avg = nn.Linear(self.head.in_features, self.head.out_features)
            avg.weight.copy_(torch.stack([h.weight for h in heads]).mean(0))
            avg.bias.copy_(torch.stack([h.bias for h in heads]).mean(0))
            self.head, self.head_dist, self.norm = fuse_bn_linear(self.norm, avg), None, nn.Identity()
        return self

    # --- elasticity: keys are per stage and per block, so a sub-network's keys equal its parent's ------------
    def parent_key_map(self, parent_arch: Any) -> dict[str, str]:
        # slice_param needs the parent's head layout; this hook is the only one that sees the parent's arch
        self._slice_parent_arch = parent_arch
        return super().parent_key_map(parent_arch)

    def slice_param(self, key: str, parent_value: torch.Tensor, child_shape: torch.Size) -> torch.Tensor:
        parent_arch = getattr(self, "_slice_parent_arch", self.arch)
        for marker, heads, kd in (
            ("token_mixer.", "num_heads", "key_dim"),
            ("downsample.attn.", "down_num_heads", "down_key_dim"),
        ):
            if marker not in key:
                continue
            name = key.split(marker, 1)[1]
            if name == "attention_biases":
                # table entry |dy| * side + |dx|: a smaller side keeps the small offsets, not the leading entries
                side_p, side_c = math.isqrt(parent_value.shape[1]), math.isqrt(child_shape[1])
                table = parent_value.reshape(-1, side_p, side_p)[: child_shape[0], :side_c, :side_c]
                return table.reshape(child_shape).clone()
            group = next((g for prefix, g in _HEAD_GROUPED.items() if name.startswith(prefix)), None)
            if group is not None:
                dim, kind = group
                hp, hc = getattr(parent_arch, heads), getattr(self.arch, heads)
                per_p, per_c = getattr(parent_arch, kd), getattr(self.arch, kd)
                if kind == "v":
                    per_p, per_c = per_p * parent_arch.attn_ratio, per_c * self.arch.attn_ratio
                grouped = parent_value.unflatten(dim, (hp, per_p)).narrow(dim, 0, hc).narrow(dim + 1, 0, per_c)
                parent_value = grouped.flatten(dim, dim + 1)
            break
        return super().slice_param(key, parent_value, child_shape)


# --- checkpoint remap ---------------------------------------------------------------------------
_OFFICIAL_STEM = {"0": "stem.conv1.conv", "1": "stem.conv1.bn", "3": "stem.conv2.conv", "4": "stem.conv2.bn"}
_OFFICIAL_MLP = {
    "fc1": "fc1.conv",
    "norm1": "fc1.bn",
    "mid": "mid.conv",
    "mid_norm": "mid.bn",
    "fc2": "fc2.conv",
    "norm2": "fc2.bn",
}
_OFFICIAL_DOWN_CONV = {"proj": "conv.conv", "norm": "conv.bn", "conv": "conv.conv", "bn": "conv.bn"}


def _official_attn(rest: list[str]) -> list[str]:
    """Attention4D / Attention4DDownsample: ``nn.Sequential`` indices -> our ``conv``/``bn`` names."""
    seq = {"0": "conv", "1": "bn"}
    if rest[0] == "proj" and len(rest) > 2:  # Sequential(act, conv, bn)
        return ["proj", {"1": "conv", "2": "bn"}.get(rest[1], rest[1]), *rest[2:]]
    if rest[:2] == ["q", "local"] and len(rest) > 3:  # LGQuery.local is Sequential(conv)
        return ["q", "local", *rest[3:]]
    if rest[:2] == ["q", "proj"] and len(rest) > 3:
        return ["q", "proj", seq.get(rest[2], rest[2]), *rest[3:]]
    if rest[0] in ("q", "k", "v", "v_local", "stride_conv") and len(rest) > 2:
        return [rest[0], seq.get(rest[1], rest[1]), *rest[2:]]
    return rest


def _official_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor]:
    parts = key.split(".")
    if parts[0] == "patch_embed" and len(parts) > 2 and parts[1] in _OFFICIAL_STEM:
        return f"{_OFFICIAL_STEM[parts[1]]}.{'.'.join(parts[2:])}", value
    if parts[0] == "dist_head":
        return "head_dist." + ".".join(parts[1:]), value
    if parts[0] != "network" or len(parts) < 3 or not parts[1].isdigit():
        return key, value
    n, rest = int(parts[1]), parts[2:]
    if n % 2:  # odd entries are the Embedding between stages
        prefix = f"stages.{(n + 1) // 2}.downsample"
        if rest[0] == "attn":
            return ".".join([prefix, "attn", *_official_attn(rest[1:])]), value
        return ".".join([prefix, _OFFICIAL_DOWN_CONV.get(rest[0], rest[0]), *rest[1:]]), value
    prefix, (block, *rest) = f"stages.{n // 2}.blocks", rest
    if rest[0] in ("layer_scale_1", "layer_scale_2") and len(rest) == 1:  # (C, 1, 1) -> (C,)
        return f"{prefix}.{block}.ls{rest[0][-1]}.gamma", value.reshape(-1)
    if rest[0] == "mlp" and len(rest) > 2:
        rest = ["mlp", _OFFICIAL_MLP.get(rest[1], rest[1]), *rest[2:]]
    elif rest[0] == "token_mixer" and len(rest) > 1:
        rest = ["token_mixer", *_official_attn(rest[1:])]
    return ".".join([prefix, block, *rest]), value


def remap_checkpoint(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official snap-research or timm EfficientFormerV2 keys -> ours (timm's layout; our own keys pass through).

    ``attention_bias_idxs`` buffers, present in official checkpoints, are dropped: they are a pure function of
    the resolution and we derive them.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("attention_bias_idxs"):
            continue
        new_key, new_value = _official_key(key, value)
        out[new_key] = new_value
    return out


# --- registration -------------------------------------------------------------------------------
for _name, (_widths, _depths, (_r3, _r4), _n_attn, _params, _macs) in _VARIANTS.items():
    register_model(
        ModelSpec(
            name=_name,
            family="efficientformer_v2",
            task="image-classification",
            build=EfficientFormerV2,
            arch=EfficientFormerV2Arch(
                widths=_widths,
                depths=_depths,
                mlp_ratios=((4,) * _depths[0], (4,) * _depths[1], _r3, _r4),
                attn=tuple(
                    tuple(i in _ATTN_STAGES and j >= d - _n_attn for j in range(d)) for i, d in enumerate(_depths)
                ),
            ),
            # timm's eval transform for the released weights; the official eval used crop 0.875
            input=ImageInput(resolution=224, crop_pct=0.95, interpolation="bicubic"),
            num_classes=1000,
            export=ExportHints(),
            remap=remap_checkpoint,
            labels="imagenet",
            paper="Li et al., Rethinking Vision Transformers for MobileNet Size and Speed, ICCV 2023, arXiv:2212.08059",
            repo="https://github.com/snap-research/EfficientFormer",
            license="Apache-2.0",
            params_m=_params,
            macs_g=_macs,
            counts_distillation_head=True,
            notes="Params equal timm's and the official code's exactly (both heads counted, as for EfficientFormer "
            "V1, whose published counts include the distillation head); the paper rounds S0 (3.60M measured) and "
            "S1 (6.19M) below the code. resolution must keep ceil(resolution/16) even while stage 3 has attention.",
        )
    )
