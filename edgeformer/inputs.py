"""Input specs: how raw data becomes a model's input tensor, as plain data (torch-free).

:class:`ImageInput` and :class:`AudioInput` are copied into every artifact's manifest, so that the runtime
on an edge device can preprocess without torch and the web app can read the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from .errors import ConfigError, ModelFileError
from .records import Record

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, kw_only=True)
class ImageInput(Record):
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


@dataclass(frozen=True, kw_only=True)
class AudioInput(Record):
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


InputSpec = ImageInput | AudioInput
_REQUIRED = {
    "image": ("resolution", "mean", "std", "crop_pct", "interpolation"),
    "audio": ("sample_rate", "clip_seconds", "frontend"),
}


def input_spec_from_dict(d: Mapping[str, Any], where: str = "preprocessing", *, check_types: bool = True) -> InputSpec:
    """ImageInput or AudioInput from a manifest's ``preprocessing`` record, strictly (unknown keys refused).

    ``check_types=False`` leaves value checks to the caller, which can then list every bad value at once
    (:func:`edgeformer.data.images.as_image_input` does).

    Raises:
        ModelFileError: not a mapping, an unknown ``kind``, unknown fields or wrong types.
    """
    kind = d.get("kind", "image") if isinstance(d, Mapping) else None
    cls = {"image": ImageInput, "audio": AudioInput}.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ModelFileError(f"{where}: {d!r:.80} is not an image or audio spec; re-export the artifact.")
    # the fields whose defaults would silently preprocess wrongly (ImageNet mean on a digits model)
    missing = [k for k in _REQUIRED[kind] if k not in d]
    if missing:
        raise ModelFileError(
            f"{where}: the recorded {kind} preprocessing lacks {', '.join(missing)}; re-export the artifact with "
            "this edgeformer so the manifest is complete."
        )
    if not check_types:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ModelFileError(f"{where}: unknown {kind} preprocessing field(s) {', '.join(unknown)}; re-export.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
    try:
        return cls.from_dict(d, where=where)
    except ConfigError as e:  # a broken manifest is invalid input (exit 3), not a usage error
        raise ModelFileError(f"{e}; re-export the artifact.") from e
