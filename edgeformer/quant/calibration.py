"""Calibration data: sources of samples, and the three-line reader protocol that streams them.

A reader is anything with ORT's ``CalibrationDataReader`` shape::

    class MyReader:
        def get_next(self) -> dict[str, np.ndarray] | None: ...   # feeds of one batch, None when done
        def rewind(self) -> None: ...                               # start again from the first batch

:func:`open_calibration` turns what the user passed (an image or wav folder, a ``.npy``/``.npz`` file,
``"synthetic"`` or a reader) into a :class:`CalibrationData`: a streaming reader over ``calib_size``
seeded samples, a few *held-out* samples for the fidelity check, and a :class:`CalibrationSummary`.
Samples are decoded one at a time through the artifact's own preprocessing (``edgeformer.data``), so a
5,000-image folder never sits in memory.

Bad data fails with :class:`CalibrationError` naming the file, unless ``on_bad_sample="skip"``, which
skips unreadable files and counts them in the summary. NaN/Inf inputs always fail: they are a data bug,
not an unreadable file.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..artifact import TensorSpec
from ..data.audio import AudioFileError, check_sample_rate, fix_length, log_mel, read_wav
from ..data.images import IMAGE_SUFFIXES, as_image_input, load_image
from ..errors import CalibrationError, ConfigError, DynamicShapeError, InvalidInputError
from ..inputs import AudioInput, ImageInput, InputSpec, input_spec_from_dict
from .config import QuantConfig

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav",)
_MAX_NAMED = 20  # skipped samples named in the summary; the count is always complete


@runtime_checkable
class CalibrationReader(Protocol):
    """ORT's calibration reader protocol: feeds of one batch per call, ``None`` at the end."""

    def get_next(self) -> dict[str, np.ndarray] | None: ...

    def rewind(self) -> None: ...


@dataclass(kw_only=True)
class CalibrationSummary:
    """What calibration actually used; stored in the quantized artifact's manifest."""

    source: str
    kind: str  # "images" | "audio" | "arrays" | "synthetic" | "reader"
    found: int = 0  # candidate samples in the source
    ignored_files: int = 0  # files in the folder with other extensions
    sampled: int = 0  # drawn for calibration
    used: int = 0  # read successfully in the last pass
    skipped: int = 0  # of the calibration samples: used + skipped == sampled
    skipped_samples: list[str] = field(default_factory=list)  # the first few, with the reason
    holdout: int = 0
    holdout_skipped: int = 0  # held-out samples skipped (on_bad_sample="skip"); the fidelity check had fewer
    fidelity_on: str = "held-out samples"
    method: str = "minmax"
    method_requested: str = "minmax"
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class CalibrationData:
    """A streaming reader over the calibration samples, held-out feeds, and the summary."""

    reader: CalibrationReader
    holdout: list[dict[str, np.ndarray]]
    summary: CalibrationSummary

    def fidelity_feeds(self, n: int) -> tuple[list[dict[str, np.ndarray]], str]:
        """The feeds a quantized model is checked on, and what they are: the held-out samples, or (none held
        out: a user reader, or every held-out file unreadable) the first ``n`` calibration batches.

        A copy: the data may be shared (a Calibration reused by several quantize calls) and must not grow.
        The reader is rewound afterwards, so it can be read again.
        """
        feeds, on = list(self.holdout), self.summary.fidelity_on
        if not feeds:
            on = "calibration samples"
            self.reader.rewind()
            for _ in range(max(n, 1)):
                f = self.reader.get_next()
                if f is None:
                    break
                feeds.append(f)
            self.reader.rewind()
        return feeds, on


class SampleSource:
    """Indexable samples: ``names[i]`` identifies sample ``i`` in messages, ``load(i)`` returns its feeds."""

    kind = "samples"
    names: list[str]
    inputs: list[TensorSpec]

    def __len__(self) -> int:
        return len(self.names)

    def load(self, i: int) -> dict[str, np.ndarray]:
        raise NotImplementedError


class SampleReader:
    """Streams ``source[indices]`` in batches of ``batch``; skips or fails on unreadable samples."""

    def __init__(
        self,
        source: SampleSource,
        indices: Sequence[int],
        *,
        batch: int,
        on_bad_sample: str,
        summary: CalibrationSummary,
        require_samples: bool = True,
    ) -> None:
        self.source, self.indices, self.batch = source, list(indices), batch
        self.on_bad_sample, self.summary, self.require_samples = on_bad_sample, summary, require_samples
        self._pos = 0
        self._bad: dict[int, str] = {}
        self._good = 0
        self.current = ""  # names of the samples in the last batch, for error messages downstream

    def rewind(self) -> None:
        self._pos = 0
        self._good = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        parts: list[dict[str, np.ndarray]] = []
        names: list[str] = []
        while len(parts) < self.batch and self._pos < len(self.indices):
            i = self.indices[self._pos]
            self._pos += 1
            feeds = self._read(i)
            if feeds is not None:
                parts.append(feeds)
                names.append(self.source.names[i])
        if len(parts) < self.batch:
            if parts:
                log.info(
                    "dropping the last %d calibration sample(s): the model's batch is fixed at %d",
                    len(parts),
                    self.batch,
                )
            self._finish_pass()
            return None
        self._good += len(parts)
        self.current = ", ".join(names)
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if self.batch > 1 else parts[0]

    def _read(self, i: int) -> dict[str, np.ndarray] | None:
        if i in self._bad:
            return None
        name = self.source.names[i]
        try:
            feeds = self.source.load(i)
        except InvalidInputError as e:
            if self.on_bad_sample == "fail":
                raise CalibrationError(
                    f"calibration sample {name}: {e} Fix or remove it, or pass --on-bad-sample skip."
                ) from e
            self._bad[i] = str(e)
            self.summary.skipped = len(self._bad)
            if len(self.summary.skipped_samples) < _MAX_NAMED:
                self.summary.skipped_samples.append(f"{name}: {e}")
            log.warning("skipping calibration sample %s: %s", name, e)
            return None
        for t in self.source.inputs:  # outside the try: a wrong shape is a setup error, never a skippable sample
            _check_sample_shape(t, feeds[t.name].shape[1:], name)
        for k, v in feeds.items():
            if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all():
                raise CalibrationError(
                    f"calibration sample {name}: input {k!r} holds {int(v.size - np.isfinite(v).sum())} NaN/Inf "
                    "values; clean the data (this is never skipped: it points at a preprocessing bug)."
                )
        return feeds

    def _finish_pass(self) -> None:
        self.summary.used = self._good
        if self._good == 0 and self.require_samples:
            raise CalibrationError(
                f"no readable calibration samples in {self.summary.source}: all {len(self.indices)} drawn were "
                f"skipped ({'; '.join(self.summary.skipped_samples[:3])}); check the data or its format."
            )


# --- sources -----------------------------------------------------------------------------------
class ImageFolderSource(SampleSource):
    """Image files decoded through the artifact's recorded preprocessing (explicit mode conversion)."""

    kind = "images"

    def __init__(self, files: Sequence[Path], root: Path, input_: TensorSpec, preprocessing: ImageInput) -> None:
        self.files, self.input_name, self.inputs = list(files), input_.name, [input_]
        self.names = [f.relative_to(root).as_posix() for f in files]
        self.spec = as_image_input(preprocessing)

    def load(self, i: int) -> dict[str, np.ndarray]:

        return {self.input_name: load_image(self.files[i], self.spec)}


class WavFolderSource(SampleSource):
    """WAV files: mono, rate checked (never resampled silently), fixed length, log-mel on the host if needed."""

    kind = "audio"

    def __init__(self, files: Sequence[Path], root: Path, input_: TensorSpec, preprocessing: AudioInput) -> None:
        self.files, self.input_name, self.inputs = list(files), input_.name, [input_]
        self.names = [f.relative_to(root).as_posix() for f in files]
        self.spec = preprocessing

    def load(self, i: int) -> dict[str, np.ndarray]:

        try:
            wave, rate = read_wav(self.files[i])
        except OSError as e:  # read_wav turns format errors into AudioFileError, not permission or I/O errors
            raise AudioFileError(f"{self.files[i]}: cannot read the file ({e.strerror or e}).") from e
        check_sample_rate(rate, self.spec, source=self.names[i])
        wave = fix_length(wave.astype(np.float32), self.spec.num_samples)
        x = wave[None] if self.spec.frontend == "graph" else log_mel(wave, self.spec)[None, None]
        return {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}


class ArraySource(SampleSource):
    """Samples along axis 0 of a ``.npy`` (one-input models) or of each array of a ``.npz`` (keyed by input)."""

    kind = "arrays"

    def __init__(self, path: Path, inputs: Sequence[TensorSpec]) -> None:
        self.path, self.inputs = path, list(inputs)
        if path.suffix == ".npy" and len(inputs) != 1:
            raise CalibrationError(
                f"{path}: a .npy holds one array but the model has inputs {', '.join(t.name for t in inputs)}; "
                "save an .npz with one array per input name."
            )
        _check_array_file(path)
        try:
            if path.suffix == ".npy":
                self.arrays = {inputs[0].name: np.load(path, mmap_mode="r", allow_pickle=False)}
            else:
                with np.load(path, allow_pickle=False) as z:
                    missing = [t.name for t in inputs if t.name not in z.files]
                    if missing:
                        raise CalibrationError(
                            f"{path}: no array for input(s) {', '.join(missing)} "
                            f"(it holds {', '.join(z.files) or 'none'}); "
                            "key the arrays by the model's input names."
                        )
                    self.arrays = {t.name: z[t.name] for t in inputs}
        except CalibrationError:
            raise
        # a corrupt file fails in numpy, zipfile or zlib with whatever their parsers raise: beside OSError,
        # ValueError, EOFError, BadZipFile and zlib.error, fuzz/calib_arrays.py met tokenize's TokenError (numpy
        # tokenizes a version-1 header), SyntaxError (a dtype string), NotImplementedError (a zip version) and
        # OverflowError (a shape past the address space). The block only reads, so no bug of ours hides here.
        except Exception as e:
            raise CalibrationError(
                f"{path}: cannot read calibration arrays ({e}); the file is truncated or corrupt: save them again "
                "with numpy.save/savez."
            ) from e
        raw = [k for k, a in self.arrays.items() if not isinstance(a, np.ndarray)]  # np.load's bytes for a non-.npy
        if raw:  # member of an .npz (fuzz/calib_arrays.py)
            raise CalibrationError(
                f"{path}: {', '.join(raw)} in the archive is not a .npy array; save with numpy.savez."
            )
        self.dtypes = {t.name: _array_dtype(t, self.arrays[t.name], path) for t in inputs}
        counts = {k: (a.shape[0] if a.ndim else 0) for k, a in self.arrays.items()}
        if len(set(counts.values())) != 1:
            raise CalibrationError(f"{path}: arrays hold different sample counts {counts}; axis 0 must be the samples.")
        n = next(iter(counts.values()))
        self.names = [f"{path.name}[{i}]" for i in range(n)]
        for t in inputs:
            _check_sample_shape(t, self.arrays[t.name].shape[1:], str(path))

    def load(self, i: int) -> dict[str, np.ndarray]:
        return {k: np.ascontiguousarray(a[i : i + 1], dtype=self.dtypes[k]) for k, a in self.arrays.items()}


_MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK"}  # an .npz is a zip archive


def _check_array_file(path: Path) -> None:
    """Refuse by content what is not a NumPy file: numpy would try to unpickle it and suggest allow_pickle."""
    want = _MAGIC[path.suffix]
    try:
        with path.open("rb") as f:
            head = f.read(len(want))
    except OSError as e:
        raise CalibrationError(
            f"{path}: cannot read the file ({e.strerror or e}); check its permissions and the disk it is on."
        ) from e
    if head != want:
        what = "it is empty" if not head else f"it starts with {head!r}, not {want!r}"
        raise CalibrationError(
            f"{path}: not a NumPy {path.suffix} file ({what}); save the arrays with numpy.save / numpy.savez."
        )


def _array_dtype(t: TensorSpec, a: np.ndarray, path: Path) -> np.dtype:
    """The dtype samples of ``a`` are fed as: the input's own. Floats of another width are converted (numpy
    defaults to float64, and rounding to float32 is what the model does anyway); integers are refused, since
    raw pixels or PCM codes need the model's normalisation, which a cast would skip."""
    try:
        want = np.dtype(t.dtype)
    except TypeError:  # a dtype numpy does not name (bfloat16): feed the array as it is
        return a.dtype
    if a.dtype == want or (np.issubdtype(a.dtype, np.floating) and np.issubdtype(want, np.floating)):
        return want
    raise CalibrationError(
        f"{path}: the array for {t.name!r} is {a.dtype} but the model input is {t.dtype}; save the preprocessed "
        f"(normalised) inputs as {t.dtype}, e.g. x.astype(np.{t.dtype}) after normalisation."
    )


class SyntheticSource(SampleSource):
    """Seeded random inputs with the model's shape: exercises the pipeline, says nothing about accuracy."""

    kind = "synthetic"

    def __init__(
        self,
        inputs: Sequence[TensorSpec],
        shapes: Mapping[str, tuple[int, ...]],
        n: int,
        seed: int,
        preprocessing: InputSpec | None,
    ) -> None:
        self.inputs, self.shapes, self.seed = list(inputs), dict(shapes), seed
        self.names = [f"synthetic[{i}]" for i in range(n)]
        self.waveform = isinstance(preprocessing, AudioInput) and preprocessing.frontend == "graph"

    def load(self, i: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, i])  # per-sample stream: sample i is the same whatever is drawn
        feeds = {}
        for t in self.inputs:
            x = rng.standard_normal((1, *self.shapes[t.name])).astype(np.float32)
            feeds[t.name] = np.clip(0.1 * x, -1, 1) if self.waveform else x  # a waveform lives in [-1, 1]
        return feeds


# --- entry point -------------------------------------------------------------------------------
def open_calibration(
    calib: Any,
    *,
    inputs: Sequence[TensorSpec],
    preprocessing: InputSpec | Mapping[str, Any] | None,
    config: QuantConfig,
) -> CalibrationData:
    """Open ``calib`` (folder, ``.npy``/``.npz``, ``"synthetic"`` or a reader) for the model's ``inputs``.

    ``preprocessing`` is the artifact's input spec (its JSON form is accepted too).

    Raises:
        CalibrationError: an empty folder, unreadable arrays, or data that does not fit the model.
        DynamicShapeError: synthetic data for a model with symbolic non-batch dimensions.
    """
    if isinstance(preprocessing, Mapping):
        preprocessing = input_spec_from_dict(preprocessing)
    floats = [t for t in inputs if t.dtype.startswith("float")]
    if len(floats) != len(inputs) or not inputs:
        raise CalibrationError(
            f"static calibration needs float inputs; this model has {[(t.name, t.dtype) for t in inputs]}."
        )
    batch = _batch_size(inputs)
    if isinstance(calib, CalibrationReader) and not isinstance(calib, (str, Path)):
        summary = CalibrationSummary(source=type(calib).__name__, kind="reader", fidelity_on="calibration samples")
        return CalibrationData(reader=calib, holdout=[], summary=summary)
    if not isinstance(calib, (str, Path)):
        raise ConfigError(
            f"calib must be a folder, a .npy/.npz file, 'synthetic' or a reader with get_next() and rewind(); "
            f"got {type(calib).__name__} (an ORT CalibrationDataReader needs a rewind() method too)."
        )
    if isinstance(calib, str) and calib == "synthetic":
        source: SampleSource = SyntheticSource(
            inputs,
            _synthetic_shapes(inputs, preprocessing),
            config.calib_size + config.fidelity_samples,
            config.seed,
            preprocessing,
        )
        summary = CalibrationSummary(source="synthetic", kind="synthetic", found=len(source))
        msg = (
            "calibrating on SYNTHETIC random inputs: ranges will not match real data and accuracy can drop "
            "badly; pass a folder of real samples (--calib DIR) for a model you will deploy"
        )
        log.warning(msg)
        summary.warnings.append(msg)
    else:
        source, summary = _open_path(Path(calib), inputs, preprocessing)
    calib_idx, hold_idx = _split(len(source), config)
    summary.sampled, summary.holdout = len(calib_idx), len(hold_idx)
    if not hold_idx:
        summary.fidelity_on = "calibration samples (too few to hold any out)"
        hold_idx = calib_idx[: config.fidelity_samples]
    reader = SampleReader(source, calib_idx, batch=batch, on_bad_sample=config.on_bad_sample, summary=summary)
    # held-out samples obey on_bad_sample too: which files are held out is a seeded draw, and "fail" must not
    # let a broken file through because it happened to be drawn for the fidelity check. Skipped ones are
    # counted apart, so that used + skipped stays the calibration count (with all of them skipped the check
    # uses calibration samples)
    hold_summary = CalibrationSummary(source=summary.source, kind=summary.kind)
    holdout_reader = SampleReader(
        source, hold_idx, batch=batch, on_bad_sample=config.on_bad_sample, require_samples=False, summary=hold_summary
    )
    holdout = _drain(holdout_reader) if hold_idx and config.fidelity_samples else []
    if summary.holdout and hold_summary.skipped:  # (without a hold-out, hold_idx are calibration samples)
        summary.holdout_skipped = hold_summary.skipped
        room = max(_MAX_NAMED - len(summary.skipped_samples), 0)
        summary.skipped_samples.extend(f"{s} (held out)" for s in hold_summary.skipped_samples[:room])
    return CalibrationData(reader=reader, holdout=holdout, summary=summary)


def _drain(reader: SampleReader) -> list[dict[str, np.ndarray]]:
    out = []
    while (feeds := reader.get_next()) is not None:
        out.append(feeds)
    return out


def _open_path(path: Path, inputs: Sequence[TensorSpec], preprocessing: InputSpec | None):
    if not path.exists():
        raise CalibrationError(
            f"calibration data {path} does not exist; pass a folder, a .npy/.npz file or 'synthetic'."
        )
    if path.is_file():
        if path.suffix not in (".npy", ".npz"):
            raise CalibrationError(f"{path}: calibration files must be .npy or .npz; pass a folder for images or wavs.")
        source = ArraySource(path, inputs)
        if len(source) == 0:
            raise CalibrationError(f"{path}: holds no samples (axis 0 is empty).")
        return source, CalibrationSummary(source=str(path), kind="arrays", found=len(source))
    kind = preprocessing.kind if preprocessing is not None else None
    if kind not in ("image", "audio"):
        raise CalibrationError(
            f"{path}: the model records no image/audio preprocessing (a bare ONNX from elsewhere?), so files cannot be "
            "turned into inputs; pass preprocessed arrays as an .npz keyed by input name."
        )
    if len(inputs) != 1:
        raise CalibrationError(
            f"{path}: a folder can feed a one-input model only; pass an .npz for inputs "
            f"{', '.join(t.name for t in inputs)}."
        )
    suffixes = IMAGE_SUFFIXES if kind == "image" else AUDIO_SUFFIXES
    _check_listable(path)
    files, ignored = [], 0
    for f in sorted(path.rglob("*"), key=lambda p: p.relative_to(path).as_posix()):
        if f.is_file() and not f.name.startswith("."):
            if f.suffix.lower() in suffixes:
                files.append(f)
            else:
                ignored += 1
    if not files:
        raise CalibrationError(
            f"{path}: no {'image' if kind == 'image' else 'wav'} files ({', '.join(suffixes)}) found"
            f"{f'; {ignored} other file(s) ignored' if ignored else ''}; point --calib at a folder of samples."
        )
    factory: Callable[..., SampleSource] = ImageFolderSource if kind == "image" else WavFolderSource
    source = factory(files, path, inputs[0], preprocessing)
    summary = CalibrationSummary(source=str(path), kind=source.kind, found=len(files), ignored_files=ignored)
    return source, summary


def _check_listable(path: Path) -> None:
    """Fail on a folder (or sub-folder) that cannot be listed: ``rglob`` skips those without a word, which
    would report an unreadable folder as one without samples, or quietly calibrate on part of the data."""
    errors: list[OSError] = []
    for _ in os.walk(path, onerror=errors.append):
        pass
    if errors:
        e = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise CalibrationError(
            f"{path}: cannot list calibration folder {e.filename}{more} ({e.strerror or e}); check its permissions."
        )


def _split(n: int, config: QuantConfig) -> tuple[list[int], list[int]]:
    """Seeded draw: held-out samples first (a quarter at most), then up to ``calib_size`` for calibration."""
    order = np.random.default_rng(config.seed).permutation(n).tolist()
    n_hold = min(config.fidelity_samples, n // 4)
    return order[n_hold : n_hold + config.calib_size], order[:n_hold]


def _batch_size(inputs: Sequence[TensorSpec]) -> int:
    first = inputs[0].shape[0] if inputs[0].shape else 1
    return first if isinstance(first, int) and first > 0 else 1


def _synthetic_shapes(inputs: Sequence[TensorSpec], preprocessing: InputSpec | None) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for t in inputs:
        dims = t.shape[1:]
        if all(isinstance(d, int) and d > 0 for d in dims):
            shapes[t.name] = tuple(int(d) for d in dims)
            continue
        symbolic = [f"{t.name}[{i + 1}]={d!r}" for i, d in enumerate(dims) if not (isinstance(d, int) and d > 0)]
        raise DynamicShapeError(
            f"synthetic calibration needs a concrete input shape, but {', '.join(symbolic)} is dynamic; re-export "
            "with a fixed shape (edgeformer export MODEL --batch 1 --resolution R) or calibrate with real data."
        )
    return shapes


def _check_sample_shape(t: TensorSpec, sample_shape: tuple[int, ...], source: str) -> None:
    want = t.shape[1:]
    ok = len(want) == len(sample_shape) and all(
        not isinstance(w, int) or w == g for w, g in zip(want, sample_shape, strict=True)
    )
    if not ok:
        raise CalibrationError(
            f"{source}: samples of {t.name!r} have shape {tuple(sample_shape)} but the model expects "
            f"{tuple(want)} per sample (axis 0 of the array is the sample index)."
        )
