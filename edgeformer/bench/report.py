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
from ..profiling.interleave import InterleaveConfig
from ..profiling.side_by_side import Verdict

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

    Rows are timed together in ``rounds`` rounds (each row ``min_time_s / rounds`` seconds per round, or
    ``runs / rounds`` calls), in a fresh order each round; ``aa_check`` adds the reference artifact a second
    time as its own row (the A/A check of :func:`edgeformer.profiling.side_by_side.rank`).
    """

    warmup: int = 10
    runs: int | None = None
    min_time_s: float = 2.0  # timed seconds per row, spread over the rounds
    max_runs: int = 10_000
    seed: int = 0
    max_rel_spread: float = 0.10
    rounds: int = 10
    aa_check: bool = True
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
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 3:
            problems.append(f"rounds must be an int >= 3 (an interval needs rounds to resample), got {self.rounds!r}")
        if problems:
            raise ConfigError("invalid bench settings: " + "; ".join(problems) + ".")

    def interleave_config(self) -> InterleaveConfig:
        """The rounds every row is timed in: the row's time (or runs) spread evenly over ``rounds``."""
        if self.runs is not None:
            per_round = max(1, -(-self.runs // self.rounds))
            return InterleaveConfig(
                rounds=self.rounds,
                min_rounds=min(3, self.rounds),
                round_time_s=1e-9,
                min_calls=per_round,
                max_calls=per_round,
                warmup=self.warmup,
                seed=self.seed,
            )
        return InterleaveConfig(
            rounds=self.rounds,
            min_rounds=min(3, self.rounds),
            round_time_s=self.min_time_s / self.rounds,
            max_calls=max(1, self.max_runs // self.rounds),
            warmup=self.warmup,
            seed=self.seed,
        )

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
    p50_ms: float | None = None  # median of the row's round medians
    p50_low_ms: float | None = None  # bootstrap interval of p50 over rounds
    p50_high_ms: float | None = None
    p90_ms: float | None = None  # over every timed call
    fps: float | None = None  # batch / p50
    startup_ms: float | None = None  # session creation + first call
    memory_mb: float | None = None  # resident memory the session and its first call added
    timed_with: str = ""  # the session settings and how it was kept between rounds
    vs_fp32: str = ""  # INT8 rows: paired ratio to the FP32 row of the same backend, "r [low, high]"
    int8_slower: bool = False  # INT8 slower than that FP32 row beyond the interval: never marked
    stable: bool | None = None
    unstable_reason: str = ""  # the interval's width when ``stable`` is False
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
    verdict: Verdict | None = None  # the ranking: which row has the ★ and why (None: rows not timed together)
    timing: str = ""  # how the rows were timed, for the footer
    created: str = field(default_factory=now_iso)

    @property
    def failed(self) -> tuple[BenchRow, ...]:
        """Rows that failed (the CLI exits 7 when some did)."""
        return tuple(r for r in self.rows if r.status == "failed")

    def best(self) -> BenchRow | None:
        """The row with the ★: the verdict's (faster than the runner-up beyond the interval, or the tie-break's
        winner; none on a noisy machine); without a verdict, the fastest row that meets the fidelity bar."""
        if self.verdict is not None:
            return next((r for r in self.rows if r.name == self.verdict.star), None)
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
            "verdict": self.verdict.to_dict() if self.verdict else None,
            "timing": self.timing,
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
            f"Parity vs PyTorch on {self.parity_on or 'n/a'}; ★ = faster than every other row with cosine ≥ "
            f"{self.config.min_cosine} beyond the timing interval (a tie goes to fidelity, then size).",
            "",
            "| | row | precision | backend | status | size MB | cos vs torch | top-1 agree | p50 ms [95 % CI] | "
            "p90 ms | fps | start-up ms | peak RSS added MB | tools | note |",
            "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
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
                f"{p50_cell(r)} | {num(r.p90_ms, '.3f')} | {num(r.fps, '.1f')} | {num(r.startup_ms, '.0f')} | "
                f"{num(r.memory_mb, '.0f')} | {tools} | {note} |"
            )
        lines += ["", *self.footer()]
        return "\n".join(lines) + "\n"

    def footer(self) -> list[str]:
        """How the rows were timed, the A/A check and the verdict, one line each."""
        lines = [f"Timing: {self.timing}."] if self.timing else []
        v = self.verdict
        if v is not None and v.aa is not None:
            gap = abs(v.aa.ratio - 1)
            status = f"ok (a ranked difference must also clear its {gap:.1%} gap)" if v.aa_ok else "failed — no ranking"
            lines.append(f"A/A check ({v.aa.a} vs {v.aa.b}): ratio {v.aa.describe()}, {status}.")
        if v is not None:
            lines.append(f"Verdict: {v.message}")
        best = self.best()
        if best is not None and best.p50_ms is not None:
            lines.append(f"★ {best.name} on {best.backend}, p50 {best.p50_ms:.3f} ms.")
        elif v is None or v.how == "none":
            lines.append(f"No row ran with cosine ≥ {self.config.min_cosine} vs PyTorch.")
        return lines


def p50_cell(r: BenchRow) -> str:
    """``12.345 [12.1, 12.6]``, or ``-``."""
    if r.p50_ms is None:
        return "-"
    if r.p50_low_ms is None or r.p50_high_ms is None:
        return f"{r.p50_ms:.3f}"
    return f"{r.p50_ms:.3f} [{r.p50_low_ms:.3f}, {r.p50_high_ms:.3f}]"
