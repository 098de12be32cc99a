"""The bench pipeline: export a model, build and time every target here, one table row per target x precision.

Rows are data. Each target is a :class:`RowProducer` (in :data:`edgeformer.profiling.bench_rows.ROW_PRODUCERS`,
one per target x precision x backend) whose function takes the shared :class:`BenchContext` and returns
a :class:`BenchRow` or raises. A producer that raises gives a ``failed`` row (``skipped`` when the
backend, extra or hardware is missing here) and the others still run.

Every row that ran is checked against PyTorch on the same inputs (:meth:`BenchContext.parity`): the
cosine of the outputs and top-1 agreement, on held-out calibration samples when ``calib`` is given,
else on seeded random inputs. The table's marker goes to the fastest row that meets the fidelity bar
(``BenchConfig.min_cosine``), not merely the fastest one: a fast row that computes something else is
not a result.

The report folder holds ``bench.json``, ``bench.md``, ``bench.png`` (latency vs fidelity) and every
artifact the producers wrote.

Example::

    report = bench("efficientformer_l1", out="build/bench-l1", threads=2, config=BenchConfig(targets=("onnx",)))
    print(report.to_markdown())
    best = report.best()
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..artifact import Artifact, now_iso, write_json_atomic, write_text_atomic
from ..errors import (
    BackendUnavailableError,
    CalibrationError,
    ConfigError,
    EdgeformerError,
    OutputExistsError,
    did_you_mean,
)
from . import build_feeds, profile
from .device import device_card
from .harness import LatencyStats, ProfileConfig, measure

log = logging.getLogger(__name__)

Status = Literal["ok", "skipped", "failed"]
TARGETS = ("pytorch", "onnx", "ort", "openvino", "tensorrt", "coreml")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# the bar a row must meet to be marked: int8 of a trained model typically measures 0.999+ vs fp32
DEFAULT_MIN_COSINE = 0.999


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """Timing, selection and fidelity settings shared by every row.

    Batch, threads and resolution are arguments of :func:`bench`. ``rows`` selects producers by name
    (``"onnx-fp32-ort"``); ``targets`` and ``precisions`` by target (``"openvino"``) and precision
    (``"int8"``); ``None`` means all. ``min_cosine`` is the fidelity bar of the marker and
    ``parity_samples`` the number of inputs (batches) each row is compared with PyTorch on.
    """

    warmup: int = 10
    runs: int | None = None
    min_time_s: float = 2.0
    max_runs: int = 10_000
    seed: int = 0
    max_rel_spread: float = 0.10
    rows: tuple[str, ...] | None = None
    targets: tuple[str, ...] | None = None
    precisions: tuple[str, ...] | None = None
    min_cosine: float = DEFAULT_MIN_COSINE
    parity_samples: int = 8

    def __post_init__(self) -> None:
        from ..exporters.parity import min_cosine_problem

        problems = []
        for name, known in (("targets", TARGETS), ("precisions", PRECISIONS)):
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

    name: str
    target: str
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


@dataclass
class BenchContext:
    """What every producer shares: the model, the output folder, the settings and the artifacts made so far."""

    model: Any  # zoo name or torch.nn.Module
    out: Path
    batch: int
    threads: int | None
    resolution: int | None
    config: BenchConfig
    profile_config: ProfileConfig
    example_inputs: tuple[Any, ...] | None = None
    calib: Any = None  # calibration data of the INT8 rows; None: synthetic (pipeline check, says so in the row)
    _made: dict[str, Any] = field(default_factory=dict)  # results (or errors) of _once, by key
    parity_on: str = ""

    @property
    def model_name(self) -> str:
        return self.model if isinstance(self.model, str) else type(self.model).__name__

    def _once(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()`` once per ``key``; later calls (from other producers) reuse the result or re-raise its error."""
        if key not in self._made:
            try:
                self._made[key] = make()
            except Exception as e:  # remembered so that dependent rows fail with the same reason, without redoing it
                self._made[key] = e
        made = self._made[key]
        if isinstance(made, BaseException):
            raise made
        return made

    def artifact(self, key: str, make: Callable[[Path], Artifact]) -> Artifact:
        """``make(self.out / key)`` once, shared by every producer that asks for ``key``."""
        return self._once(f"artifact:{key}", lambda: make(self.out / key))

    def onnx_fp32(self) -> Artifact:
        """The FP32 ONNX export (made once, parity-checked by the exporter)."""
        return self.artifact("onnx-fp32", self._export_onnx)

    def _export_onnx(self, dest: Path) -> Artifact:
        from ..exporters import export
        from ..exporters.onnx import OnnxExportConfig

        # a user module's example inputs fix its shape; a zoo model is exported at the bench's batch
        batch = self.batch if isinstance(self.model, str) else None
        config = OnnxExportConfig(batch=batch, resolution=self.resolution)
        return export(
            self.model, fmt="onnx", out=dest, overwrite=True, example_inputs=self.example_inputs, config=config
        )

    def torch_model(self) -> tuple[Any, tuple[Any, ...]]:
        """The fused eval-mode PyTorch model and its timing inputs (built once)."""
        return self._once("torch", lambda: _torch_model_and_inputs(self))

    def profile_row(self, artifact: Artifact, *, backend: str) -> BenchRow:
        """Profile ``artifact`` on ``backend``, check it against PyTorch, and return an ``ok`` row."""
        result = profile(artifact, self.profile_config, backend=backend)
        lat = result.latency
        fid, problem = self.parity(artifact, backend)
        reason = f"parity vs PyTorch not measured: {problem}" if problem else ""
        return BenchRow(
            name="",  # set by the driver from the producer
            target="",
            format=artifact.format,
            precision=artifact.precision,
            backend=backend,
            status="ok",
            reason=reason,
            size_mb=result.size_bytes / 1e6,
            parity_cosine=None if fid is None else fid.cosine_min,
            top1_agreement=None if fid is None else fid.top1_agreement,
            parity_samples=None if fid is None else fid.samples,
            p50_ms=lat.p50_ms,
            p90_ms=lat.p90_ms,
            fps=lat.throughput,
            stable=lat.stable,
            unstable_reason="" if lat.stable else str(lat.unstable_reason),
            artifact_path=str(artifact.path),
        )

    def parity(self, artifact: Artifact, backend: str) -> tuple[Any, str]:
        """``(Fidelity vs PyTorch, "")`` for ``artifact`` run on ``backend``, or ``(None, why not)``.

        A parity failure does not fail the row (the timing is still a fact); the row says why it has no
        cosine, and without one it can never get the fidelity marker.
        """
        from ..quant.fidelity import compare_outputs
        from ..runtimes import Session

        try:
            feeds = self._feeds_for(artifact)
            reference = self._reference_outputs(feeds, [t.name for t in artifact.manifest.inputs])
            with Session(artifact, backend=backend, threads=self.threads) as session:
                names = [o.name for o in session.outputs]
                outputs = [[np.asarray(out[n]) for n in names] for out in map(session.run, feeds)]
            return compare_outputs(reference, outputs, on=self.parity_on), ""
        except Exception as e:
            log.info("parity of %s on %s not measured", artifact.path, backend, exc_info=True)
            return None, f"{type(e).__name__}: {e}"

    def _feeds_for(self, artifact: Artifact) -> list[dict[str, np.ndarray]]:
        """The parity inputs, made once and shared by every row so that each is judged on the same data.

        With ``calib``: the calibration split's held-out samples (the INT8 rows never calibrated on them,
        and ``QuantConfig``'s seeded split makes them the same ones the quantizer held out). Without:
        seeded standard-normal inputs shaped from the artifact's manifest.
        """
        return self._once("parity-feeds", lambda: self._make_feeds(artifact))

    def _make_feeds(self, artifact: Artifact) -> list[dict[str, np.ndarray]]:
        inputs = artifact.manifest.inputs
        n = self.config.parity_samples
        if self.calib is not None:
            from ..quant import QuantConfig, open_calibration

            data = open_calibration(self.calib, inputs=inputs, preprocessing=artifact.manifest.preprocessing,
                                    config=QuantConfig(fidelity_samples=n))  # fmt: skip
            feeds = list(data.holdout)[:n]
            self.parity_on = f"{len(feeds)} held-out samples of {data.summary.source}"
        else:
            feeds = [
                build_feeds(inputs, batch=self.batch, resolution=self.resolution, seed=self.config.seed + 1 + i)
                for i in range(n)
            ]
            self.parity_on = f"{n} seeded random inputs (pass --calib for real samples and a meaningful top-1)"
        if not feeds:
            raise ConfigError(f"{self.calib}: no held-out samples to check parity on; give more samples.")
        return feeds

    def _reference_outputs(self, feeds: list[dict[str, np.ndarray]], names: list[str]) -> list[list[np.ndarray]]:
        """PyTorch's outputs on the parity feeds (computed once)."""

        def run() -> list[list[np.ndarray]]:
            import torch

            model, _ = self.torch_model()
            with torch.inference_mode():
                return [_flatten(model(*(torch.from_numpy(np.ascontiguousarray(f[n])) for n in names))) for f in feeds]

        return self._once("reference", run)


@dataclass(frozen=True)
class RowProducer:
    """One bench target: ``run(ctx)`` returns its :class:`BenchRow` or raises.

    ``target`` is what ``--targets`` selects (``pytorch``, ``onnx``, ``ort``, ``openvino``, ``tensorrt``,
    ``coreml``); ``tools`` the Python distributions whose versions the row reports; ``peer`` marks a
    baseline a user gets without edgeformer.
    """

    name: str
    target: str
    precision: str
    backend: str
    run: Callable[[BenchContext], BenchRow]
    tools: tuple[str, ...] = ()
    peer: bool = False


def bench(
    model: Any,
    *,
    out: str | Path,
    resolution: int | None = None,
    batch: int = 1,
    threads: int | None = None,
    config: BenchConfig = BenchConfig(),
    example_inputs: tuple[Any, ...] | None = None,
    overwrite: bool = False,
    producers: Sequence[RowProducer] | None = None,
    calib: Any = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> BenchReport:
    """Export ``model``, build every selected target and time it on this machine.

    Args:
        model: a zoo model name or a ``torch.nn.Module`` (then pass ``example_inputs``).
        out: report folder; gets ``bench.json``, ``bench.md``, ``bench.png`` and one sub-folder per artifact.
        resolution: input side for image models (default: the published one).
        batch: batch size of the timed inputs.
        threads: intra-op threads for every backend, PyTorch included (``None``: each one's default).
        config: timing settings, the row selection and the fidelity bar.
        example_inputs: torch example inputs, needed for a user module.
        overwrite: replace an existing report in ``out``.
        producers: the targets to run (default :data:`~edgeformer.profiling.bench_rows.ROW_PRODUCERS`,
            filtered by ``config``).
        calib: calibration data of the INT8 rows and the parity check (a folder or ``.npz``); synthetic
            inputs when ``None``.
        progress: called as ``progress(done, total, row_name)`` before each row and once at the end.

    Returns:
        A :class:`BenchReport`; failed and skipped rows carry their reason.
    """
    if producers is None:
        from .bench_rows import ROW_PRODUCERS

        producers = ROW_PRODUCERS
    out = Path(out)
    if (out / "bench.json").exists() and not overwrite:
        raise OutputExistsError(f"{out} already holds a bench report; pass --overwrite or choose another --out.")
    table = select(producers, config)
    if isinstance(calib, str | Path) and str(calib) != "synthetic" and not Path(calib).exists():
        # before the export: a typo in --calib should not cost minutes and then fail every INT8 row
        raise CalibrationError(f"--calib {calib} does not exist; pass a folder of images/wavs or a .npy/.npz file.")
    ctx = BenchContext(
        model=model, out=out, batch=batch, threads=threads, resolution=resolution, config=config,
        # built here so that a bad batch/threads/resolution fails before any export starts
        profile_config=config.profile_config(batch=batch, threads=threads, resolution=resolution),
        example_inputs=example_inputs, calib=calib,
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, producer in enumerate(table):
        if progress is not None:
            progress(i, len(table), producer.name)
        rows.append(_run_producer(producer, ctx))
    if progress is not None:
        progress(len(table), len(table), "")
    report = BenchReport(
        model=ctx.model_name,
        rows=tuple(rows),
        device=device_card(backend="ort", threads=threads).to_dict(),
        batch=batch,
        threads=threads,
        resolution=resolution,
        config=config,
        out=str(out),
        parity_on=ctx.parity_on,
    )
    write_json_atomic(out / "bench.json", report.to_dict())
    write_text_atomic(out / "bench.md", report.to_markdown())
    from .bench_plot import write_plot

    write_plot(report, out / "bench.png")
    return report


def select(producers: Sequence[RowProducer], config: BenchConfig) -> list[RowProducer]:
    """The producers ``config`` asks for (by row name, target and precision), in table order."""
    known = {p.name: p for p in producers}
    unknown = [n for n in config.rows or () if n not in known]
    if unknown:
        hints = "".join(did_you_mean(n, known) for n in unknown[:1])
        raise ConfigError(f"unknown bench row(s) {', '.join(unknown)}{hints}; known: {', '.join(known)}.")
    chosen = [
        p
        for p in producers
        if (config.rows is None or p.name in config.rows)
        and (config.targets is None or p.target in config.targets)
        and (config.precisions is None or p.precision in config.precisions)
    ]
    if not chosen:
        raise ConfigError(
            "no bench row matches the selection (--rows/--targets/--precisions); rows: "
            + ", ".join(f"{p.name} ({p.target}/{p.precision})" for p in producers)
            + "."
        )
    return chosen


def _run_producer(producer: RowProducer, ctx: BenchContext) -> BenchRow:
    log.info("bench %s: %s", ctx.model_name, producer.name)
    base = {"name": producer.name, "target": producer.target, "precision": producer.precision,
            "backend": producer.backend, "peer": producer.peer, "versions": tool_versions(producer.tools)}  # fmt: skip
    try:
        row = producer.run(ctx)
        return dataclasses.replace(row, **base)
    except BackendUnavailableError as e:
        return BenchRow(**base, format=producer.target, status="skipped", reason=str(e))
    except EdgeformerError as e:
        return BenchRow(**base, format=producer.target, status="failed", reason=f"{type(e).__name__}: {e}")
    except Exception as e:  # a bug in one target must not lose the others; the traceback goes to the log
        log.warning("bench row %s failed", producer.name, exc_info=True)
        return BenchRow(**base, format=producer.target, status="failed", reason=f"{type(e).__name__}: {e}")


def tool_versions(dists: Sequence[str]) -> dict[str, str]:
    """Installed versions of the Python distributions ``dists`` (absent ones are left out)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for dist in dists:
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return found


def parity_cosine(parity: Any) -> float | None:
    """The worst measured cosine in a parity report (``cosine`` keys at any depth of dicts and lists)."""
    found: list[float] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                # "cosine" is a measured value; "min_cosine" next to it is the threshold, not a result
                if key == "cosine" and isinstance(value, int | float) and not isinstance(value, bool):
                    found.append(float(value))
                else:
                    walk(value)
        elif isinstance(node, list | tuple):
            for item in node:
                walk(item)

    walk(parity)
    return min(found) if found else None


def time_torch(model: Any, inputs: tuple[Any, ...], config: ProfileConfig) -> LatencyStats:
    """Time ``model(*inputs)`` under ``inference_mode`` with ``config.threads`` torch threads (restored after)."""
    import torch

    previous = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        with torch.inference_mode():
            return measure(lambda: model(*inputs), config)
    finally:
        torch.set_num_threads(previous)


def _flatten(out: Any) -> list[np.ndarray]:
    """A module's outputs (tensor, tuple/list, dict) as a flat list of arrays, in the order ONNX export uses."""
    if isinstance(out, dict):
        return [a for v in out.values() for a in _flatten(v)]
    if isinstance(out, list | tuple):
        return [a for v in out for a in _flatten(v)]
    return [out.detach().float().cpu().numpy()]


def _torch_model_and_inputs(ctx: BenchContext) -> tuple[Any, tuple[Any, ...]]:
    """The module the ONNX export is made from (same seed, so random-init weights are identical), fused."""
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise BackendUnavailableError("the PyTorch reference row needs torch: pip install torch") from e
    from ..exporters import prepare_source
    from ..exporters.onnx import OnnxExportConfig

    if not isinstance(ctx.model, str) and ctx.example_inputs is None:
        raise ConfigError("benching a user module needs example_inputs (a tuple of tensors shaped like its input).")
    source = prepare_source(
        ctx.model, example_inputs=ctx.example_inputs, input_spec=None, checkpoint=None,
        batch=ctx.batch if isinstance(ctx.model, str) else None, resolution=ctx.resolution,
        seed=OnnxExportConfig().seed, arch_overrides={},
    )  # fmt: skip
    return source.module, tuple(source.example_inputs)


def arch_for_resolution(name: str, resolution: int | None) -> dict[str, Any]:
    """Architecture overrides that build zoo model ``name`` for ``resolution`` (``{}`` when none are needed).

    Families whose attention-bias tables depend on the input size carry a ``resolution`` arch field;
    the others take any input size as is.
    """
    from ..models import get_spec

    if resolution is None:
        return {}
    spec = get_spec(name)
    if spec.input.kind != "image":
        raise ConfigError(f"{name} takes {spec.input.kind} input; --resolution applies to image models only.")
    return {"resolution": resolution} if "resolution" in {f.name for f in dataclasses.fields(spec.arch)} else {}
