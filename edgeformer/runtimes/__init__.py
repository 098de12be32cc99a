"""Runtimes: run an artifact on a backend, torch-free (numpy + onnxruntime are enough on a device).

Two layers:

* :class:`Session` — thin, like ``onnxruntime.InferenceSession``: numpy arrays in, numpy arrays out,
  feeds checked against the model before the native runtime sees them.
* :func:`load` — a :class:`~edgeformer.runtimes.predictor.Predictor` that applies the preprocessing
  recorded in the artifact and returns labelled results.

Backends are looked up by name in :data:`backends` and imported on first use, so importing edgeformer
never imports openvino, tensorrt or coremltools. Without a ``backend`` argument an artifact opens on the
backend its format implies (:data:`FORMAT_BACKENDS`, :func:`backend_for`).

Example::

    with Session("build/l1", threads=1) as s:
        logits = s.run({"pixels": x})["logits"]
    print(load("build/l1").predict("cat.jpg", top_k=3))
"""

from .base import Backend, BackendSession, SessionOptions, TensorInfo
from .feeds import check_feeds, concrete_shape
from .predictor import Prediction, Predictor, load
from .session import FORMAT_BACKENDS, Session, backend_for, backends, get_backend, open_session, register_backend

__all__ = [
    "FORMAT_BACKENDS",
    "Backend",
    "BackendSession",
    "Prediction",
    "Predictor",
    "Session",
    "SessionOptions",
    "TensorInfo",
    "backend_for",
    "backends",
    "check_feeds",
    "concrete_shape",
    "get_backend",
    "load",
    "open_session",
    "register_backend",
]
