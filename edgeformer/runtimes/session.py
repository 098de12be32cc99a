"""Sessions: the backend registry, :class:`Session` (checked feeds in, arrays out) and :func:`open_session`."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..artifact import Artifact
from ..errors import BackendUnavailableError, ConfigError
from ..registry import Registry
from .base import Backend, BackendSession, SessionOptions, TensorInfo
from .feeds import check_feeds

log = logging.getLogger(__name__)

backends: Registry[type[Backend]] = Registry("backend")
_TARGETS: dict[str, tuple[str, str]] = {}  # name -> (lazy target, what to install when it cannot be imported)


def register_backend(name: str, target: str, install: str) -> None:
    """Register a backend lazily as ``"package.module:Class"``; ``install`` says how to get it when missing.

    Example::

        register_backend("tflite", "my_pkg.tflite:TfLiteBackend", "pip install my-pkg")
    """
    backends.add_lazy(name, target)
    _TARGETS[name] = (target, install)


register_backend("ort", "edgeformer.runtimes.ort:OrtBackend", "pip install onnxruntime")
register_backend("openvino", "edgeformer.runtimes.openvino:OpenVinoBackend", "pip install 'edgeformer[openvino]'")
register_backend("tensorrt", "edgeformer.runtimes.tensorrt:TensorRtBackend", "pip install 'edgeformer[tensorrt]'")
register_backend("coreml", "edgeformer.runtimes.coreml:CoreMlBackend", "pip install 'edgeformer[coreml]'")


# which backend opens each artifact format: the default when none is asked for
FORMAT_BACKENDS: dict[str, str] = {
    "onnx": "ort",
    "ort": "ort",
    "openvino": "openvino",
    "tensorrt": "tensorrt",
    "coreml": "coreml",
}


def backend_for(artifact: Artifact, backend: str | None = None) -> str:
    """``backend``, or the one the artifact's format implies when it is ``None`` or ``"auto"``.

    Raises:
        ConfigError: no backend opens the artifact's format.
    """
    if backend is not None and backend != "auto":
        return backend
    name = FORMAT_BACKENDS.get(artifact.format)
    if name is None:
        raise ConfigError(
            f"{artifact.path}: no backend opens a {artifact.format!r} artifact (known formats: "
            f"{', '.join(FORMAT_BACKENDS)}); re-export it with edgeformer."
        )
    return name


def get_backend(name: str) -> Backend:
    """A backend instance by name (``"ort"``, ``"openvino"``, ``"tensorrt"``, ``"coreml"``).

    Raises:
        ConfigError: an unknown name (with close matches).
        BackendUnavailableError: the backend's module or library is not installed; names the extra.
    """
    try:
        cls = backends.get(name)
    except ImportError as e:
        target, install = _TARGETS.get(name, ("", "install the package that provides it"))
        if target and name not in backends:  # Registry.get drops a lazy entry whose import failed: restore it
            backends.add_lazy(name, target)
        module = target.partition(":")[0]
        missing = "" if getattr(e, "name", None) == module else f" ({getattr(e, 'name', None) or e} is missing)"
        raise BackendUnavailableError(f"backend {name!r} is not available in this install{missing}: {install}") from e
    return cls()


class Session:
    """Run one artifact on one backend; numpy arrays in and out.

    Args:
        path_or_artifact: an artifact folder, a bare model file, or an :class:`Artifact`.
        backend: backend name (see :func:`get_backend`); ``None`` (or ``"auto"``) picks the one the artifact's
            format implies (:data:`FORMAT_BACKENDS`: ONNX and ORT on ``"ort"``, an OpenVINO IR on ``"openvino"``...).
        threads: intra-op threads (default: the backend's, usually all cores).
        providers: execution providers/devices in the backend's vocabulary; the first must be the one
            that runs, else :class:`BackendUnavailableError` (never a silent fallback).
        options: full :class:`SessionOptions`; ``threads``/``providers`` override its fields.

    Example::

        with Session("model.onnx", providers=("CPUExecutionProvider",)) as s:
            out = s.run({s.inputs[0].name: x})
    """

    def __init__(
        self,
        path_or_artifact: str | Path | Artifact,
        backend: str | None = None,
        threads: int | None = None,
        providers: tuple[str, ...] | list[str] | None = None,
        options: SessionOptions | None = None,
    ) -> None:
        options = _merge_options(options, threads, providers)
        self.artifact = path_or_artifact if isinstance(path_or_artifact, Artifact) else Artifact.load(path_or_artifact)
        self.backend = backend_for(self.artifact, backend)
        self.options = options
        self._session: BackendSession | None = _open(self.artifact, self.backend, options, chosen=backend)

    @property
    def _open(self) -> BackendSession:
        if self._session is None:
            raise ConfigError("this Session is closed; open a new one.")
        return self._session

    @property
    def inputs(self) -> list[TensorInfo]:
        return self._open.inputs

    @property
    def outputs(self) -> list[TensorInfo]:
        return self._open.outputs

    @property
    def provider(self) -> str:
        """The execution provider/device that actually runs the model."""
        return self._open.provider

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on ``feeds`` (input name to array) and return every output by name.

        Raises:
            InputMismatchError: names, ranks, shapes, dtypes or layout differ from :attr:`inputs`.
            InvalidInputError: a feed holds NaN/Inf.
        """
        session = self._open
        return session.run(check_feeds(session.inputs, feeds))

    def end_profiling(self) -> str | None:
        """Stop per-op profiling and return the trace path (``None`` where unsupported or off)."""
        return self._open.end_profiling()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = self._session.provider if self._session is not None else "closed"
        return f"Session({str(self.artifact.model_path)!r}, backend={self.backend!r}, provider={state!r})"


def _merge_options(
    options: SessionOptions | None, threads: int | None, providers: tuple[str, ...] | list[str] | None
) -> SessionOptions:
    options = options or SessionOptions()
    if isinstance(providers, str):  # a lone string would otherwise be read as a tuple of letters
        providers = (providers,)
    providers = tuple(providers) if providers is not None else None
    for field, value in (("threads", threads), ("providers", providers)):
        current = getattr(options, field)
        if value is not None and current is not None and value != current:
            raise ConfigError(f"{field} given both as an argument ({value!r}) and in options ({current!r}); give one.")
    return dataclasses.replace(
        options,
        threads=threads if threads is not None else options.threads,
        providers=providers if providers is not None else options.providers,
    )


def open_session(
    artifact: Artifact, *, backend: str | None = None, options: SessionOptions | None = None
) -> BackendSession:
    """Open ``artifact`` on ``backend`` with :class:`edgeformer.Session`'s checks, minus per-call feed checks.

    ``edgeformer.Session.run`` validates every feed on every call (~0.2 ms for a 224² image, NaN scan
    included); timing that would charge the check to the model, so the harness checks feeds once with
    :func:`~edgeformer.runtimes.feeds.check_feeds` and then calls the backend session directly.
    ``backend=None`` (or ``"auto"``) opens it on the backend its format implies, as :class:`Session` does.
    """
    return _open(artifact, backend_for(artifact, backend), options or SessionOptions(), chosen=backend)


def _open(artifact: Artifact, backend: str, options: SessionOptions, *, chosen: str | None) -> BackendSession:
    """The checks every opening shares: the backend can run here, and it opens this format (no fallback)."""
    impl = get_backend(backend)
    reason = impl.available()
    if reason:
        picked = f" (picked for the artifact's format {artifact.format!r})" if chosen in (None, "auto") else ""
        raise BackendUnavailableError(f"backend {backend!r}{picked} cannot run here: {reason}")
    if artifact.format not in impl.formats:
        name = FORMAT_BACKENDS.get(artifact.format)
        hint = f"use backend={name!r}, or leave backend unset." if name else "no backend opens this format."
        raise ConfigError(
            f"{artifact.path}: a {artifact.format!r} artifact cannot run on backend {backend!r} "
            f"(it opens {', '.join(impl.formats)}); {hint}"
        )
    return impl.open(artifact, options)
