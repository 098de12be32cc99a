"""Real inputs to try the trained reference models on, written as the files a user would have.

``edgeformer samples --out samples/`` calls :func:`write_samples`: the first ``per_class`` held-out items of
every class, never seen in training, as

- ``digits/<label>-<k>.png``: the 8x8 grayscale digit at its native size, 8-bit ink (0..16 scaled to 0..255),
  exactly what the digits models' recorded preprocessing upscales to their input in training;
- ``keywords/<label>-<k>.wav``: one second of 16 kHz 16-bit PCM, the committed held-out clip rendered with
  its fixed-seed noise and gain, the clips ``keywords_audioformer``'s held-out accuracy was measured on.

The true label leads the file name (``7-0.png``, ``_silence_-1.wav``), and ``samples.json`` beside the folders
lists every file with its label and the reference models it fits. The same arguments always write the same
bytes. Torch-free: the digits need scikit-learn (the ``apps`` extra), the keywords nothing.

Example::

    files = write_samples(Path("samples"), datasets=("keywords",), per_class=1)
    files[0].path, files[0].label  # (PosixPath('samples/keywords/yes-0.wav'), 'yes')
"""

from __future__ import annotations

import json
import shutil
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, OutputExistsError, did_you_mean
from ..scratch import make_scratch_dir
from .audio import KWS_LABELS
from .reference import DIGIT_LABELS, ZOO_WEIGHTS_DIR, digits_images, keywords_split

DATASETS: tuple[str, ...] = ("digits", "keywords")
INDEX_FILE = "samples.json"
_SAMPLE_RATE = 16000  # the keyword clips' rate, which the keyword model's preprocessing requires


@dataclass(frozen=True)
class SampleFile:
    """One written sample: where it is, its true label, and its dataset."""

    path: Path
    label: str
    dataset: str


def write_samples(
    out: str | Path,
    *,
    datasets: Sequence[str] = DATASETS,
    per_class: int = 2,
    overwrite: bool = False,
) -> list[SampleFile]:
    """Write ``per_class`` held-out samples of every class of each dataset under ``out``; returns them in order.

    Each dataset folder is written whole or not at all (built beside it, then renamed into place).

    Raises:
        ConfigError: an unknown dataset, or ``per_class`` < 1.
        OutputExistsError: ``out/<dataset>`` exists and ``overwrite`` is false.
        BackendUnavailableError: the digits need scikit-learn, which is not installed (the ``apps`` extra).
    """
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise ConfigError(
            f"unknown sample dataset {unknown[0]!r}{did_you_mean(unknown[0], DATASETS)}; known: {', '.join(DATASETS)}."
        )
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ConfigError(f"per_class must be a positive int, got {per_class!r}.")
    out = Path(out)
    datasets = list(dict.fromkeys(datasets))
    for name in datasets:  # before any slow work: an existing folder is a usage error
        if (out / name).exists() and not overwrite:
            raise OutputExistsError(f"{out / name} exists; pass --overwrite, or choose another --out.")
    written: list[SampleFile] = []
    for name in datasets:
        items = _digits(per_class) if name == "digits" else _keywords(per_class)
        written += _write_folder(out, name, items, overwrite)
    _write_index(out, written)
    return written


def _digits(per_class: int) -> list[tuple[str, str, object]]:
    images, labels = digits_images("heldout")
    return [(DIGIT_LABELS[c], "png", images[i]) for c, i in _first_per_class(labels, len(DIGIT_LABELS), per_class)]


def _keywords(per_class: int) -> list[tuple[str, str, object]]:
    waves, labels = keywords_split("heldout", source="npz")
    return [(KWS_LABELS[c], "wav", waves[i]) for c, i in _first_per_class(labels, len(KWS_LABELS), per_class)]


def _first_per_class(labels: np.ndarray, n_classes: int, per_class: int) -> list[tuple[int, int]]:
    """(class, index) of the first ``per_class`` items of each class, in class order then split order."""
    return [(c, int(i)) for c in range(n_classes) for i in np.flatnonzero(labels == c)[:per_class]]


def _write_folder(out: Path, name: str, items: list[tuple[str, str, object]], overwrite: bool) -> list[SampleFile]:
    out.mkdir(parents=True, exist_ok=True)
    final = out / name
    tmp = make_scratch_dir("samples", parent=out, beside=name)
    try:
        counts: dict[str, int] = {}
        names = []
        for label, suffix, data in items:
            k = counts[label] = counts.get(label, -1) + 1
            file = f"{label}-{k}.{suffix}"
            if suffix == "png":
                _write_png(tmp / file, np.asarray(data))
            else:
                _write_wav16(tmp / file, np.asarray(data))
            names.append((file, label))
        if final.exists() and overwrite:
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [SampleFile(final / file, label, name) for file, label in names]


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(image, "L").save(path, format="PNG")


def _write_wav16(path: Path, waveform: np.ndarray) -> None:
    pcm = np.clip(np.rint(waveform.astype(np.float64) * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(_SAMPLE_RATE)
        w.writeframes(pcm.tobytes())


def _write_index(out: Path, written: list[SampleFile]) -> None:
    """``samples.json``: every file (relative to ``out``) with its label, and the reference models per dataset."""
    index_path = out / INDEX_FILE
    index = json.loads(index_path.read_text(encoding="utf-8")) if index_path.is_file() else {}
    for name in dict.fromkeys(f.dataset for f in written):
        index[name] = {
            "models": reference_models_for(name),
            "files": [
                {"file": f.path.relative_to(out).as_posix(), "label": f.label} for f in written if f.dataset == name
            ],
        }
    index_path.write_text(json.dumps(dict(sorted(index.items())), indent=2) + "\n", encoding="utf-8")


def reference_models_for(dataset: str, root: str | Path | None = None) -> list[str]:
    """Names of the committed reference models trained on ``dataset`` (from their sidecars' ``dataset.name``)."""
    names = []
    for sidecar in sorted(Path(root or ZOO_WEIGHTS_DIR).glob("*.json")):
        d = json.loads(sidecar.read_text(encoding="utf-8"))
        if isinstance(d, dict) and isinstance(d.get("dataset"), dict) and d["dataset"].get("name") == dataset:
            names.append(sidecar.stem)
    return names


__all__ = ["DATASETS", "INDEX_FILE", "SampleFile", "reference_models_for", "write_samples"]
