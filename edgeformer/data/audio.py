"""Audio input: wav reading and the log-mel front-end, in numpy only (no torch).

This module is the reference the torch front-end (:class:`edgeformer.models.audio.LogMelFrontend`) is
tested against, and what an edge runtime uses when a model was exported with ``frontend="host"``.

The front-end, for an :class:`~edgeformer.inputs.AudioInput` ``spec``:

1. reflect-pad the waveform by ``n_fft // 2`` at both ends (a centred STFT, as ``torch.stft(center=True)``
   and librosa), so frame ``t`` is centred on sample ``t * hop_length`` and there are
   ``samples // hop_length + 1`` frames;
2. window every frame of ``n_fft`` samples with a *periodic* Hann window of ``win_length`` samples,
   zero-padded on both sides to ``n_fft`` (``torch.stft``'s convention);
3. power spectrum ``|rfft|²`` (``n_fft // 2 + 1`` bins);
4. mel filterbank: **HTK mel scale** (``mel = 2595 log10(1 + f / 700)``), ``n_mels`` triangles between
   ``f_min`` and ``f_max`` evaluated at the FFT bin frequencies, peak 1, no area (Slaney) normalisation;
   this is ``torchaudio.functional.melscale_fbanks(..., norm=None, mel_scale="htk")``, torchaudio's default;
5. ``log(mel + log_offset)``.

The defaults (16 kHz, 1 s, ``n_fft`` 512, 25 ms window, 10 ms hop, 64 mels over 20 Hz–8 kHz) give a
``64 x 101`` log-mel "image" per second of audio.
"""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InvalidInputError

# Speech Commands v0.02 keyword-spotting label set (Warden 2018): ten keywords, silence, everything else.
KWS_LABELS: tuple[str, ...] = (
    "yes",
    "no",
    "up",
    "down",
    "left",
    "right",
    "on",
    "off",
    "stop",
    "go",
    "_silence_",
    "_unknown_",
)

_WAVE_FORMAT_PCM, _WAVE_FORMAT_FLOAT, _WAVE_FORMAT_EXTENSIBLE = 0x0001, 0x0003, 0xFFFE


class AudioFileError(InvalidInputError):
    """An audio file that is missing, truncated, corrupt or in an encoding we do not read."""


# --- wav ---------------------------------------------------------------------------------------------
def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a WAV file as a mono float32 waveform in [-1, 1] and its sample rate.

    Reads PCM 8-bit (unsigned), 16/24/32-bit (signed) through the stdlib :mod:`wave` module, and
    IEEE-float 32/64-bit and ``WAVE_FORMAT_EXTENSIBLE`` files (which :mod:`wave` refuses before
    Python 3.12) with a small RIFF chunk reader. Multi-channel audio is averaged to mono.

    Raises:
        AudioFileError: the file is missing, not a WAV file, truncated, empty or of an unknown encoding.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"{path}: audio file not found.")
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            data = w.readframes(frames)
        fmt = _WAVE_FORMAT_PCM
    except wave.Error as e:
        if not str(e).startswith("unknown format"):
            raise AudioFileError(f"{path}: not a WAV file, or a truncated or corrupt one ({e}).") from e
        fmt, channels, rate, width, data, frames = _read_riff(path)
    except EOFError as e:
        raise AudioFileError(f"{path}: truncated WAV header; the file is incomplete, re-export or re-copy it.") from e
    except RuntimeError as e:  # the stdlib's chunk reader says so for a chunk size past the chunk's end
        raise AudioFileError(f"{path}: corrupt WAV file (a chunk's size is wrong); re-export or re-copy it.") from e
    frame_bytes = channels * width
    if frames == 0:
        raise AudioFileError(f"{path}: WAV file holds no samples.")
    if len(data) < frames * frame_bytes:
        raise AudioFileError(
            f"{path}: truncated WAV data: the header announces {frames} frames, the file holds "
            f"{len(data) // frame_bytes}; the file is incomplete, re-export or re-copy it."
        )
    samples = _decode(data[: frames * frame_bytes], fmt, width, path)
    return samples.reshape(frames, channels).mean(axis=1, dtype=np.float64).astype(np.float32), rate


def _decode(data: bytes, fmt: int, width: int, path: Path) -> np.ndarray:
    if fmt == _WAVE_FORMAT_FLOAT and width in (4, 8):
        return np.frombuffer(data, dtype=f"<f{width}").astype(np.float64)
    if fmt != _WAVE_FORMAT_PCM:
        raise AudioFileError(f"{path}: WAV encoding {fmt:#06x} is not supported; convert it to 16-bit PCM.")
    if width == 1:  # 8-bit PCM is unsigned, centred on 128
        return (np.frombuffer(data, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(data, dtype="<i2") / 32768.0
    if width == 3:
        b = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return ((v << 8) >> 8) / float(1 << 23)  # the shift pair sign-extends 24 -> 32 bits
    if width == 4:
        return np.frombuffer(data, dtype="<i4") / float(1 << 31)
    raise AudioFileError(f"{path}: {8 * width}-bit PCM is not supported; convert it to 16-bit PCM.")


def _read_riff(path: Path) -> tuple[int, int, int, int, bytes, int]:
    """Parse a RIFF/WAVE file by hand: (format, channels, rate, bytes per sample, data, frames)."""
    raw = path.read_bytes()
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise AudioFileError(f"{path}: not a WAV file (no RIFF/WAVE header).")
    pos, fmt_chunk, data, declared = 12, None, None, 0
    while pos + 8 <= len(raw) and (fmt_chunk is None or data is None):
        cid, size = raw[pos : pos + 4], struct.unpack_from("<I", raw, pos + 4)[0]
        body = raw[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            fmt_chunk = body
        elif cid == b"data":
            data = body  # may be shorter than announced: reported as truncation by the caller
            declared = size
        pos += 8 + size + (size & 1)  # chunks are word-aligned
    if fmt_chunk is None or len(fmt_chunk) < 16 or data is None:
        raise AudioFileError(f"{path}: truncated or corrupt WAV file (fmt or data chunk missing).")
    fmt, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt_chunk)
    if fmt == _WAVE_FORMAT_EXTENSIBLE:
        if len(fmt_chunk) < 26:
            raise AudioFileError(f"{path}: corrupt WAVE_FORMAT_EXTENSIBLE header.")
        fmt = struct.unpack_from("<H", fmt_chunk, 24)[0]  # first two bytes of the sub-format GUID
    width = (bits + 7) // 8
    if channels == 0 or width == 0 or rate == 0:
        raise AudioFileError(f"{path}: corrupt WAV header ({channels} channels, {bits} bits, {rate} Hz).")
    return fmt, channels, rate, width, data, declared // (channels * width)


def check_sample_rate(sample_rate: int, spec, source: str = "audio") -> None:
    """Refuse audio whose rate is not ``spec.sample_rate``; edgeformer never resamples silently.

    Raises:
        InvalidInputError: naming both rates and a command that resamples.
    """
    if sample_rate != spec.sample_rate:
        raise InvalidInputError(
            f"{source}: sample rate is {sample_rate} Hz but the model expects {spec.sample_rate} Hz; resample it "
            f"first, e.g. `sox in.wav -r {spec.sample_rate} out.wav` "
            f"or `ffmpeg -i in.wav -ar {spec.sample_rate} out.wav`."
        )


def fix_length(wave_: np.ndarray, n: int) -> np.ndarray:
    """Crop (keep the first ``n`` samples) or zero-pad at the end to exactly ``n`` samples on the last axis."""
    if n < 1:
        raise ConfigError(f"fix_length: n must be a positive number of samples, got {n}.")
    x = np.asarray(wave_)
    if x.shape[-1] >= n:
        return x[..., :n]
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])])


# --- log-mel -----------------------------------------------------------------------------------------
def audio_spec_problems(spec) -> list[str]:
    """One ``"field: what is wrong"`` string per invalid field of an ``AudioInput``."""
    p = []
    if not (isinstance(spec.sample_rate, int) and spec.sample_rate > 0):
        p.append(f"sample_rate: must be a positive int, got {spec.sample_rate!r}")
    if not spec.clip_seconds > 0:
        p.append(f"clip_seconds: must be > 0, got {spec.clip_seconds!r}")
    if not (isinstance(spec.n_fft, int) and spec.n_fft >= 2 and spec.n_fft % 2 == 0):
        p.append(f"n_fft: must be an even int >= 2 (the frame count assumes it), got {spec.n_fft!r}")
    if not (isinstance(spec.win_length, int) and 1 <= spec.win_length <= spec.n_fft):
        p.append(f"win_length: must be an int in [1, n_fft={spec.n_fft}], got {spec.win_length!r}")
    if not (isinstance(spec.hop_length, int) and spec.hop_length >= 1):
        p.append(f"hop_length: must be a positive int, got {spec.hop_length!r}")
    if not (isinstance(spec.n_mels, int) and spec.n_mels >= 1):
        p.append(f"n_mels: must be a positive int, got {spec.n_mels!r}")
    if not 0 <= spec.f_min < spec.f_max:
        p.append(f"f_min: must be in [0, f_max={spec.f_max}), got {spec.f_min!r}")
    if isinstance(spec.sample_rate, int) and spec.f_max > spec.sample_rate / 2:
        p.append(f"f_max: must be <= the Nyquist frequency {spec.sample_rate / 2:g} Hz, got {spec.f_max!r}")
    if not spec.log_offset > 0:
        p.append(f"log_offset: must be > 0 (log of silence), got {spec.log_offset!r}")
    if spec.frontend not in ("graph", "host"):
        p.append(f"frontend: must be 'graph' or 'host', got {spec.frontend!r}")
    if not p and spec.num_samples <= spec.n_fft // 2:
        p.append(f"clip_seconds: a clip of {spec.num_samples} samples is too short to reflect-pad by n_fft // 2")
    return p


def _check_spec(spec) -> None:
    problems = audio_spec_problems(spec)
    if problems:
        raise ConfigError("invalid AudioInput: " + "; ".join(problems))


def hann_window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann window of ``win_length`` samples, zero-padded symmetrically to ``n_fft`` (float64)."""
    n = np.arange(win_length, dtype=np.float64)
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)
    left = (n_fft - win_length) // 2
    return np.pad(w, (left, n_fft - win_length - left))


def hz_to_mel(f):
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(spec) -> np.ndarray:
    """HTK-scale triangular mel filterbank, ``(n_mels, n_fft // 2 + 1)`` float64, peaks 1, no area norm."""
    _check_spec(spec)
    freqs = np.linspace(0.0, spec.sample_rate / 2, spec.n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(spec.f_min), hz_to_mel(spec.f_max), spec.n_mels + 2))
    width = np.diff(edges)
    rise = (freqs[None, :] - edges[:-2, None]) / width[:-1, None]
    fall = (edges[2:, None] - freqs[None, :]) / width[1:, None]
    return np.maximum(0.0, np.minimum(rise, fall))


def log_mel(wave_: np.ndarray, spec) -> np.ndarray:
    """Log-mel spectrogram of ``wave_`` (``(..., samples)``) as ``(..., n_mels, frames)``.

    Computed in float64 with ``np.fft.rfft``; returned as float64 for float64 input, else float32.

    Raises:
        InvalidInputError: too few samples to reflect-pad, or NaN/Inf samples.
    """
    _check_spec(spec)
    x = np.asarray(wave_)
    pad = spec.n_fft // 2
    if x.ndim == 0 or x.shape[-1] <= pad:
        raise InvalidInputError(
            f"log_mel: need more than n_fft // 2 = {pad} samples, got shape {x.shape}; pad with fix_length()."
        )
    if not np.isfinite(x).all():
        raise InvalidInputError(f"log_mel: the waveform holds {np.size(x) - np.isfinite(x).sum()} NaN/Inf samples.")
    xp = np.pad(x.astype(np.float64), [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(xp, spec.n_fft, axis=-1)[..., :: spec.hop_length, :]
    stft = np.fft.rfft(frames * hann_window(spec.win_length, spec.n_fft), axis=-1)
    power = stft.real**2 + stft.imag**2  # (..., frames, bins)
    out = np.log(power @ mel_filterbank(spec).T + spec.log_offset)
    return np.swapaxes(out, -1, -2).astype(np.float64 if x.dtype == np.float64 else np.float32)
