"""Image preprocessing with Pillow and numpy only (what an edge device runs; no torch, no torchvision).

The pipeline is timm's evaluation transform, driven by the ``ImageInput`` recorded in the artifact:

1. open the image and convert it *explicitly* to RGB (or L for one-channel models): CMYK JPEGs,
   16-bit PNGs (scaled to 8 bits, not clipped), grayscale, palette and alpha images all occur in real
   data, and a silent wrong conversion shows up only as bad accuracy;
2. resize the shorter side to ``floor(resolution / crop_pct)`` with the recorded interpolation;
3. center crop ``resolution x resolution``;
4. scale to [0, 1], normalize with ``mean``/``std``, lay out as NCHW float32.

Example::

    x = load_image("cat.jpg", artifact.manifest.preprocessing)    # (1, 3, 224, 224) float32
    xs = load_image_batch(["a.jpg", "b.png"], ImageInput(resolution=224))
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ConfigError, InvalidInputError, ModelFileError
from ..inputs import ImageInput, input_spec_from_dict

log = logging.getLogger(__name__)

ImageLike = str | Path | Image.Image | np.ndarray
# The one list of what a folder scan (calibration or evaluation set) takes for an image, lower case; Pillow's
# wheels decode every one of them.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def as_image_input(spec: ImageInput | Mapping[str, Any]) -> ImageInput:
    """An :class:`ImageInput`, checked, from itself or from its JSON form.

    Raises:
        ModelFileError: the dict is not an image spec or lacks a field the pipeline needs.
        ConfigError: a field has an unusable value (unknown interpolation, mean/std length, ...).
    """
    spec_ = spec if isinstance(spec, ImageInput) else input_spec_from_dict(spec, check_types=False)
    if not isinstance(spec_, ImageInput):
        raise ModelFileError(f"preprocessing {spec!r:.80} is not an image spec; re-export the artifact.")
    problems = []
    if not (isinstance(spec_.resolution, int) and spec_.resolution > 0):
        problems.append(f"resolution must be a positive int, got {spec_.resolution!r}")
    if spec_.channels not in (1, 3):
        problems.append(f"channels must be 1 or 3, got {spec_.channels!r}")
    if len(spec_.mean) != spec_.channels or len(spec_.std) != spec_.channels:
        problems.append(f"mean and std need {spec_.channels} values each, got {spec_.mean!r} and {spec_.std!r}")
    if any(s <= 0 for s in spec_.std):
        problems.append(f"std must be positive, got {spec_.std!r}")
    if not 0 < spec_.crop_pct <= 1:
        problems.append(f"crop_pct must be in (0, 1], got {spec_.crop_pct!r}")
    if spec_.interpolation not in _RESAMPLE:
        problems.append(f"interpolation must be one of {', '.join(_RESAMPLE)}, got {spec_.interpolation!r}")
    if problems:
        raise ConfigError("invalid image preprocessing: " + "; ".join(problems) + ".")
    return spec_


def open_image(x: ImageLike, channels: int = 3) -> Image.Image:
    """Open a path, PIL image or HWC uint8 array as an RGB (or L, for ``channels=1``) PIL image.

    Raises:
        InvalidInputError: a missing, truncated or unreadable file, or an array that is not an HWC
            uint8 image; the message names the file.
    """
    source = "image"
    if isinstance(x, (str, Path)):
        source = str(x)
        img = _read(Path(x))
    elif isinstance(x, Image.Image):
        img = x
    elif isinstance(x, np.ndarray):
        img = _from_array(x)
    else:
        raise InvalidInputError(
            f"cannot read an image from {type(x).__name__}; pass a file path, a PIL image or an HWC uint8 array."
        )
    return _to_mode(img, "L" if channels == 1 else "RGB", source)


def _read(path: Path) -> Image.Image:
    if not path.is_file():
        raise InvalidInputError(f"{path}: image file not found.")
    try:
        with Image.open(path) as img:
            img.load()  # Image.open is lazy: truncation and decode errors surface only here
            return img.copy()
    except Image.DecompressionBombError as e:
        raise InvalidInputError(f"{path}: image is too large to decode safely ({e}).") from e
    # UnidentifiedImageError, "image file is truncated", and whatever else Pillow's decoders raise on a corrupt
    # file: fuzz/calib_image.py met a TypeError in the TIFF reader. The block only decodes: no bug of ours hides.
    except Exception as e:
        raise InvalidInputError(
            f"{path}: cannot read the image ({e}); the file is truncated, corrupt or not an image."
        ) from e


def _from_array(a: np.ndarray) -> Image.Image:
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise InvalidInputError(
            f"an image array must be HWC (or HW) uint8 with 1, 3 or 4 channels, got {a.shape} {a.dtype}; "
            "pass an already preprocessed NCHW float32 array straight to the model instead."
        )
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(a))


def _to_mode(img: Image.Image, target: str, source: str) -> Image.Image:
    mode = img.mode
    if mode == target:
        return img
    if mode in _SIXTEEN_BIT:
        # 16-bit grayscale (PNG "I;16", or "I" when widened): scale 0..65535 to 0..255; a plain
        # convert("L") would clip everything above 255 to white
        a = np.asarray(img).astype(np.float64)
        img = Image.fromarray(np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8))
        log.debug("%s: converted 16-bit %s to 8-bit L (scaled by 1/257)", source, mode)
        mode = "L"
    elif mode == "F":
        raise InvalidInputError(
            f"{source}: 32-bit float images have no defined 0..255 range; convert it to an 8-bit image first."
        )
    elif mode in ("P", "PA"):
        img = img.convert("RGBA")  # through RGBA so palette transparency is not warned about and lost twice
    if img.mode != target:
        # CMYK -> RGB uses Pillow's inversion (Adobe JPEGs are decoded to regular CMYK by Pillow);
        # RGBA/LA drop alpha (timm does the same); L -> RGB copies the channel
        log.debug("%s: converted %s image to %s", source, mode, target)
        img = img.convert(target)
    return img


def preprocess_image(img: Image.Image, spec: ImageInput | Mapping[str, Any]) -> np.ndarray:
    """Resize, center-crop and normalize an RGB/L PIL image to a ``(C, H, W)`` float32 array."""
    s = as_image_input(spec)
    img = _to_mode(img, "L" if s.channels == 1 else "RGB", "image")
    scale = math.floor(s.resolution / s.crop_pct)
    w, h = img.size
    if w <= h:
        size = (scale, int(scale * h / w))
    else:
        size = (int(scale * w / h), scale)
    limit = Image.MAX_IMAGE_PIXELS  # None when a user turned the check off
    if limit and size[0] * size[1] > limit:  # a 230-byte 6x8847365 TIFF took 3.7 GB here (fuzz/calib_image.py)
        raise InvalidInputError(
            f"a {w}x{h} image resized to {size[0]}x{size[1]} (shorter side {scale}) is past Pillow's limit of "
            f"{limit} pixels; crop it to a less extreme aspect ratio first."
        )
    if size != img.size:
        img = img.resize(size, _RESAMPLE[s.interpolation])
    w, h = img.size  # >= resolution on both sides, since crop_pct <= 1
    # same rounding as torchvision's CenterCrop, which timm uses
    top, left = round((h - s.resolution) / 2.0), round((w - s.resolution) / 2.0)
    img = img.crop((left, top, left + s.resolution, top + s.resolution))
    a = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    if a.ndim == 2:
        a = a[:, :, None]
    a = (a - np.asarray(s.mean, np.float32)) / np.asarray(s.std, np.float32)
    return np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32)


def load_image(x: ImageLike, spec: ImageInput | Mapping[str, Any]) -> np.ndarray:
    """One image (path, PIL image, or HWC uint8 array) as a ``(1, C, H, W)`` float32 batch."""
    s = as_image_input(spec)
    return preprocess_image(open_image(x, s.channels), s)[None]


def load_image_batch(paths: Sequence[ImageLike], spec: ImageInput | Mapping[str, Any]) -> np.ndarray:
    """Several images as an ``(N, C, H, W)`` float32 batch.

    Raises:
        InvalidInputError: an empty list, or an unreadable image (named in the message).
    """
    if len(paths) == 0:
        raise InvalidInputError("no images given; pass at least one image path.")
    s = as_image_input(spec)
    return np.stack([preprocess_image(open_image(p, s.channels), s) for p in paths])
