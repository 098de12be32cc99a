"""Reference datasets the project can build offline (the trained models on them: :mod:`edgeformer.models.reference`).

Quantization accuracy means little on random weights, and nothing may be downloaded here, so edgeformer
trains small zoo variants (``scripts/train_reference.py``) on two datasets it can regenerate exactly:

- **digits**: scikit-learn's ``load_digits`` (1797 8x8 grayscale images, shipped inside the package),
  upscaled by the *runtime's own* image pipeline (:func:`edgeformer.data.images.preprocess_image`, bilinear,
  ``crop_pct=1``), so an 8x8 PNG fed to ``edgeformer.load(...).predict`` is preprocessed exactly as in
  training. Held-out split: 30 %, stratified, fixed seed.
- **keywords**: the ten Speech Commands keywords, ``_silence_`` and ``_unknown_`` (:data:`KWS_LABELS`),
  spoken by espeak-ng with many voices, speeds and pitches, then shifted, gain-scaled and mixed with noise.
  The held-out split uses voices (accent or timbre) and speeds/pitches that training never hears, so it
  measures generalization, not memory. Its clean clips are committed (``keywords_heldout.npz``, 8-bit
  µ-law at 16 kHz) because espeak-ng output differs across versions and CI may not have it; the noise and gain are
  re-drawn from a fixed seed on load.

Each reference model is a ``.safetensors`` state dict plus a JSON sidecar (model name, arch overrides,
labels, input spec, seed, command, held-out accuracy, dataset recipe) under ``edgeformer/zoo_weights``;
:func:`load_reference` rebuilds the model and loads the weights strictly.

Example::

    model, meta = load_reference("digits_efficientformerv2")
    x, y = reference_heldout(meta)
"""

from __future__ import annotations

import io
import itertools
import logging
import shutil
import subprocess
import wave
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, ConfigError, ModelFileError
from ..inputs import ImageInput
from .audio import KWS_LABELS
from .images import preprocess_image

log = logging.getLogger(__name__)

ZOO_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "zoo_weights"
SPLIT_SEED = 0  # fixed forever: a training seed must never move a sample between train and held-out

# --- digits ------------------------------------------------------------------------------------------
DIGIT_LABELS: tuple[str, ...] = tuple("0123456789")
DIGITS_HELDOUT_FRACTION = 0.3


def digits_input(resolution: int = 64) -> ImageInput:
    """The preprocessing of the digits models: 8x8 -> ``resolution`` bilinear, RGB, scaled to [-1, 1]."""
    return ImageInput(resolution=resolution, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0, interpolation="bilinear")


def digits_images(split: str = "train", *, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The raw 8x8 digits of ``split`` as uint8 ``(N, 8, 8)`` images (0..255) and int64 labels.

    Raises:
        ConfigError: ``split`` is not ``"train"`` or ``"heldout"``.
        BackendUnavailableError: scikit-learn (which ships the images) is not installed.
    """
    _check_split(split)
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise BackendUnavailableError(
            "the digits dataset ships with scikit-learn: pip install 'edgeformer[apps]' (or scikit-learn)."
        ) from e
    d = load_digits()
    # 0..16 ink levels -> 0..255, as an 8-bit grayscale file of the digit would hold them
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)
    labels = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for c in range(len(DIGIT_LABELS)):  # stratified: the same fraction of every class is held out
        idx = rng.permutation(np.flatnonzero(labels == c))
        held[idx[: round(DIGITS_HELDOUT_FRACTION * len(idx))]] = True
    keep = held if split == "heldout" else ~held
    return images[keep], labels[keep]


def digits_split(
    split: str = "train", resolution: int = 64, *, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Digits of ``split`` as model input: float32 NCHW, normalized by :func:`digits_input`, and int64 labels."""
    from PIL import Image

    images, labels = digits_images(split, seed=seed)
    spec = digits_input(resolution)
    x = np.stack([preprocess_image(Image.fromarray(img, "L"), spec) for img in images])
    return x, labels


# --- keywords ----------------------------------------------------------------------------------------
KEYWORDS: tuple[str, ...] = KWS_LABELS[:10]
SILENCE, UNKNOWN = KWS_LABELS.index("_silence_"), KWS_LABELS.index("_unknown_")
# Speech Commands' auxiliary words: what "_unknown_" means there
UNKNOWN_WORDS: tuple[str, ...] = (
    "bed",
    "bird",
    "cat",
    "dog",
    "happy",
    "house",
    "marvin",
    "sheila",
    "tree",
    "wow",
    "backward",
    "forward",
    "follow",
    "learn",
    "visual",
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)
# A voice is an accent (espeak-ng language) plus a timbre (variant). Held-out voices have an accent or a
# timbre that training never hears; held-out speeds and pitches sit between the training ones.
TRAIN_ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan")
HELDOUT_ACCENTS = ("en-029", "en-gb-x-gbcwmd")
TRAIN_TIMBRES = (
    "",
    "m1",
    "m2",
    "m4",
    "m5",
    "m6",
    "m8",
    "f1",
    "f3",
    "f5",
    "klatt",
    "klatt3",
    "klatt4",
    "Andy",
    "Annie",
    "Denis",
    "Gene",
    "Jacky",
    "Lee",
    "Mike",
    "adam",
    "aunty",
    "boris",
    "david",
    "edward",
    "grandma",
    "john",
    "linda",
    "max",
    "norbert",
    "paul",
    "quincy",
    "rob",
    "shelby",
    "steph",
    "travis",
    "whisper",
    "zac",
)
HELDOUT_TIMBRES = (
    "m3",
    "m7",
    "f2",
    "f4",
    "klatt2",
    "Alicia",
    "belinda",
    "benjamin",
    "grandpa",
    "michel",
    "robert",
    "steph2",
    "victor",
    "whisperf",
)
TRAIN_SPEEDS, HELDOUT_SPEEDS = (120, 140, 160, 180, 200, 220), (130, 150, 170, 190, 210)
TRAIN_PITCHES, HELDOUT_PITCHES = (20, 35, 50, 65, 80), (28, 42, 58, 72)
KEYWORDS_HELDOUT_FILE = "keywords_heldout.npz"
_PER_CLASS = {"train": (240, 1000), "heldout": (32, 32)}  # (clips per keyword, unknown clips); silence = per keyword


@dataclass(frozen=True)
class Utterance:
    """One espeak-ng rendering: ``espeak-ng -v {voice} -s {speed} -p {pitch} {word}``."""

    word: str
    voice: str
    speed: int
    pitch: int


def keyword_plan(split: str = "train", *, seed: int = SPLIT_SEED) -> tuple[list[Utterance], np.ndarray]:
    """The utterances of ``split`` and their labels (keywords, then ``_unknown_`` words; no silence)."""
    _check_split(split)
    per_keyword, n_unknown = _PER_CLASS[split]
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    if split == "train":
        voices = [_voice(a, t) for a in TRAIN_ACCENTS for t in TRAIN_TIMBRES]
        speeds, pitches = TRAIN_SPEEDS, TRAIN_PITCHES
    else:
        voices = [
            _voice(a, t)
            for a in TRAIN_ACCENTS + HELDOUT_ACCENTS
            for t in TRAIN_TIMBRES + HELDOUT_TIMBRES
            if a in HELDOUT_ACCENTS or t in HELDOUT_TIMBRES
        ]
        speeds, pitches = HELDOUT_SPEEDS, HELDOUT_PITCHES
    words = [w for w in KEYWORDS for _ in range(per_keyword)]
    words += [UNKNOWN_WORDS[i] for i in rng.integers(0, len(UNKNOWN_WORDS), n_unknown)]
    plan = [
        Utterance(w, voices[rng.integers(len(voices))], int(rng.choice(speeds)), int(rng.choice(pitches)))
        for w in words
    ]
    labels = np.array([KEYWORDS.index(u.word) if u.word in KEYWORDS else UNKNOWN for u in plan], dtype=np.int64)
    return plan, labels


def _voice(accent: str, timbre: str) -> str:
    return f"{accent}+{timbre}" if timbre else accent


def synthesize(utt: Utterance, sample_rate: int = 16000) -> np.ndarray:
    """Speak ``utt`` with espeak-ng: 8-bit µ-law codes (uint8) at ``sample_rate``, peak at full scale.

    espeak-ng writes 22050 Hz; the clip is resampled explicitly with a polyphase filter, trimmed of leading
    and trailing silence and µ-law encoded (:func:`mulaw_encode`), which halves the committed held-out file
    against int16 (linear 16-bit speech barely compresses); its ~38 dB quantization noise sits far below the
    >= 10 dB SNR noise every clip gets. Training clips go through the same encoding.

    Raises:
        BackendUnavailableError: espeak-ng is not installed.
    """
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise BackendUnavailableError("keyword synthesis needs espeak-ng: apt-get install espeak-ng.")
    cmd = [exe, "-v", utt.voice, "-s", str(utt.speed), "-p", str(utt.pitch), "--stdout", utt.word]
    done = subprocess.run(cmd, capture_output=True)
    if done.returncode != 0 or b"data" not in done.stdout[:64]:
        err = done.stderr.decode(errors="replace").strip()
        raise ConfigError(f"espeak-ng could not speak {utt} (exit {done.returncode}: {err}); check the voice name.")
    rate, pcm = _parse_stream_wav(done.stdout)
    x = _resample(pcm.astype(np.float64), rate, sample_rate)
    if not x.size or not np.abs(x).max() > 0:
        raise ConfigError(f"espeak-ng rendered silence for {utt}; check the word and voice.")
    loud = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    x = x[loud[0] : loud[-1] + 1]
    return mulaw_encode(x / np.abs(x).max())


_MU = 255.0


def mulaw_encode(x: np.ndarray) -> np.ndarray:
    """µ-law (µ = 255) codes, uint8, of a waveform in [-1, 1]."""
    y = np.sign(x) * np.log1p(_MU * np.minimum(np.abs(x), 1.0)) / np.log1p(_MU)
    return np.rint((y + 1.0) * 127.5).astype(np.uint8)


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    """Waveform in [-1, 1] (float64) of µ-law codes written by :func:`mulaw_encode`."""
    y = codes.astype(np.float64) / 127.5 - 1.0
    return np.sign(y) * np.expm1(np.abs(y) * np.log1p(_MU)) / _MU


def espeak_version() -> str | None:
    """``"eSpeak NG text-to-speech: 1.51"``, or ``None`` when espeak-ng is not installed.

    The clips depend on it: another version renders the same plan slightly differently.
    """
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    return out.split("  Data at")[0].strip()  # drop the install path: it differs between machines


def _parse_stream_wav(raw: bytes) -> tuple[int, np.ndarray]:
    # espeak-ng --stdout streams: the RIFF/data sizes are placeholders (0x7ffff000), so wave.open would
    # try to read past the end; read the header from the fmt chunk and take every byte after "data".
    with wave.open(io.BytesIO(raw[:44] + b"\0\0")) as w:
        rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
    if width != 2 or channels != 1:
        raise BackendUnavailableError(
            f"espeak-ng wrote {8 * width}-bit {channels}-channel audio, expected 16-bit mono."
        )
    body = raw[raw.index(b"data") + 8 :]
    return rate, np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2")


def _resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate_in, rate_out)
    return resample_poly(x, rate_out // g, rate_in // g)


def synthesize_all(
    plan: Sequence[Utterance], workers: int = 2, on_done: Callable[[int], None] | None = None
) -> list[np.ndarray]:
    """:func:`synthesize` every utterance, ``workers`` espeak-ng processes at a time, in plan order."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        out = []
        for clip in pool.map(synthesize, plan):
            out.append(clip)
            if on_done is not None:
                on_done(1)
    return out


def _noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise of a random colour: white, pink (1/f), brown (1/f²) or mains hum over a white floor."""
    kind = rng.integers(4)
    if kind == 3:
        t = np.arange(n) / 16000.0
        f0 = rng.choice((50.0, 60.0))
        x = sum(
            rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) for k in (1, 2, 3, 5)
        )
        x = x + 0.1 * rng.standard_normal(n)
    else:
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.maximum(np.arange(spectrum.size), 1.0)
        x = np.fft.irfft(spectrum / f ** (kind / 2.0), n)  # power falls as f^-kind
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def render_clips(
    clean: Sequence[np.ndarray], labels: np.ndarray, rng: np.random.Generator, *, train: bool, n: int = 16000
) -> np.ndarray:
    """Place each clean µ-law clip in an ``n``-sample window and add gain and noise; float32 ``(N, n)``.

    ``_silence_`` entries (empty clips) become noise only. Training adds speed perturbation (x0.9-1.1
    by linear interpolation) and a random one-pole colouring, which stand in for unseen speakers and
    microphones; held-out clips get only shift, gain and noise.
    """
    out = np.zeros((len(clean), n), dtype=np.float32)
    for i, (c, y) in enumerate(zip(clean, labels, strict=True)):
        x = np.zeros(n)
        if y != SILENCE and len(c):
            s = mulaw_decode(c)
            if train:
                m = max(2, round(len(s) / rng.uniform(0.9, 1.1)))
                s = np.interp(np.linspace(0, len(s) - 1, m), np.arange(len(s)), s)
            if len(s) > n:  # a slow long word: keep a random n-sample window
                start = rng.integers(len(s) - n + 1)
                s = s[start : start + n]
            off = rng.integers(n - len(s) + 1)
            x[off : off + len(s)] = s / (np.abs(s).max() + 1e-12)
            snr_db = rng.uniform(5.0, 30.0) if train else rng.uniform(10.0, 30.0)
            speech_rms = np.sqrt(np.mean(s**2)) / (np.abs(s).max() + 1e-12)
            x += _noise(n, rng) * speech_rms * 10 ** (-snr_db / 20)
            if train and rng.random() < 0.5:
                a = rng.uniform(-0.9, 0.9)  # > 0 low-pass, < 0 high-pass tilt
                x = _one_pole(x, a)
            peak_db = rng.uniform(-24.0, -1.0)
            x *= 10 ** (peak_db / 20) / (np.abs(x).max() + 1e-12)
        else:
            x = _noise(n, rng) * 10 ** (rng.uniform(-70.0, -20.0) / 20)  # room tone, down to near-digital silence
        out[i] = np.clip(x, -1.0, 1.0)
    return out


def _one_pole(x: np.ndarray, a: float) -> np.ndarray:
    from scipy.signal import lfilter

    return lfilter([1.0 - abs(a)], [1.0, -a], x)


def keywords_clean(
    split: str = "heldout", *, source: str = "auto", root: str | Path | None = None, seed: int = SPLIT_SEED
) -> tuple[list[np.ndarray], np.ndarray]:
    """Clean µ-law clips of ``split`` and their labels, ``_silence_`` entries included as empty clips.

    ``source="npz"`` reads the committed held-out clips (``root/keywords_heldout.npz``, default root: the
    package's ``zoo_weights``), ``"espeak"`` synthesizes, ``"auto"`` prefers the npz for the held-out split
    (it is what the recorded accuracies were measured on).

    Raises:
        BackendUnavailableError: synthesis is needed and espeak-ng is not installed.
        ModelFileError: the npz is unreadable.
    """
    _check_split(split)
    if source not in ("auto", "npz", "espeak"):
        raise ConfigError(f"source must be 'auto', 'npz' or 'espeak', got {source!r}.")
    npz = Path(root or ZOO_WEIGHTS_DIR) / KEYWORDS_HELDOUT_FILE
    if split == "heldout" and (source == "npz" or (source == "auto" and npz.is_file())):
        return read_clips(npz)
    if split == "train" and source == "npz":
        raise ConfigError("only the held-out keyword clips are committed; the train split needs source='espeak'.")
    plan, labels = keyword_plan(split, seed=seed)
    return with_silence(synthesize_all(plan), labels, split)


def with_silence(clips: list[np.ndarray], labels: np.ndarray, split: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Append the split's ``_silence_`` entries (empty clips: :func:`render_clips` fills them with noise)."""
    n = _PER_CLASS[split][0]
    return list(clips) + [np.zeros(0, np.uint8)] * n, np.concatenate([labels, np.full(n, SILENCE, np.int64)])


def render_split(
    clean: Sequence[np.ndarray], labels: np.ndarray, split: str, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """One seeded rendering of a split's clean clips: float32 ``(N, 16000)`` waveforms and int64 labels."""
    rng = np.random.default_rng([seed, 2 if split == "train" else 3])
    return render_clips(clean, labels, rng, train=split == "train"), labels


def keywords_split(
    split: str = "train", *, source: str = "auto", root: str | Path | None = None, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Keyword clips of ``split`` as model input: float32 ``(N, 16000)`` waveforms at 16 kHz, int64 labels.

    The held-out split is rendered with a fixed seed (the same noise on every call); the train split is
    one rendering of the training clips (the trainer renders them afresh every epoch).
    """
    clean, labels = keywords_clean(split, source=source, root=root, seed=seed)
    return render_split(clean, labels, split, seed)


def read_clips(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """Clips and labels of a clip file written by ``scripts/train_reference.py`` (``write_clips`` there)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            audio, offsets, labels, rate = z["mulaw"], z["offsets"], z["labels"], int(z["sample_rate"])
    except (OSError, KeyError, ValueError) as e:
        raise ModelFileError(
            f"{path}: missing or corrupt keyword clips ({e}); re-run scripts/train_reference.py."
        ) from e
    if rate != 16000 or audio.dtype != np.uint8 or len(offsets) != len(labels) + 1:
        raise ModelFileError(
            f"{path}: inconsistent clip file ({rate} Hz, {len(offsets)} offsets, {len(labels)} labels)."
        )
    return [audio[a:b] for a, b in itertools.pairwise(offsets)], labels.astype(np.int64)


def _check_split(split: str) -> None:
    if split not in ("train", "heldout"):
        raise ConfigError(f"split must be 'train' or 'heldout', got {split!r}.")
