"""SHViT: Single-Head Vision Transformer with Memory Efficient Macro Design.

Paper: Seokju Yun, Youngmin Ro, CVPR 2024, https://arxiv.org/abs/2401.16456
Upstream: https://github.com/ysj9909/SHViT (``model/shvit.py``, ``model/build.py``, MIT license);
timm port: ``timm/models/shvit.py``.

The network: a 16x16 overlapping patchify stem (four stride-2 3x3 conv-bn, ReLU between), then three
stages at strides 16/32/64. Every block is ``x + dwconv3x3(x)``, then ``x + SHSA(x)`` (attention blocks
only), then ``x + FFN(x)``. SHSA is single-head attention over only the first ``pdim`` channels (after a
one-group GroupNorm); the other channels pass through untouched and a ReLU + 1x1 conv-bn mixes both.
Between stages sit ``dw-res, FFN-res, PatchMerging (1x1, dw3x3/2, SE, 1x1), dw-res, FFN-res``. The head is
global average pooling, BatchNorm1d and a linear layer (plus an optional distillation head).

What we changed:
- The architecture is an explicit, elastic :class:`SHViTArch`: per-stage widths, depths, partial and
  query/key dims, a per-block FFN ratio and a per-block attention switch (upstream: one ``"i"``/``"s"``
  type per stage and a fixed FFN ratio of 2). The published variants are exactly upstream's.
- State-dict keys follow timm (``stages.{i}.downsample.{k}`` / ``stages.{i}.blocks.{j}``); blocks are
  numbered per stage so that dropping a block keeps every other key. :func:`remap_checkpoint` converts
  the official ``blocks1/2/3`` layout.
- Stage 0 never has a downsample (timm skips it when two adjacent widths are equal, which would silently
  drop a PatchMerging from a sub-network with equal widths).
- The one-group GroupNorm is computed as a LayerNorm over (C, H, W) plus the same per-channel affine (same
  keys, same numbers): it exports as one LayerNormalization instead of InstanceNormalization in reshapes.
- SHSA scales ``q`` rather than the ``N x N`` logits and never transposes the ``N x N`` map.
- ``fuse()`` folds every BatchNorm, the identity of residual depthwise convs (as upstream does), the
  pre-norm's affine and the attention scale into the qkv conv.

SHViT has no position biases, so the model runs at any input size (tests use 64x64).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidArchError
from ..inputs import IMAGENET_MEAN, IMAGENET_STD, ImageInput
from .layers import ConvBN, ElasticModel, fuse_bn_linear
from .spec import ArchBase, ExportHints, ModelSpec
from .spec import is_int as _is_int
from .spec import to_tuples as _to_tuples
from .zoo import register_model

# name: (embed_dims, depths, partial_dims, resolution, published params (M), published MACs (G))
_VARIANTS = {
    "shvit_s1": ((128, 224, 320), (2, 4, 5), (32, 48, 68), 224, 6.3, 0.241),
    "shvit_s2": ((128, 308, 448), (2, 4, 5), (32, 66, 96), 224, 11.4, 0.366),
    "shvit_s3": ((192, 352, 448), (3, 5, 5), (48, 75, 96), 224, 14.2, 0.601),
    "shvit_s4": ((224, 336, 448), (4, 7, 6), (48, 72, 96), 256, 16.5, 0.986),
}
# Every published variant uses types ("i", "s", "s"): stage 0 is convolution-only (attention at
# stride 16 is where the paper finds it most redundant), stages 1-2 put SHSA in every block.
_ATTENTION_STAGES = (False, True, True)
_QK_DIM = 16
_MLP_RATIO = 2.0  # FFN expansion of every block upstream
_DOWNSAMPLE_MLP_RATIO = 2  # FFNs around PatchMerging; fixed, they are not elastic
_MERGE_RATIO = 4  # PatchMerging hidden width = 4 * input width
_SE_RATIO = 0.25


def _make_divisible(v: float, divisor: int = 8) -> int:
    """timm's ``make_divisible(v, 8, round_limit=0)``, which sizes the SE reduction in upstream checkpoints."""
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


@dataclass(frozen=True, kw_only=True)
class SHViTArch(ArchBase):
    """The elastic SHViT architecture; one entry per stage, per-block fields hold one value per block.

    Example::

        arch = get_spec("shvit_s1").arch.replace(
            depths=(1, 2, 3), mlp_ratios=((2.0,), (2.0, 1.5), (2.0, 2.0, 1.0)),
            attention=((False,), (True, False), (True, True, True)))
    """

    embed_dims: tuple[int, ...]
    depths: tuple[int, ...]
    partial_dims: tuple[int, ...]  # channels that go through SHSA; the rest pass through
    qk_dims: tuple[int, ...]
    mlp_ratios: tuple[tuple[float, ...], ...]  # FFN hidden = int(width * ratio), per block
    attention: tuple[tuple[bool, ...], ...]  # whether each block has an SHSA mixer
    num_classes: int = 1000
    distillation: bool = False
    in_chans: int = 3

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _to_tuples(getattr(self, f.name)))

    @property
    def num_stages(self) -> int:
        return len(self.embed_dims) if isinstance(self.embed_dims, tuple) else 0

    def problems(self) -> list[str]:
        out: list[str] = []
        n = self.num_stages

        def per_stage_ints(name: str, values, minimum: int = 1) -> bool:
            if not isinstance(values, tuple) or len(values) != n:
                out.append(f"{name}: needs one int per stage ({n}), got {values!r}")
                return False
            if not all(_is_int(v) and v >= minimum for v in values):
                out.append(f"{name}: every entry must be an int >= {minimum}, got {values!r}")
                return False
            return True

        widths_ok = isinstance(self.embed_dims, tuple) and n >= 1
        if not widths_ok:
            out.append(f"embed_dims: needs a tuple of at least one width, got {self.embed_dims!r}")
        elif not all(_is_int(v) and v >= 1 for v in self.embed_dims):
            out.append(f"embed_dims: every width must be an int >= 1, got {self.embed_dims!r}")
            widths_ok = False
        elif self.embed_dims[0] < 8:
            out.append(f"embed_dims: the first width must be >= 8 (the stem starts at width // 8): {self.embed_dims}")
            widths_ok = False
        depths_ok = per_stage_ints("depths", self.depths)
        if per_stage_ints("partial_dims", self.partial_dims) and widths_ok:
            over = [i for i, (p, w) in enumerate(zip(self.partial_dims, self.embed_dims, strict=True)) if p > w]
            if over:
                out.append(
                    f"partial_dims: must not exceed the stage width, stage(s) {over} do: "
                    f"{self.partial_dims} vs widths {self.embed_dims}"
                )
        per_stage_ints("qk_dims", self.qk_dims)

        def per_block(name: str, values, check, what: str) -> None:
            if not isinstance(values, tuple) or len(values) != n:
                out.append(f"{name}: needs one tuple per stage ({n}), got {values!r}")
                return
            if not depths_ok:  # per-block lengths cannot be checked against broken depths
                return
            bad = []
            for i, (stage, depth) in enumerate(zip(values, self.depths, strict=True)):
                if not isinstance(stage, tuple) or len(stage) != depth:
                    bad.append(f"stage {i} needs {depth} value(s) (depths[{i}]), got {stage!r}")
                elif not all(check(i, v) for v in stage):
                    bad.append(f"stage {i} has a value that is not {what}: {stage!r}")
            if bad:
                out.append(f"{name}: " + ", ".join(bad))

        def ratio_ok(i: int, r) -> bool:
            if isinstance(r, bool) or not isinstance(r, int | float) or not r > 0:
                return False
            return not widths_ok or int(self.embed_dims[i] * r) >= 1

        per_block("mlp_ratios", self.mlp_ratios, ratio_ok, "a ratio > 0 giving at least one hidden channel")
        per_block("attention", self.attention, lambda i, v: isinstance(v, bool), "a bool")
        if not _is_int(self.num_classes) or self.num_classes < 1:
            out.append(f"num_classes: must be an int >= 1, got {self.num_classes!r}")
        if not isinstance(self.distillation, bool):
            out.append(f"distillation: must be a bool, got {self.distillation!r}")
        if not _is_int(self.in_chans) or self.in_chans < 1:
            out.append(f"in_chans: must be an int >= 1, got {self.in_chans!r}")
        return out


# --- blocks --------------------------------------------------------------------------------------
class Residual(nn.Module):
    """``x + m(x)``; with a depthwise 3x3 conv inside, ``fuse()`` folds the identity into its centre tap."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.m(x)

    @torch.no_grad()
    def fuse(self) -> nn.Module:
        m = self.m  # fuse_children has already turned a ConvBN child into a plain conv
        depthwise = (
            isinstance(m, nn.Conv2d)
            and m.groups == m.in_channels == m.out_channels
            and m.kernel_size == (3, 3)
            and m.stride == (1, 1)
            and m.padding == (1, 1)
            and m.bias is not None
        )
        if not depthwise:
            return self
        m.weight[:, 0, 1, 1] += 1.0
        return m


class FFN(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.pw1 = ConvBN(dim, hidden)
        self.act = nn.ReLU()
        # zero-init BN gamma: every residual branch starts as the identity (upstream's init)
        self.pw2 = ConvBN(hidden, dim, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw2(self.act(self.pw1(x)))


class SqueezeExcite(nn.Module):
    """timm's ``SEModule`` (same key names ``fc1``/``fc2``): mean, 1x1 reduce, ReLU, 1x1 expand, sigmoid."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(s)


class PatchMerging(nn.Module):
    """Halves the resolution: 1x1 expand (x4), depthwise 3x3 stride 2, SE, 1x1 project."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        hidden = dim * _MERGE_RATIO
        self.conv1 = ConvBN(dim, hidden)
        self.act1 = nn.ReLU()
        self.conv2 = ConvBN(hidden, hidden, 3, 2, 1, groups=hidden)
        self.act2 = nn.ReLU()
        self.se = SqueezeExcite(hidden, _make_divisible(hidden * _SE_RATIO))
        self.conv3 = ConvBN(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.se(self.act2(self.conv2(self.act1(self.conv1(x))))))


class GroupNorm1(nn.Module):
    """``nn.GroupNorm(1, dim)`` (same keys), written as a LayerNorm over (C, H, W) plus a per-channel affine.

    GroupNorm exports as InstanceNormalization wrapped in reshapes, expands and ranges; LayerNormalization
    is one op that every runtime fuses. ``SHSA.fuse()`` folds the affine into the qkv conv (``affine=False``).
    """

    def __init__(self, dim: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():  # the TorchScript exporter needs a constant normalized_shape
            x = F.group_norm(x, 1, eps=self.eps)
        else:
            x = F.layer_norm(x, x.shape[1:], eps=self.eps)
        if self.weight is None:
            return x
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class SHSA(nn.Module):
    """Single-head self-attention on the first ``pdim`` channels; the rest bypass it (the paper's Fig. 4)."""

    def __init__(self, dim: int, qk_dim: int, pdim: int) -> None:
        super().__init__()
        self.dim, self.qk_dim, self.pdim = dim, qk_dim, pdim
        self.scale = qk_dim**-0.5
        self.pre_norm = GroupNorm1(pdim)  # per-sample statistics: not foldable, only its affine is
        self.qkv = ConvBN(pdim, 2 * qk_dim + pdim)
        self.proj = nn.Sequential(nn.ReLU(), ConvBN(dim, dim, bn_weight_init=0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channel slices, not torch.split: they export as Slice instead of SplitToSequence + SequenceAt
        p, q_dim = self.pdim, self.qk_dim
        x1 = x[:, :p] if p < self.dim else x
        qkv = self.qkv(self.pre_norm(x1)).flatten(2)  # (B, 2 * qk + p, N)
        q, k, v = qkv[:, :q_dim], qkv[:, q_dim : 2 * q_dim], qkv[:, 2 * q_dim :]
        if self.scale != 1.0:  # fuse() folds the scale into the q rows of the qkv conv
            q = q * self.scale
        attn = (q.transpose(-2, -1) @ k).softmax(dim=-1)  # (B, N, N)
        # (attn @ v^T)^T == v @ attn^T, but only the small (N, p) operands get transposed, never the N x N map
        x1 = (attn @ v.transpose(-2, -1)).transpose(-2, -1).unflatten(2, x1.shape[2:])
        return self.proj(torch.cat([x1, x[:, p:]], dim=1) if p < self.dim else x1)

    @torch.no_grad()
    def fuse(self) -> SHSA:
        """Fold the pre-norm's affine and the attention scale into the (already BN-folded) qkv conv.

        ``W(γx + β) = (Wγ)x + Wβ``; scaling the q rows scales the logits. The graph loses two Mul/Add
        pairs and one Mul per block.
        """
        norm, conv = self.pre_norm, self.qkv
        if norm.weight is None or not isinstance(conv, nn.Conv2d):
            return self
        conv.bias.add_(conv.weight[:, :, 0, 0] @ norm.bias)
        conv.weight.mul_(norm.weight[None, :, None, None])
        conv.weight[: self.qk_dim].mul_(self.scale)
        conv.bias[: self.qk_dim].mul_(self.scale)
        self.pre_norm = GroupNorm1(self.pdim, norm.eps, affine=False)
        self.scale = 1.0
        return self


class BasicBlock(nn.Module):
    def __init__(self, dim: int, qk_dim: int, pdim: int, mlp_ratio: float, attention: bool) -> None:
        super().__init__()
        self.conv = Residual(ConvBN(dim, dim, 3, 1, 1, groups=dim, bn_weight_init=0.0))
        self.mixer = Residual(SHSA(dim, qk_dim, pdim)) if attention else nn.Identity()
        self.ffn = Residual(FFN(dim, int(dim * mlp_ratio)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.mixer(self.conv(x)))


def _downsample(dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        Residual(ConvBN(dim, dim, 3, 1, 1, groups=dim)),
        Residual(FFN(dim, dim * _DOWNSAMPLE_MLP_RATIO)),
        PatchMerging(dim, out_dim),
        Residual(ConvBN(out_dim, out_dim, 3, 1, 1, groups=out_dim)),
        Residual(FFN(out_dim, out_dim * _DOWNSAMPLE_MLP_RATIO)),
    )


class Stage(nn.Module):
    def __init__(self, arch: SHViTArch, i: int) -> None:
        super().__init__()
        dim = arch.embed_dims[i]
        self.downsample = _downsample(arch.embed_dims[i - 1], dim) if i > 0 else nn.Identity()
        self.blocks = nn.Sequential(
            *(
                BasicBlock(dim, arch.qk_dims[i], arch.partial_dims[i], ratio, attn)
                for ratio, attn in zip(arch.mlp_ratios[i], arch.attention[i], strict=True)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class BNLinear(nn.Sequential):
    """BatchNorm1d then linear (upstream ``BN_Linear``); ``fuse()`` folds the BN into the linear."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(in_features)
        self.l = nn.Linear(in_features, out_features)  # upstream's key name
        nn.init.trunc_normal_(self.l.weight, std=0.02)
        nn.init.zeros_(self.l.bias)

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        return fuse_bn_linear(self.bn, self.l)


# --- model ---------------------------------------------------------------------------------------
class SHViT(ElasticModel):
    """SHViT classifier built from an :class:`SHViTArch`.

    Example::

        model = SHViT(get_spec("shvit_s1").arch).eval().fuse()
        logits = model(torch.randn(1, 3, 224, 224))
    """

    def __init__(self, arch: SHViTArch) -> None:
        super().__init__()
        arch.validate()
        self.arch = arch
        e0 = arch.embed_dims[0]
        self.patch_embed = nn.Sequential(
            ConvBN(arch.in_chans, e0 // 8, 3, 2, 1),
            nn.ReLU(),
            ConvBN(e0 // 8, e0 // 4, 3, 2, 1),
            nn.ReLU(),
            ConvBN(e0 // 4, e0 // 2, 3, 2, 1),
            nn.ReLU(),
            ConvBN(e0 // 2, e0, 3, 2, 1),
        )
        self.stages = nn.Sequential(*(Stage(arch, i) for i in range(arch.num_stages)))
        self.head = BNLinear(arch.embed_dims[-1], arch.num_classes)
        self.head_dist = BNLinear(arch.embed_dims[-1], arch.num_classes) if arch.distillation else None
        self._qkv_rows: dict[str, torch.Tensor] = {}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.patch_embed(x)).mean((2, 3))

    def forward(self, x: torch.Tensor):
        x = self.forward_features(x)
        if self.head_dist is None:
            return self.head(x)
        logits, dist = self.head(x), self.head_dist(x)
        # training returns both for the distillation loss; inference averages them (upstream and timm)
        return (logits, dist) if self.training else (logits + dist) / 2

    # --- elasticity ------------------------------------------------------------------------------
    def parent_key_map(self, parent_arch: SHViTArch) -> dict[str, str]:
        """Keys are equal in parent and child (blocks are numbered per stage); plans the qkv row slices.

        The qkv conv packs ``[q | k | v]`` along its output channels, so a child with a smaller qk_dim or
        pdim takes the leading rows of *each* part, which needs the parent's sizes: ``slice_param`` only
        sees shapes, so the row indices are planned here (``slice_weights`` calls this first).
        """
        arch, problems = self.arch, []
        if arch.num_stages != parent_arch.num_stages:
            problems.append(f"embed_dims: the child has {arch.num_stages} stages, the parent {parent_arch.num_stages}")
        self._qkv_rows = {}
        for i in range(min(arch.num_stages, parent_arch.num_stages)):
            q, p = arch.qk_dims[i], arch.partial_dims[i]
            pq, pp = parent_arch.qk_dims[i], parent_arch.partial_dims[i]
            if not any(arch.attention[i]):
                continue
            if q > pq:
                problems.append(f"qk_dims: stage {i} has {q} > the parent's {pq}")
            if p > pp:
                problems.append(f"partial_dims: stage {i} has {p} > the parent's {pp}")
            rows = torch.cat([torch.arange(q), pq + torch.arange(q), 2 * pq + torch.arange(p)])
            for j, attn in enumerate(arch.attention[i]):
                if attn:
                    prefix = f"stages.{i}.blocks.{j}.mixer.m.qkv."
                    for name in ("c.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
                        self._qkv_rows[prefix + name] = rows
        if problems:
            raise InvalidArchError(problems, arch_name=f"sub-network of {type(self).__name__}")
        return super().parent_key_map(parent_arch)

    def slice_param(self, key: str, parent_value: torch.Tensor, child_shape: torch.Size) -> torch.Tensor:
        rows = self._qkv_rows.get(key)
        if rows is None:
            return super().slice_param(key, parent_value, child_shape)
        value = parent_value.index_select(0, rows)
        return super().slice_param(key, value, child_shape)


# --- checkpoints ---------------------------------------------------------------------------------
# Official layout: stage s's blocks live in ``blocks{s+1}``; for s > 0 its first three entries are the
# downsample: 0 = Sequential(dw-res, FFN-res), 1 = PatchMerging, 2 = Sequential(dw-res, FFN-res).
_OFFICIAL_DOWNSAMPLE = {"0.0": 0, "0.1": 1, "1": 2, "2.0": 3, "2.1": 4}
_OFFICIAL_KEY = re.compile(r"^blocks(\d+)\.(\d+)\.(?:(\d+)\.)?(.*)$")


def _official_to_ours(key: str) -> str:
    m = _OFFICIAL_KEY.match(key)
    if m is None:
        return key  # patch_embed.*, head.*, head_dist.* are named alike everywhere
    stage, idx, sub, rest = int(m[1]) - 1, int(m[2]), m[3], m[4]
    tail = rest if sub is None else f"{sub}.{rest}"
    if stage == 0:
        return f"stages.0.blocks.{idx}.{tail}"
    if idx >= 3:
        return f"stages.{stage}.blocks.{idx - 3}.{tail}"
    position = f"{idx}.{sub}" if idx != 1 else "1"  # 1 is the PatchMerging itself (children conv1, se, ...)
    if position not in _OFFICIAL_DOWNSAMPLE:
        return key  # not an SHViT key; load_strict reports it as unexpected
    return f"stages.{stage}.downsample.{_OFFICIAL_DOWNSAMPLE[position]}.{rest if idx != 1 else tail}"


def remap_checkpoint(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official (``blocks1/2/3``) or timm (``stages.*``, already ours) SHViT keys to ours.

    Upstream's loader reshapes 2-D weights of 1x1 convs to 4-D (``d[k][:, :, None, None]``), so some
    released files may store them flat; we do the same for conv and SE weights, never for the heads.
    """
    out = {}
    for key, value in state.items():
        new = _official_to_ours(key)
        if value.dim() == 2 and re.search(r"(\.c|\.se\.fc[12])\.weight$", new):
            value = value[:, :, None, None]
        out[new] = value
    return out


# --- registration --------------------------------------------------------------------------------
def _arch(embed_dims: tuple[int, ...], depths: tuple[int, ...], partial_dims: tuple[int, ...]) -> SHViTArch:
    return SHViTArch(
        embed_dims=embed_dims,
        depths=depths,
        partial_dims=partial_dims,
        qk_dims=(_QK_DIM,) * len(depths),
        mlp_ratios=tuple((_MLP_RATIO,) * d for d in depths),
        attention=tuple((attn,) * d for attn, d in zip(_ATTENTION_STAGES, depths, strict=True)),
    )


def _register() -> None:
    for name, (embed_dims, depths, partial_dims, resolution, params_m, macs_g) in _VARIANTS.items():
        register_model(
            ModelSpec(
                name=name,
                family="shvit",
                task="image-classification",
                build=SHViT,
                arch=_arch(embed_dims, depths, partial_dims),
                # timm's pretrained cfg (upstream's LeViT-derived eval transform): resize 256/224, center crop
                input=ImageInput(
                    resolution=resolution, mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=0.875, interpolation="bicubic"
                ),
                num_classes=1000,
                export=ExportHints(opset=18, dynamo=True),
                remap=remap_checkpoint,
                labels="imagenet",
                paper="Yun & Ro, SHViT: Single-Head Vision Transformer with Memory Efficient Macro Design, CVPR 2024, "
                "arXiv:2401.16456",
                repo="https://github.com/ysj9909/SHViT",
                license="MIT",
                params_m=params_m,
                macs_g=macs_g,
                counts_distillation_head=False,  # released models are trained without distillation (no head_dist)
                notes="Any input size works (no position biases). Keys follow timm; official blocks1/2/3 are remapped.",
            )
        )


_register()

__all__ = ["SHViT", "SHViTArch", "remap_checkpoint"]
