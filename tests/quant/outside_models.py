"""Small vision models written outside edgeformer, with the traits that break naive post-training quantization.

Each is a plain ``nn.Module`` with seeded weights (no training): the traits are set into the weights on purpose
so that they exist at export, as they would in a trained checkpoint.

* :class:`RepVggNet`: RepVGG/MobileOne multi-branch blocks (3x3 + 1x1 + identity, each with BN) re-parameterized
  into one 3x3 conv before export. The identity branch puts a large centre tap into a few output channels, so the
  fused weight's per-channel ranges differ by an order of magnitude.
* :class:`HardSwishSeNet`: MobileNetV3 blocks: hard-swish, depthwise conv, squeeze-excite (hard-sigmoid gate).
* :class:`LayerScaleViT`: a ViT with LayerScale (per-channel gammas from 1e-4 to 3), talking-heads attention
  (heads mixed before and after the Softmax) and a depthwise-conv positional encoding.
* :class:`OutlierNet`: BN-free residual blocks whose residual stream carries two channels ~100x the others
  (the "massive activations" of LLMs and ViTs); the head reads mostly the small channels.

Example::

    model = build("repvgg")          # eval mode, re-parameterized, deterministic
    x = example_input(batch=1)
"""

from __future__ import annotations

import torch
from torch import nn

RES = 32  # image side: a quantize of any of these takes seconds
NUM_CLASSES = 10


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def _randomize_bn(bn: nn.BatchNorm2d, g: torch.Generator) -> None:
    """BN statistics as training leaves them: channels with different scales and offsets."""
    n = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(0.5 + torch.rand(n, generator=g) * 1.5)
        bn.bias.copy_(torch.randn(n, generator=g) * 0.2)
        bn.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
        bn.running_var.copy_(0.5 + torch.rand(n, generator=g))


# --- RepVGG / MobileOne -------------------------------------------------------------------------------------------
class RepBlock(nn.Module):
    """3x3 conv-BN + 1x1 conv-BN + identity BN, summed, ReLU; :meth:`reparameterize` folds them into one conv."""

    def __init__(self, c_in: int, c_out: int, stride: int, g: torch.Generator) -> None:
        super().__init__()
        self.c_in, self.c_out, self.stride = c_in, c_out, stride
        self.conv3 = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out))
        self.conv1 = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False), nn.BatchNorm2d(c_out))
        self.identity = nn.BatchNorm2d(c_out) if c_in == c_out and stride == 1 else None
        for bn in (self.conv3[1], self.conv1[1], self.identity):
            if bn is not None:
                _randomize_bn(bn, g)
        if self.identity is not None:
            with torch.no_grad():  # a few channels whose identity branch dominates, as RepVGG's trained ones do
                self.identity.weight[: c_out // 8] *= 8.0
        self.fused: nn.Conv2d | None = None
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.act(self.fused(x))
        y = self.conv3(x) + self.conv1(x)
        if self.identity is not None:
            y = y + self.identity(x)
        return self.act(y)

    @torch.no_grad()
    def reparameterize(self) -> None:
        def fold(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
            std = (bn.running_var + bn.eps).sqrt()
            return kernel * (bn.weight / std).reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * bn.weight / std

        k3, b3 = fold(self.conv3[0].weight, self.conv3[1])
        k1, b1 = fold(nn.functional.pad(self.conv1[0].weight, [1, 1, 1, 1]), self.conv1[1])
        kernel, bias = k3 + k1, b3 + b1
        if self.identity is not None:
            eye = torch.zeros(self.c_out, self.c_in, 3, 3)
            eye[torch.arange(self.c_out), torch.arange(self.c_in), 1, 1] = 1.0
            ki, bi = fold(eye, self.identity)
            kernel, bias = kernel + ki, bias + bi
        self.fused = nn.Conv2d(self.c_in, self.c_out, 3, self.stride, 1, bias=True)
        self.fused.weight.copy_(kernel)
        self.fused.bias.copy_(bias)
        del self.conv3, self.conv1, self.identity


class RepVggNet(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        _seeded(seed)
        widths = (16, 32, 32, 64, 64)
        strides = (2, 2, 1, 2, 1)
        blocks, c = [], 3
        for w, s in zip(widths, strides, strict=True):
            blocks.append(RepBlock(c, w, s, g))
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c, NUM_CLASSES)

    def reparameterize(self) -> RepVggNet:
        for b in self.blocks:
            b.reparameterize()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).mean((2, 3)))


# --- MobileNetV3: hard-swish, squeeze-excite --------------------------------------------------------------------
class SqueezeExcite(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(c, c // 4, 1)
        self.expand = nn.Conv2d(c // 4, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * nn.functional.hardsigmoid(self.expand(nn.functional.relu(self.reduce(s))))


class InvertedResidual(nn.Module):
    def __init__(self, c: int, expand: int, g: torch.Generator) -> None:
        super().__init__()
        h = c * expand
        self.pw = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.Hardswish())
        self.se = SqueezeExcite(h)
        self.pwl = nn.Sequential(nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))
        for bn in (self.pw[1], self.dw[1], self.pwl[1]):
            _randomize_bn(bn, g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pwl(self.se(self.dw(self.pw(x))))


class HardSwishSeNet(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        _seeded(seed)
        self.stem = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.Hardswish())
        _randomize_bn(self.stem[1], g)
        self.blocks = nn.Sequential(*(InvertedResidual(24, 3, g) for _ in range(3)))
        self.head = nn.Sequential(nn.Conv2d(24, 96, 1), nn.Hardswish())
        self.fc = nn.Linear(96, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.blocks(self.stem(x))).mean((2, 3)))


# --- ViT: LayerScale, talking heads, depthwise-conv positional encoding ------------------------------------------
class TalkingHeadsAttention(nn.Module):
    def __init__(self, dim: int, heads: int, g: torch.Generator) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj_l = nn.Linear(heads, heads)  # mixes the heads' logits before the Softmax
        self.proj_w = nn.Linear(heads, heads)  # and their weights after it
        self.proj = nn.Linear(dim, dim)
        with torch.no_grad():  # near-identity head mixing, sharpened: a peaky Softmax
            self.proj_l.weight.copy_(torch.eye(heads) * 3.0 + torch.randn(heads, heads, generator=g) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = self.proj_l(attn.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).softmax(-1)
        attn = self.proj_w(attn.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, g: torch.Generator) -> None:
        super().__init__()
        self.pos = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)  # conditional positional encoding (CPVT)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = TalkingHeadsAttention(dim, heads, g)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))
        # LayerScale as CaiT trains it: per-channel gammas spanning four decades
        self.gamma1 = nn.Parameter(10 ** (torch.rand(dim, generator=g) * 4 - 3.5))
        self.gamma2 = nn.Parameter(10 ** (torch.rand(dim, generator=g) * 4 - 3.5))

    def forward(self, x: torch.Tensor, hw: int) -> torch.Tensor:
        b, _, c = x.shape
        grid = x.transpose(1, 2).reshape(b, c, hw, hw)
        x = x + self.pos(grid).flatten(2).transpose(1, 2)
        x = x + self.gamma1 * self.attn(self.norm1(x))
        return x + self.gamma2 * self.mlp(self.norm2(x))


class LayerScaleViT(nn.Module):
    def __init__(self, seed: int = 0, dim: int = 48, depth: int = 3, heads: int = 4, patch: int = 4) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        _seeded(seed)
        self.hw = RES // patch
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.blocks = nn.ModuleList(ViTBlock(dim, heads, g) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        for blk in self.blocks:
            x = blk(x, self.hw)
        return self.head(self.norm(x).mean(1))


# --- BN-free residual blocks with massive activations ------------------------------------------------------------
class NfBlock(nn.Module):
    """Conv-ReLU-conv residual, no normalization, scaled like NF-ResNets (alpha 0.2)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.conv2(torch.relu(self.conv1(x)))


class OutlierNet(nn.Module):
    OUTLIERS = (3, 17)  # residual-stream channels ~100x the others

    def __init__(self, seed: int = 0, c: int = 32, depth: int = 4) -> None:
        super().__init__()
        _seeded(seed)
        self.stem = nn.Conv2d(3, c, 3, 2, 1)
        self.blocks = nn.Sequential(*(NfBlock(c) for _ in range(depth)))
        self.head = nn.Linear(c, NUM_CLASSES)
        with torch.no_grad():
            for ch in self.OUTLIERS:
                self.stem.weight[ch] *= 100.0
                self.stem.bias[ch] = 50.0
                for blk in self.blocks:  # the blocks read the outliers hardly at all, as attention sinks do
                    blk.conv1.weight[:, ch] *= 0.01
                self.head.weight[:, ch] *= 0.001

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


MODELS = {
    "repvgg": lambda: RepVggNet().reparameterize(),
    "hardswish_se": HardSwishSeNet,
    "layerscale_vit": LayerScaleViT,
    "outlier": OutlierNet,
}


def build(name: str) -> nn.Module:
    """One of :data:`MODELS`, in eval mode, re-parameterized where it has branches to fold."""
    return MODELS[name]().eval()


def example_input(batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, RES, RES, generator=torch.Generator().manual_seed(seed))
