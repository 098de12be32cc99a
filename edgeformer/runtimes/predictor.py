"""Predictor: the artifact's recorded preprocessing + a Session + softmax and labels.

What ``x`` may be depends on the artifact's ``preprocessing`` (the ``ImageInput``/``AudioInput``
recorded at export):

* image: a file path, a PIL image, an HWC uint8 array, or an already preprocessed float array
  (``(C, H, W)`` or ``(1, C, H, W)``);
* audio: a wav path or a mono float waveform (1-D); ``frontend="graph"`` feeds the waveform cut or
  zero-padded to the clip length, ``frontend="host"`` computes the log-mel with numpy first;
* no preprocessing (a bare ONNX from elsewhere): only already preprocessed arrays.

Example::

    p = Predictor(Session("build/kws"))
    print(p.predict("yes.wav", top_k=3))
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import Artifact
from ..data.audio import check_sample_rate, fix_length, log_mel, read_wav
from ..data.images import as_image_input, load_image
from ..errors import ConfigError, InvalidInputError, ModelFileError
from ..inputs import AudioInput, ImageInput
from .session import Session

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One class of a prediction: its label, index in the model's output, and softmax probability."""

    label: str
    index: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Predictor:
    """Preprocess one input, run the model, return the top-k classes. Built by :func:`edgeformer.load`."""

    def __init__(self, session: Session) -> None:
        self.session = session
        if len(session.inputs) != 1:
            raise ConfigError(
                f"predict handles single-input models; this one takes {', '.join(i.name for i in session.inputs)}. "
                "Use edgeformer.Session(...).run(feeds) instead."
            )
        self.input = session.inputs[0]
        self.output = session.outputs[0]
        manifest = session.artifact.manifest
        # parsed and checked once, when the manifest was read (edgeformer.manifest)
        self.preprocessing: ImageInput | AudioInput | None = manifest.preprocessing
        self.kind = self.preprocessing.kind if self.preprocessing is not None else None
        self.labels = manifest.labels
        n = self.output.shape[-1] if self.output.shape else None
        if self.labels is not None and isinstance(n, int) and len(self.labels) != n:
            raise ModelFileError(
                f"{session.artifact.path}: the manifest lists {len(self.labels)} labels but the model outputs {n} "
                "classes; re-export the artifact with the right label set."
            )
        self._image_spec = self._audio_spec = None
        if isinstance(self.preprocessing, ImageInput):
            self._image_spec = as_image_input(self.preprocessing)  # checks the values a pipeline needs
        elif isinstance(self.preprocessing, AudioInput):
            self._audio_spec = self.preprocessing

    @property
    def random_init(self) -> bool:
        """Whether the model is a zoo architecture exported without weights: its labels are noise.

        The manifest's lineage says so: a zoo family (``family`` set) with no checkpoint recorded. Your own
        module (no family) and trained reference models (their weights file is recorded) are not.
        """
        lineage = self.session.artifact.manifest.lineage
        return lineage.family is not None and lineage.checkpoint is None

    def predict(self, x: Any, top_k: int = 5) -> list[Prediction]:
        """The ``top_k`` most likely classes for one input, most likely first.

        Raises:
            ConfigError: ``top_k`` < 1, or a non-array input to a model with unknown preprocessing.
            InvalidInputError: an unreadable file, a wrong sample rate, or an array of the wrong shape.
        """
        return self.predict_batch([x], top_k=top_k)[0]

    def predict_batch(self, xs: Sequence[Any], top_k: int = 5) -> list[list[Prediction]]:
        """:meth:`predict` for several inputs; batched in one run when the model's batch axis is dynamic."""
        if not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k must be a positive int, got {top_k!r}.")
        if len(xs) == 0:
            raise InvalidInputError("predict_batch got no inputs; pass at least one.")
        batch = np.concatenate([self.preprocess(x) for x in xs])
        step = self.input.shape[0]
        if isinstance(step, int):  # static batch (usually 1): one run per slice
            chunks = [batch[i : i + step] for i in range(0, len(batch), step)]
        else:
            chunks = [batch]
        logits = np.concatenate([self.session.run({self.input.name: c})[self.output.name] for c in chunks])
        return [self._top_k(row, top_k) for row in logits.reshape(len(xs), -1)]

    def preprocess(self, x: Any) -> np.ndarray:
        """The model's input for ``x`` as a batch of one (already preprocessed arrays pass unchanged)."""
        rank = len(self.input.shape)
        preprocessed = isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating) and x.ndim in (rank, rank - 1)
        if preprocessed and not (self.kind == "audio" and x.ndim == 1):  # a 1-D waveform needs the audio front-end
            if x.ndim == rank and x.shape[0] != 1:
                raise InvalidInputError(
                    f"predict takes one input, got a batch of {x.shape[0]} {x.shape}; pass the items to "
                    "predict_batch([...]) or run the batch with Session.run."
                )
            return x if x.ndim == rank else x[None]
        if self.kind == "image":
            return self._to_input_dtype(load_image(x, self._image_spec))
        if self.kind == "audio":
            return self._to_input_dtype(self._audio(x))
        if isinstance(x, np.ndarray):
            raise InvalidInputError(
                f"array of shape {x.shape} {x.dtype} does not fit input {self.input.name!r} {self.input.shape} "
                f"{self.input.dtype}; pass the preprocessed tensor with or without the batch axis."
            )
        raise ConfigError(
            f"{self.session.artifact.model_path.name} records no preprocessing (a bare ONNX from outside "
            f"edgeformer), so a {type(x).__name__} cannot be turned into its input; pass a preprocessed numpy "
            f"array shaped like {self.input.shape}, or use an edgeformer artifact (made by `edgeformer export`)."
        )

    def _to_input_dtype(self, x: np.ndarray) -> np.ndarray:
        # our own float32 preprocessing meets a float16/float64 input (an fp16 export without float32 I/O);
        # arrays the caller preprocessed are never cast: check_feeds reports their dtype instead
        if self.input.dtype in ("float16", "float64") and x.dtype != self.input.dtype:
            return x.astype(self.input.dtype)
        return x

    def _audio(self, x: Any) -> np.ndarray:
        spec = self._audio_spec
        if isinstance(x, (str, Path)):
            wave, sr = read_wav(x)
            check_sample_rate(sr, spec, source=str(x))
        elif isinstance(x, np.ndarray) and x.ndim == 1 and np.issubdtype(x.dtype, np.floating):
            wave = x  # a waveform array carries no rate: it is taken to be at spec.sample_rate
        else:
            raise InvalidInputError(
                f"cannot use {type(x).__name__} {getattr(x, 'shape', '')} as audio; pass a wav path or a mono "
                f"float waveform (1-D numpy array at {spec.sample_rate} Hz)."
            )
        wave = fix_length(np.asarray(wave, dtype=np.float32), spec.num_samples)
        if spec.frontend == "graph":
            return wave[None]
        return log_mel(wave, spec)[None, None].astype(np.float32)

    def _top_k(self, logits: np.ndarray, k: int) -> list[Prediction]:
        z = logits.astype(np.float64)
        p = np.exp(z - z.max())  # max-subtracted: exp of large logits would overflow
        p /= p.sum()
        order = np.argsort(-p, kind="stable")[:k]
        return [Prediction(self._label(int(i)), int(i), float(p[i])) for i in order]

    def _label(self, i: int) -> str:
        return self.labels[i] if self.labels is not None else f"class_{i}"


def load(path_or_artifact: str | Path | Artifact, backend: str | None = None, threads: int | None = None) -> Predictor:
    """Open an artifact for prediction with the preprocessing and labels recorded in it.

    ``backend=None`` runs it on the backend its format implies (an OpenVINO IR on OpenVINO, ...); a backend
    named explicitly that cannot open the format raises :class:`~edgeformer.errors.ConfigError`.

    Example::

        top = edgeformer.load("build/l1").predict("cat.jpg", top_k=1)[0]
        print(top.label, top.score)
    """
    return Predictor(Session(path_or_artifact, backend=backend, threads=threads))
