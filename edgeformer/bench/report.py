"""The bench report: its settings (:class:`BenchConfig`), its rows (:class:`BenchRow`) and the table
(:class:`BenchReport`: terminal, Markdown and JSON, and which row earns the marker)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from ..artifact import now_iso
from ..compare import min_cosine_problem
from ..errors import ConfigError, did_you_mean
from ..profiling import ProfileConfig

log = logging.getLogger(__name__)

Status = Literal["ok", "skipped", "failed"]
FORMATS = ("pytorch", "onnx", "ort", "openvino", "tensorrt", "coreml")
BACKENDS = ("eager", "ort", "openvino", "tensorrt", "coreml")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# the bar a row must meet to be marked: int8 of a trained model typically measures 0.999+ vs fp32
DEFAULT_MIN_COSINE = 0.999


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """Timing, selection and fidelity settings shared by every row.

    Batch, threads and resolution are arguments of :func:`bench`. ``rows`` selects producers by name
    (``"onnx-fp32-ort"``); ``formats``, ``precisions`` and ``backends`` by what the row is (``"openvino"``,
    ``"int8"``, ``"ort"``); ``None`` means all. ``min_cosine`` is the fidelity bar of the marker and
    ``parity_samples`` the number of inputs (batches) each row is compared with PyTorch on.
    """

    warmup: int = 10
    runs: int | None = None
    min_time_s: float = 2.0
    max_runs: int = 10_000
    seed: int = 0
    max_rel_spread: float = 0.10
    rows: tuple[str, ...] | None = None
    formats: tuple[str, ...] | None = None
    precisions: tuple[str, ...] | None = None
    backends: tuple[str, ...] | None = None
    min_cosine: float = DEFAULT_MIN_COSINE
    parity_samples: int = 8

    def __post_init__(self) -> None:

        problems = []
        for name, known in (("formats", FORMATS), ("precisions", PRECISIONS), ("backends", BACKENDS)):
            for value in getattr(self, name) or ():
                if value not in known:
                    problems.append(
                        f"unknown --{name[:-1]} {value!r}{did_you_mean(value, known)}; choose from {', '.join(known)}"
                    )
        if problem := min_cosine_problem(self.min_cosine):
            problems.append(problem)
        n = self.parity_samples
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            problems.append(f"parity_samples must be an int >= 1, got {n!r}")
        if problems:
            raise ConfigError("invalid bench settings: " + "; ".join(problems) + ".")

    def profile_config(self, *, batch: int, threads: int | None, resolution: int | None) -> ProfileConfig:
        return ProfileConfig(
            warmup=self.warmup,
            runs=self.runs,
            min_time_s=self.min_time_s,
            max_runs=self.max_runs,
            threads=threads,
            batch=batch,
            resolution=resolution,
            seed=self.seed,
            max_rel_spread=self.max_rel_spread,
        )


@dataclass(frozen=True, kw_only=True)
class BenchRow:
    """One target of the bench table. Figures are ``None`` where they do not apply or the row did not run.

    ``parity_cosine`` is the worst sample's cosine vs PyTorch and ``top1_agreement`` the share of samples
    with PyTorch's arg-max class (classifiers only); ``peer`` marks a baseline a user gets without
    edgeformer (plain ORT, ``quantize_static`` defaults, NNCF, eager PyTorch); ``versions`` the tools that
    built and ran the row.
    """

    name: str  # the producer's, derived from format, precision, backend and variant
    format: str
    precision: str
    backend: str
    status: Status
    reason: str = ""
    peer: bool = False
    size_mb: float | None = None
    parity_cosine: float | None = None
    top1_agreement: float | None = None
    parity_samples: int | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    fps: float | None = None
    stable: bool | None = None
    unstable_reason: str = ""  # the harness's spread figures when ``stable`` is False
    artifact_path: str | None = None
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def meets(self, min_cosine: float) -> bool:
        """Ran, was timed, and its outputs agree with PyTorch at ``min_cosine`` or better."""
        return (
            self.status == "ok"
            and self.p50_ms is not None
            and self.parity_cosine is not None
            and self.parity_cosine >= min_cosine
        )


@dataclass(frozen=True, kw_only=True)
class BenchReport:
    """All rows of one bench run, with the device they were measured on."""

    model: str
    rows: tuple[BenchRow, ...]
    device: dict[str, Any]
    batch: int
    threads: int | None
    resolution: int | None
    config: BenchConfig
    out: str
    parity_on: str = ""
    created: str = field(default_factory=now_iso)

    @property
    def failed(self) -> tuple[BenchRow, ...]:
        """Rows that failed (the CLI exits 7 when some did)."""
        return tuple(r for r in self.rows if r.status == "failed")

    def best(self) -> BenchRow | None:
        """The fastest row that meets the fidelity bar (``config.min_cosine`` vs PyTorch), or ``None``."""
        ok = [r for r in self.rows if r.meets(self.config.min_cosine)]
        return min(ok, key=lambda r: r.p50_ms) if ok else None

    def fastest_ok(self) -> BenchRow | None:
        """The ``ok`` row with the lowest p50 whatever its fidelity, or ``None`` when no row ran."""
        ok = [r for r in self.rows if r.status == "ok" and r.p50_ms is not None]
        return min(ok, key=lambda r: r.p50_ms) if ok else None

    def to_dict(self) -> dict[str, Any]:
        best, fastest = self.best(), self.fastest_ok()
        return {
            "model": self.model,
            "created": self.created,
            "batch": self.batch,
            "threads": self.threads,
            "resolution": self.resolution,
            "config": dataclasses.asdict(self.config),
            "device": self.device,
            "parity_on": self.parity_on,
            "rows": [r.to_dict() for r in self.rows],
            "best": best.name if best else None,
            "fastest": fastest.to_dict() if fastest else None,
            "out": self.out,
        }

    def to_markdown(self) -> str:
        def num(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        threads = self.threads if self.threads is not None else "default"
        best = self.best()
        lines = [
            f"# bench: {self.model}",
            "",
            f"batch {self.batch} · threads {threads} · resolution {self.resolution or 'published'} · "
            f"device `{self.device.get('device_id')}` ({self.device.get('cpu_model')}) · {self.created}",
            "",
            f"Parity vs PyTorch on {self.parity_on or 'n/a'}; ★ = fastest row with cosine ≥ {self.config.min_cosine}.",
            "",
            "| | row | precision | backend | status | size MB | cos vs torch | top-1 agree | p50 ms | p90 ms | fps "
            "| tools | note |",
            "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for r in self.rows:
            note = r.reason.replace("|", "\\|").replace("\n", " ")
            if r.status == "ok" and r.stable is False:
                note = f"{note} UNSTABLE timing: {r.unstable_reason}.".strip()
            if r.peer:
                note = f"peer. {note}".strip()
            tools = ", ".join(f"{k} {v}" for k, v in r.versions.items())
            lines.append(
                f"| {'★' if r is best else ''} | {r.name} | {r.precision} | {r.backend} | {r.status} | "
                f"{num(r.size_mb, '.2f')} | {num(r.parity_cosine, '.6f')} | {num(r.top1_agreement, '.3f')} | "
                f"{num(r.p50_ms, '.3f')} | {num(r.p90_ms, '.3f')} | {num(r.fps, '.1f')} | {tools} | {note} |"
            )
        lines.append("")
        if best is not None:
            lines.append(f"Fastest meeting the bar: {best.name} on {best.backend}, p50 {best.p50_ms:.3f} ms.")
        else:
            lines.append(f"No row ran with cosine ≥ {self.config.min_cosine} vs PyTorch.")
        return "\n".join(lines) + "\n"
