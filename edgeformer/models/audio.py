"""AudioFormer: a mobile audio spectrogram transformer for keyword spotting and audio tagging.

Draws on:
- AST: Yuan Gong, Yu-An Chung, James Glass, "AST: Audio Spectrogram Transformer", Interspeech 2021,
  https://arxiv.org/abs/2104.01778, https://github.com/YuanGongND/ast (BSD-3-Clause): a vision transformer
  over the log-mel spectrogram seen as a one-channel image (25 ms window, 10 ms hop);
- SHViT: Seokju Yun, Youngmin Ro, CVPR 2024, https://arxiv.org/abs/2401.16456,
  https://github.com/ysj9909/SHViT (MIT): the block, ``x + dwconv3x3(x)``, ``x + attention(x)`` (attention
  blocks only), ``x + FFN(x)``, with no position bias tables (the depthwise conv carries position), so the
  model runs at any clip length;
- EfficientFormerV2: Yanyu Li et al., ICCV 2023, https://arxiv.org/abs/2212.08059,
  https://github.com/snap-research/EfficientFormer (Apache-2.0): a two-conv stride-4 stem, conv-BN
  everywhere so that every normalisation folds away, attention only in the late, low-resolution stages.

There are no upstream weights: this is our own design and layout, so ``remap`` is ``None`` (DataParallel
``module.`` prefixes and ``{'model': ...}`` wrappers are handled by the checkpoint reader). ``params_m`` and
``macs_g`` are *our measurements* (``count_params``/``count_macs``), not paper figures; MACs include the
log-mel front-end (0.024 G per second of audio).

The network, on the log-mel "image" ``(batch, 1, n_mels, frames)``: stem ``conv3x3/2-BN-ReLU`` twice
(stride 4), then stages at strides 4/8/16, each but the first opened by a ``conv3x3/2-BN``; every block is
``x + dw3x3(x)``, optionally ``x + MHSA(x)``, then ``x + FFN(x)``; global average pooling, ``BN + Linear``.
Attention: BatchNorm pre-norm (folds into q/k/v), per-head query/key dims and value dims, ReLU before the
output projection (as LeViT/EfficientFormer). Activations are ReLU, the cheapest to quantise.

Front-end settings (:class:`AudioInput` defaults, held in the arch's ``frontend`` field): 16 kHz mono, 1 s
clips (16000 samples), ``n_fft`` 512, periodic Hann window of 400 samples (25 ms), hop 160 (10 ms),
centred frames with reflect padding (101 frames per second), 64 HTK-scale mel bands over 20 Hz–8 kHz without
area normalisation, ``log(mel + 1e-6)``; see :mod:`edgeformer.data.audio`, the numpy reference.
``frontend="graph"`` (the default) puts :class:`LogMelFrontend` inside the model, whose input is then the
waveform ``(batch, samples)``; ``frontend="host"`` makes the input the log-mel ``(batch, 1, n_mels, frames)``.

Variants: ``audioformer_t``/``audioformer_s`` spot keywords (12 classes, :data:`KWS_LABELS`, Speech
Commands style); ``audioformer_m`` tags audio (527 AudioSet classes, multi-label: apply a sigmoid, not a
softmax; label names are not shipped, so ``labels=None``). All take 1 s by default; set
``frontend=AudioInput(clip_seconds=10.0)`` for AudioSet's 10 s clips, no weights depend on the length.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.audio import KWS_LABELS, audio_spec_problems, hann_window, mel_filterbank
from ..errors import ConfigError, InvalidArchError
from ..inputs import AudioInput
from .layers import ConvBN, ElasticModel, fuse_bn_linear
from .spec import ArchBase, ExportHints, ModelSpec
from .spec import is_int as _is_int
from .spec import to_tuples as _to_tuples
from .zoo import register_model

__all__ = ["KWS_LABELS", "AudioFormer", "AudioFormerArch", "LogMelFrontend"]

# name: (widths, depths, attention blocks at the end of each stage, heads, key dim, mlp ratio, classes, labels,
#        measured params (M), measured MACs (G) at 1 s)
_VARIANTS = {
    "audioformer_t": ((32, 64, 128), (2, 2, 3), (0, 1, 2), (1, 2, 4), 16, 3.0, 12, "kws12", 0.580, 0.0544),
    "audioformer_s": ((48, 96, 192), (2, 3, 4), (0, 1, 3), (1, 3, 6), 16, 4.0, 12, "kws12", 2.048, 0.1242),
    "audioformer_m": ((64, 160, 320), (3, 4, 6), (0, 2, 4), (2, 5, 10), 32, 4.0, 527, None, 8.492, 0.3964),
}


@dataclass(frozen=True, kw_only=True)
class AudioFormerArch(ArchBase):
    """The elastic AudioFormer architecture: one entry per stage; per-block fields hold one value per block.

    Example::

        arch = get_spec("audioformer_s").arch
        child = arch.replace(depths=(1, 2, 2), mlp_ratios=((2.0,), (2.0, 2.0), (2.0, 2.0)),
                             attn=((False,), (False, True), (True, True)))
    """

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    mlp_ratios: tuple[tuple[float, ...], ...]  # FFN hidden = int(width * ratio)
    attn: tuple[tuple[bool, ...], ...]  # True: the block has an attention mixer
    heads: tuple[int, ...]
    key_dims: tuple[int, ...]  # per head, for queries and keys
    value_dims: tuple[int, ...]  # per head
    num_classes: int = 12
    frontend: AudioInput = field(default_factory=AudioInput)

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _to_tuples(getattr(self, f.name)))
        # an arch read back from JSON (to_dict) holds the front-end as a dict; unknown keys are left to problems()
        if isinstance(self.frontend, Mapping) and set(self.frontend) <= {f.name for f in fields(AudioInput)}:
            object.__setattr__(self, "frontend", AudioInput(**self.frontend))

    def problems(self) -> list[str]:
        p: list[str] = []
        w = self.widths
        n = len(w) if isinstance(w, tuple) else 0
        if not (n and all(_is_int(c) and c >= 2 for c in w)):
            p.append(f"widths: must be a non-empty tuple of ints >= 2 (the stem uses widths[0] // 2), got {w!r}")
        d = self.depths
        depths_ok = isinstance(d, tuple) and len(d) == n and all(_is_int(x) and x >= 1 for x in d)
        if not depths_ok:
            p.append(f"depths: must hold {n} ints >= 1 (one per stage), got {d!r}")
        depths = d if depths_ok else None

        def per_block(name: str, value, ok) -> None:
            shape_ok = isinstance(value, tuple) and len(value) == n and all(isinstance(v, tuple) for v in value)
            if shape_ok and depths is not None:
                shape_ok = all(len(v) == depth for v, depth in zip(value, depths, strict=True))
            if not (shape_ok and all(ok(s, x) for s, v in enumerate(value) for x in v)):
                p.append(f"{name}: must hold one tuple per stage with one valid entry per block, got {value!r}")

        def hidden_ok(s: int, r) -> bool:
            width = w[s] if s < len(w) and _is_int(w[s]) else 1
            return isinstance(r, int | float) and not isinstance(r, bool) and r > 0 and int(width * r) >= 1

        per_block("mlp_ratios", self.mlp_ratios, hidden_ok)
        per_block("attn", self.attn, lambda s, a: isinstance(a, bool))
        for name in ("heads", "key_dims", "value_dims"):
            value = getattr(self, name)
            if not (isinstance(value, tuple) and len(value) == n and all(_is_int(v) and v >= 1 for v in value)):
                p.append(f"{name}: must hold {n} positive ints (one per stage), got {value!r}")
        if not (_is_int(self.num_classes) and self.num_classes >= 1):
            p.append(f"num_classes: must be a positive int, got {self.num_classes!r}")
        if not isinstance(self.frontend, AudioInput):
            p.append(f"frontend: must be an AudioInput, got {type(self.frontend).__name__}")
        else:
            p += [f"frontend.{problem}" for problem in audio_spec_problems(self.frontend)]
        return p


# --- blocks ------------------------------------------------------------------------------------------
class LogMelFrontend(nn.Module):
    """Waveform ``(batch, samples)`` -> log-mel ``(batch, 1, n_mels, frames)``, as a conv1d STFT.

    The STFT is a ``conv1d`` whose fixed weights are the windowed DFT bases: ``cos`` rows for bins
    ``0..n_fft/2`` and ``-sin`` rows for bins ``1..n_fft/2-1`` (the ``sin`` rows of DC and Nyquist are zero,
    so they are dropped: exactly ``n_fft`` output channels). Squaring every channel gives ``re²`` and ``im²``;
    the mel matrix is widened with the columns of bins ``1..n_fft/2-1`` repeated, so one matmul computes
    ``mel @ (re² + im²)``. The window's zero taps (``win_length < n_fft``) are dropped too: the kernel is
    ``win_length`` long and the reflect padding shrinks to match, which is exactly the centred,
    ``n_fft // 2``-reflect-padded STFT of the reference (a shorter reflect pad is a suffix of a longer one).

    This exports as ``Pad(reflect) -> Conv -> Mul -> MatMul -> Add -> Log`` with both ONNX exporters and
    converts to OpenVINO and CoreML; ``torch.stft`` exports only through dynamo, coremltools cannot convert
    it, and onnxruntime's STFT op is 10-15x slower. The bases are non-persistent buffers: they are rebuilt
    from the spec, never read from a checkpoint. Build with ``dtype=torch.float64`` for a float64 front-end:
    ``.double()`` on a float32 one keeps the float32 rounding of the bases (about 1e-5 of the log-mel scale).

    Float32 accuracy: the conv sums ``win_length`` products, so its absolute error is about
    ``1e-7 * |frame|``; where a band's power is near ``log_offset`` that becomes up to ~1e-4 of the log-mel
    range for full-scale tones (torch.stft's float32 FFT does no better, measured up to 2x worse).
    """

    def __init__(self, spec: AudioInput, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        problems = audio_spec_problems(spec)
        if problems:
            raise ConfigError("invalid AudioInput: " + "; ".join(problems))
        self.spec = spec
        n_fft, win = spec.n_fft, spec.win_length
        half = n_fft // 2
        left = (n_fft - win) // 2  # torch.stft centres a short window inside n_fft
        self.pad = (half - left, half - (n_fft - win - left))
        taps = np.arange(left, left + win)
        # (k * n) mod n_fft keeps the phase argument small, so cos/sin stay exact in float64
        phase = 2.0 * np.pi * ((np.arange(half + 1)[:, None] * taps[None, :]) % n_fft) / n_fft
        window = hann_window(win, n_fft)[left : left + win]
        basis = np.concatenate([np.cos(phase) * window, -np.sin(phase[1:half]) * window])
        mel = mel_filterbank(spec)
        mel = np.concatenate([mel, mel[:, 1:half]], axis=1)
        self.register_buffer("basis", torch.tensor(basis[:, None, :], dtype=dtype), persistent=False)
        self.register_buffer("mel", torch.tensor(mel, dtype=dtype), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = F.pad(wave.unsqueeze(1), self.pad, mode="reflect")
        y = F.conv1d(x, self.basis, stride=self.spec.hop_length)
        return torch.log(torch.matmul(self.mel, y * y) + self.spec.log_offset).unsqueeze(1)


def _fold_pre_bn(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> None:
    """Fold a BatchNorm that runs *before* a 1x1 conv into it (exact: no padding to disturb)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    w = conv.weight
    conv.bias.copy_(conv.bias + w[:, :, 0, 0] @ shift)
    conv.weight.copy_(w * scale[None, :, None, None])


class Attention(nn.Module):
    """Multi-head self-attention over all positions of a ``(B, C, H, W)`` map, conv-BN projections."""

    def __init__(self, dim: int, heads: int, key_dim: int, value_dim: int) -> None:
        super().__init__()
        self.heads, self.key_dim, self.value_dim = heads, key_dim, value_dim
        self.scale = key_dim**-0.5
        self.norm = nn.BatchNorm2d(dim)
        # separate q/k/v (not one packed qkv) keeps each tensor head-major, so fewer heads is a leading slice
        self.q = ConvBN(dim, heads * key_dim)
        self.k = ConvBN(dim, heads * key_dim)
        self.v = ConvBN(dim, heads * value_dim)
        self.proj = ConvBN(heads * value_dim, dim, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        y = self.norm(x)
        q = self.q(y).flatten(2).unflatten(1, (self.heads, self.key_dim)) * self.scale  # (B, heads, kd, N)
        k = self.k(y).flatten(2).unflatten(1, (self.heads, self.key_dim))
        v = self.v(y).flatten(2).unflatten(1, (self.heads, self.value_dim))
        attn = (q.transpose(-2, -1) @ k).softmax(dim=-1)  # (B, heads, N, N)
        out = (v @ attn.transpose(-2, -1)).flatten(1, 2).unflatten(2, (h, w))
        return self.proj(torch.relu(out))

    @torch.no_grad()
    def fuse(self) -> Attention:
        # runs after fuse_children has turned q/k/v into biased convs
        if isinstance(self.norm, nn.BatchNorm2d):
            for conv in (self.q, self.k, self.v):
                _fold_pre_bn(self.norm, conv)
            self.norm = nn.Identity()
        return self


class ConvFFN(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = ConvBN(dim, hidden)
        self.act = nn.ReLU()
        self.fc2 = ConvBN(hidden, dim, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float, attn: bool, heads: int, key_dim: int, value_dim: int) -> None:
        super().__init__()
        self.dw = ConvBN(dim, dim, 3, groups=dim)
        self.attn = Attention(dim, heads, key_dim, value_dim) if attn else None
        self.ffn = ConvFFN(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dw(x)
        if self.attn is not None:
            x = x + self.attn(x)
        return x + self.ffn(x)


class Stage(nn.Module):
    def __init__(self, arch: AudioFormerArch, i: int) -> None:
        super().__init__()
        dim = arch.widths[i]
        self.down = ConvBN(arch.widths[i - 1], dim, 3, stride=2) if i > 0 else nn.Identity()
        self.blocks = nn.Sequential(
            *(
                Block(dim, r, a, arch.heads[i], arch.key_dims[i], arch.value_dims[i])
                for r, a in zip(arch.mlp_ratios[i], arch.attn[i], strict=True)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.down(x))


class BNLinear(nn.Module):
    """BatchNorm1d then Linear; ``fuse()`` returns the folded Linear."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(cin)
        self.l = nn.Linear(cin, cout)
        nn.init.trunc_normal_(self.l.weight, std=0.02)
        nn.init.zeros_(self.l.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l(self.bn(x))

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        return fuse_bn_linear(self.bn, self.l)


# --- model -------------------------------------------------------------------------------------------
_HEAD_MAJOR = re.compile(r"stages\.(\d+)\.blocks\.\d+\.attn\.(q|k|v|proj)\.(c|bn)\.")


class AudioFormer(ElasticModel):
    """Waveform (or log-mel, with ``frontend="host"``) in, class logits out."""

    def __init__(self, arch: AudioFormerArch) -> None:
        super().__init__()
        arch.validate()
        self.arch = arch
        self.frontend = LogMelFrontend(arch.frontend) if arch.frontend.frontend == "graph" else nn.Identity()
        c0 = arch.widths[0]
        self.stem = nn.Sequential(ConvBN(1, c0 // 2, 3, 2), nn.ReLU(), ConvBN(c0 // 2, c0, 3, 2), nn.ReLU())
        self.stages = nn.Sequential(*(Stage(arch, i) for i in range(len(arch.widths))))
        self.head = BNLinear(arch.widths[-1], arch.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(self.frontend(x)))
        return self.head(x.mean(dim=(2, 3)))

    def parent_key_map(self, parent_arch: AudioFormerArch) -> dict[str, str]:
        # per-stage block numbering keeps keys equal; remember the parent's head layout for slice_param
        self._parent_arch = parent_arch
        return super().parent_key_map(parent_arch)

    def slice_param(self, key: str, parent_value: torch.Tensor, child_shape: torch.Size) -> torch.Tensor:
        """q/k/v outputs and proj inputs are ``(heads, dim)``-major: keep leading heads, then leading dims."""
        m = _HEAD_MAJOR.match(key)
        if m is None or (m[2] == "proj" and m[3] == "bn") or parent_value.dim() == 0:
            return super().slice_param(key, parent_value, child_shape)
        s, which = int(m[1]), m[2]
        parent = getattr(self, "_parent_arch", self.arch)
        dims = "key_dims" if which in ("q", "k") else "value_dims"
        ph, pd = parent.heads[s], getattr(parent, dims)[s]
        ch, cd = self.arch.heads[s], getattr(self.arch, dims)[s]
        if ch > ph or cd > pd:
            raise InvalidArchError([f"heads/{dims}: stage {s} asks for {ch} x {cd}, the parent has only {ph} x {pd}"])
        axis = 1 if which == "proj" else 0
        value = parent_value.unflatten(axis, (ph, pd))[(slice(None),) * axis + (slice(0, ch), slice(0, cd))]
        return super().slice_param(key, value.flatten(axis, axis + 1), child_shape)


# --- registration ------------------------------------------------------------------------------------
def _arch(widths, depths, n_attn, heads, key_dim, mlp_ratio, num_classes) -> AudioFormerArch:
    return AudioFormerArch(
        widths=widths,
        depths=depths,
        mlp_ratios=tuple((mlp_ratio,) * d for d in depths),
        attn=tuple(tuple(j >= d - a for j in range(d)) for d, a in zip(depths, n_attn, strict=True)),
        heads=heads,
        key_dims=(key_dim,) * len(widths),
        value_dims=tuple(w // h for w, h in zip(widths, heads, strict=True)),  # heads * value_dim = width
        num_classes=num_classes,
    )


def _register() -> None:
    for name, (widths, depths, n_attn, heads, key_dim, mlp, classes, labels, params_m, macs_g) in _VARIANTS.items():
        arch = _arch(widths, depths, n_attn, heads, key_dim, mlp, classes)
        register_model(
            ModelSpec(
                name=name,
                family="audioformer",
                task="audio-classification",
                build=AudioFormer,
                arch=arch,
                input=arch.frontend,
                num_classes=classes,
                export=ExportHints(opset=18, dynamo=True),
                remap=None,
                labels=labels,
                paper="AST (arXiv:2104.01778); SHViT (arXiv:2401.16456); EfficientFormerV2 (arXiv:2212.08059)",
                repo="",
                license="n/a: own design, no upstream weights",
                params_m=params_m,
                macs_g=macs_g,
                notes="params/MACs measured by edgeformer (no paper figures); MACs include the log-mel front-end"
                + ("; multi-label tagging: apply a sigmoid" if labels is None else ""),
            )
        )


_register()
