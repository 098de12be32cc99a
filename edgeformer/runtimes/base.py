"""Backend and session protocols shared by every runtime (ORT, OpenVINO, TensorRT, CoreML).

A backend turns an :class:`~edgeformer.artifact.Artifact` into a :class:`BackendSession`; the public
:class:`edgeformer.Session` wraps one and checks feeds before the native runtime sees them.

Example::

    class OrtBackend(Backend):
        name = "ort"
        formats = ("onnx", "ort")
        def open(self, artifact, options): return OrtSession(artifact, options)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..artifact import Artifact


@dataclass(frozen=True, kw_only=True)
class TensorInfo:
    """Name, shape (ints, or strings for symbolic dims) and numpy dtype name of a model input/output."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str


@dataclass(frozen=True, kw_only=True)
class SessionOptions:
    """Backend-neutral session settings; each backend maps them in its own adapter.

    ``providers`` names execution providers/devices in the backend's own vocabulary (ORT:
    ``"CPUExecutionProvider"``; OpenVINO: ``"CPU"``); a session whose running provider differs from the
    first requested one raises :class:`~edgeformer.errors.BackendUnavailableError` (no silent fallback).
    """

    threads: int | None = None
    providers: tuple[str, ...] | None = None
    graph_optimization: str = "all"  # "disable" | "basic" | "extended" | "all"
    enable_profiling: bool = False  # per-op profiling (ORT's JSON trace)
    profile_dir: str | None = None
    extra: tuple[tuple[str, Any], ...] = ()  # backend-specific, validated by that backend; never a free dict


class BackendSession(ABC):
    """One loaded model on one backend. ``run`` takes and returns numpy arrays keyed by tensor name."""

    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    provider: str  # what actually runs (e.g. "CPUExecutionProvider", "CPU", "cuda:0")

    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release native resources."""

    def end_profiling(self) -> str | None:
        """Stop profiling and return the trace file path, where the backend supports it."""
        return None


class Backend(ABC):
    """A runtime that can open artifacts of some formats."""

    name: str
    formats: tuple[str, ...]

    @abstractmethod
    def open(self, artifact: Artifact, options: SessionOptions) -> BackendSession: ...

    def available(self) -> str | None:
        """``None`` when usable here, else the reason (missing extra, no GPU, not macOS)."""
        return None
