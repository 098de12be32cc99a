"""``profile()``: time an artifact on a backend, with the device card and an optional per-op breakdown."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..artifact import Artifact, TensorSpec
from ..errors import ConfigError, DynamicShapeError, ModelFileError
from ..records import Record
from ..runtimes import backend_for, open_session
from ..runtimes.base import SessionOptions, TensorInfo
from ..runtimes.feeds import check_feeds, concrete_shape
from ..runtimes.ort import probe_in_subprocess
from .device import DeviceCard, device_card
from .harness import LatencyStats, MemorySampler, MemoryStats, ProfileConfig, measure
from .per_op import OpBreakdown, profile_ops

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ProfiledArtifact(Record):
    """Which model a profile measured, and on which inputs."""

    model_name: str
    format: str
    precision: str
    path: str
    sha: str | None
    summary: str
    input_shapes: dict[str, tuple[int, ...]]


@dataclass(frozen=True, kw_only=True)
class ProfileResult(Record):
    """Everything one :func:`profile` call measured, and on what.

    A typed record both ways (a device agent sends it over the wire): ``ProfileResult.from_dict(r.to_dict())``
    rebuilds it, with the per-op table cut to ``config.top_n`` nodes and the raw timing samples left out.
    """

    DERIVED: ClassVar[tuple[str, ...]] = ("peak_rss_mb",)

    artifact: ProfiledArtifact
    latency: LatencyStats
    per_op: OpBreakdown | None
    device: DeviceCard
    size_bytes: int
    memory: MemoryStats
    config: ProfileConfig
    startup_ms: float | None = None  # session creation + the first call: what a cold start of the app waits

    @property
    def peak_rss_mb(self) -> float:
        return self.memory.peak_rss_mb

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        return d | {"per_op": self.per_op.to_dict(top_n=self.config.top_n) if self.per_op else None}

    def to_markdown(self) -> str:
        a, lat = self.artifact, self.latency
        shapes = ", ".join(f"{k} {tuple(v)}" for k, v in a.input_shapes.items())
        warm = ", ".join(f"{w:.2f}" for w in lat.warmup_ms) or "none"
        stability = (
            f"stable (p90/p50 spread {lat.tail_spread:.1%}, std/mean {lat.cv:.1%})"
            if lat.stable
            else f"UNSTABLE: {lat.unstable_reason}"
        )
        lines = [
            f"## {a.model_name} · {a.format}/{a.precision} on {self.device.backend}",
            "",
            f"- device: {self.device.label} (id `{self.device.device_id}`)",
            f"- inputs: {shapes}",
            f"- size on disk: {self.size_bytes / 1e6:.2f} MB · peak RSS {self.peak_rss_mb:.1f} MB "
            f"(+{self.memory.delta_mb:.1f} MB while loading and running; {self.memory.method})",
            *([f"- start-up: {self.startup_ms:.1f} ms (session creation + first call)"] if self.startup_ms else []),
            f"- warm-up ({len(lat.warmup_ms)} runs, excluded): {warm} ms",
            f"- stability: {stability}",
            "",
            "| runs | p50 ms | p90 ms | p99 ms | mean ms | std ms | min ms | max ms | items/s |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {lat.runs} | {lat.p50_ms:.3f} | {lat.p90_ms:.3f} | {lat.p99_ms:.3f} | {lat.mean_ms:.3f} | "
            f"{lat.std_ms:.3f} | {lat.min_ms:.3f} | {lat.max_ms:.3f} | {lat.throughput:.1f} |",
        ]
        if self.per_op is not None:
            lines += ["", self.per_op.to_markdown(self.config.top_n)]
        return "\n".join(lines) + "\n"


def profile(
    artifact_or_path: Artifact | str | Path, config: ProfileConfig = ProfileConfig(), backend: str | None = None
) -> ProfileResult:
    """Time an artifact on ``backend`` with seeded random inputs shaped from its manifest.

    Args:
        artifact_or_path: an :class:`~edgeformer.artifact.Artifact`, an artifact folder or a bare model file.
        config: warm-up, loop bounds, threads, batch, resolution for symbolic spatial dims, per-op switch.
        backend: runtime name (``"ort"``, ``"openvino"``, ...); ``None`` (or ``"auto"``): the one the artifact's
            format implies, as :class:`edgeformer.Session` picks it.

    Returns:
        A :class:`ProfileResult` with latency statistics, optional per-op breakdown, device card,
        size on disk and peak process memory.

    Raises:
        DynamicShapeError: an input has symbolic dims that neither ``batch`` nor ``resolution`` sets.
        ConfigError: a fixed batch differs from ``config.batch``, or per-op was asked of a non-ORT backend.
    """
    artifact = artifact_or_path if isinstance(artifact_or_path, Artifact) else Artifact.load(artifact_or_path)
    backend = backend_for(artifact, backend)
    if config.per_op and backend != "ort":
        raise ConfigError(
            f"the per-op breakdown needs the ORT profiler; drop --per-op or profile an ONNX/ORT artifact on "
            f"--backend ort (this one runs on {backend!r})."
        )
    if not artifact.manifest.inputs:
        raise ModelFileError(f"{artifact.path}: the manifest lists no inputs; re-export the model.")
    feeds = build_feeds(artifact.manifest.inputs, batch=config.batch, resolution=config.resolution, seed=config.seed)
    if backend == "ort" and artifact.manifest.step == "import":
        # an ONNX file from elsewhere may crash the native runtime: try it in a child process first,
        # so that a crash is an error message instead of the end of this process
        log.info("probing %s in a child process before loading it here", artifact.model_path)
        probe_in_subprocess(artifact.model_path)

    # Memory covers session creation too: loading weights and planning the arena is where the peak is.
    with MemorySampler() as mem:
        t0 = time.perf_counter_ns()
        session = open_session(artifact, backend=backend, options=SessionOptions(threads=config.threads))
        try:
            feeds = check_feeds(session.inputs, feeds)
            session.run(feeds)
            startup_ms = (time.perf_counter_ns() - t0) / 1e6
            latency = measure(lambda: session.run(feeds), config)
        finally:
            session.close()
    per_op = None
    if config.per_op:
        per_op = profile_ops(artifact, feeds, warmup=config.warmup, runs=config.per_op_runs, threads=config.threads)
    assert mem.result is not None
    m = artifact.manifest
    return ProfileResult(
        artifact=ProfiledArtifact(
            model_name=m.model_name,
            format=m.format,
            precision=m.precision,
            path=str(artifact.model_path),
            sha=artifact.sha,
            summary=artifact.summary(),
            input_shapes={k: tuple(v.shape) for k, v in feeds.items()},
        ),
        latency=latency,
        per_op=per_op,
        device=device_card(backend=backend, threads=config.threads),
        size_bytes=artifact.size_bytes(),
        memory=mem.result,
        config=config,
        startup_ms=startup_ms,
    )


def build_feeds(
    inputs: Sequence[TensorSpec], *, batch: int = 1, resolution: int | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Seeded random inputs of the right shape and dtype for every input in ``inputs``.

    The leading dim of a rank >= 2 input is the batch; symbolic height/width of an NCHW input take
    ``resolution``; any other symbolic dim raises :class:`DynamicShapeError`, listing every such dim
    of every input in one message. Floats are standard normal; integers are drawn from ``[0, 2)``
    (a valid index for any embedding); booleans are fair coin flips.

    Raises:
        DynamicShapeError: symbolic dims that ``batch``/``resolution`` do not set.
        ConfigError: a fixed batch that differs from ``batch``, or a dtype that cannot be generated.
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    errors: list[str] = []
    for spec in inputs:
        lead = spec.shape[0] if spec.shape else None
        if len(spec.shape) >= 2 and isinstance(lead, int) and lead >= 0 and lead != batch:
            raise ConfigError(
                f"input {spec.name!r} has a fixed batch of {lead}; pass --batch {lead}, or re-export with a "
                "dynamic batch."
            )
        info = TensorInfo(name=spec.name, shape=tuple(spec.shape), dtype=spec.dtype)
        try:
            shape = concrete_shape(info, batch=batch, resolution=resolution)
        except DynamicShapeError as e:
            errors.append(str(e))
            continue
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.random(shape) < 0.5
        else:
            raise ConfigError(f"input {spec.name!r} has dtype {spec.dtype}, which profiling cannot generate.")
    if errors:
        raise DynamicShapeError(" ".join(errors))
    return feeds
