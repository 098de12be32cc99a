"""Input specs: how raw data becomes a model's input tensor, as plain data (torch-free).

:class:`ImageInput` and :class:`AudioInput` are copied into every artifact's manifest, so that the runtime
on an edge device can preprocess without torch and the web app can read the same numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ModelFileError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, kw_only=True)
class ImageInput:
    """How an image becomes the model's NCHW float tensor (resize shorter side, center crop, normalize)."""

    resolution: int = 224
    channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = 0.95
    interpolation: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    kind: Literal["image"] = "image"

    def shape(self, batch: int = 1, resolution: int | None = None) -> tuple[int, ...]:
        r = resolution or self.resolution
        return (batch, self.channels, r, r)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImageInput:
        return _from_dict(cls, d)


@dataclass(frozen=True, kw_only=True)
class AudioInput:
    """Waveform in, log-mel computed by the front-end: inside the exported graph or on the host.

    ``frontend="graph"``: the model input is the mono waveform ``(batch, samples)`` at ``sample_rate``.
    ``frontend="host"``: the model input is the log-mel ``(batch, 1, n_mels, frames)`` and the runtime
    computes it with the numpy reference (``edgeformer.data.audio``).
    """

    sample_rate: int = 16000
    clip_seconds: float = 1.0
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 20.0
    f_max: float = 8000.0
    log_offset: float = 1e-6
    frontend: Literal["graph", "host"] = "graph"
    kind: Literal["audio"] = "audio"

    @property
    def num_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)

    @property
    def num_frames(self) -> int:
        # centred STFT with reflect padding: one frame per hop plus the last
        return self.num_samples // self.hop_length + 1

    def shape(self, batch: int = 1, resolution: int | None = None) -> tuple[int, ...]:
        if self.frontend == "graph":
            return (batch, self.num_samples)
        return (batch, 1, self.n_mels, self.num_frames)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AudioInput:
        return _from_dict(cls, d)


InputSpec = ImageInput | AudioInput


def _from_dict(cls, d: Mapping[str, Any]):
    """Rebuild an input spec from its JSON form (lists back to tuples); unknown keys are an error."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown or d.get("kind", cls.kind) != cls.kind:
        raise ModelFileError(
            f"preprocessing record has unknown fields {unknown} or kind {d.get('kind')!r} for {cls.__name__}"
        )
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def input_spec_from_dict(d: Mapping[str, Any]) -> InputSpec:
    """ImageInput or AudioInput from a manifest's ``preprocessing`` record."""
    return (AudioInput if d.get("kind") == "audio" else ImageInput).from_dict(d)
