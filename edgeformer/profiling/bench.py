"""The bench pipeline: export a model, profile it on every backend here, one table row per target.

Rows are data. Each target is a :class:`RowProducer` in :data:`ROW_PRODUCERS` (one per
format x precision x backend) whose function takes the shared :class:`BenchContext` and returns a
:class:`BenchRow` or raises. A producer that raises gives a ``failed`` row (``skipped`` when the
backend or extra is unavailable here) and the others still run. Later targets (INT8, compiled
engines) are one function and one table entry each; they reuse the FP32 export through
:meth:`BenchContext.onnx_fp32`.

The report folder holds ``bench.json``, ``bench.md`` and every artifact the producers wrote.

Example::

    report = bench("efficientformer_l1", out="build/bench-l1", threads=2)
    print(report.to_markdown())
    best = report.fastest_ok()
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..artifact import Artifact, TensorSpec, now_iso, write_json_atomic
from ..errors import BackendUnavailableError, ConfigError, EdgeformerError, OutputExistsError
from . import build_feeds, profile
from .device import device_card
from .harness import LatencyStats, ProfileConfig, measure

log = logging.getLogger(__name__)

Status = Literal["ok", "skipped", "failed"]


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """Timing settings shared by every row (batch, threads and resolution are arguments of :func:`bench`).

    ``rows`` selects producers by name (``"onnx-fp32-ort"``); ``None`` runs them all.
    """

    warmup: int = 10
    runs: int | None = None
    min_time_s: float = 2.0
    max_runs: int = 10_000
    seed: int = 0
    max_rel_spread: float = 0.10
    rows: tuple[str, ...] | None = None

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
    """One target of the bench table. Figures are ``None`` where they do not apply or the row did not run."""

    format: str
    precision: str
    backend: str
    status: Status
    reason: str = ""
    size_mb: float | None = None
    parity_cosine: float | None = None  # worst output's cosine vs PyTorch, from the export's parity report
    p50_ms: float | None = None
    p90_ms: float | None = None
    fps: float | None = None
    stable: bool | None = None
    artifact_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
    created: str = field(default_factory=now_iso)

    @property
    def failed(self) -> tuple[BenchRow, ...]:
        """Rows that failed (the CLI exits 7 when some, not all, did)."""
        return tuple(r for r in self.rows if r.status == "failed")

    def fastest_ok(self) -> BenchRow | None:
        """The ``ok`` row with the lowest p50, or ``None`` when no row succeeded."""
        ok = [r for r in self.rows if r.status == "ok" and r.p50_ms is not None]
        return min(ok, key=lambda r: r.p50_ms) if ok else None

    def to_dict(self) -> dict[str, Any]:
        fastest = self.fastest_ok()
        return {
            "model": self.model,
            "created": self.created,
            "batch": self.batch,
            "threads": self.threads,
            "resolution": self.resolution,
            "config": dataclasses.asdict(self.config),
            "device": self.device,
            "rows": [r.to_dict() for r in self.rows],
            "fastest": fastest.to_dict() if fastest else None,
            "out": self.out,
        }

    def to_markdown(self) -> str:
        def num(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        threads = self.threads if self.threads is not None else "default"
        lines = [
            f"# bench: {self.model}",
            "",
            f"batch {self.batch} · threads {threads} · resolution {self.resolution or 'published'} · "
            f"device `{self.device.get('device_id')}` ({self.device.get('cpu_model')}) · {self.created}",
            "",
            "| format | precision | backend | status | size MB | parity cos | p50 ms | p90 ms | fps | note |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for r in self.rows:
            note = r.reason.replace("|", "\\|").replace("\n", " ")
            if r.status == "ok" and r.stable is False:
                note = f"UNSTABLE timing. {note}".strip()
            lines.append(
                f"| {r.format} | {r.precision} | {r.backend} | {r.status} | {num(r.size_mb, '.2f')} | "
                f"{num(r.parity_cosine, '.6f')} | {num(r.p50_ms, '.3f')} | {num(r.p90_ms, '.3f')} | "
                f"{num(r.fps, '.1f')} | {note} |"
            )
        fastest = self.fastest_ok()
        if fastest is not None:
            lines += ["", f"Fastest: {fastest.format}/{fastest.precision} on {fastest.backend}, "
                      f"p50 {fastest.p50_ms:.3f} ms."]  # fmt: skip
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
    _made: dict[str, Artifact | BaseException] = field(default_factory=dict)

    @property
    def model_name(self) -> str:
        return self.model if isinstance(self.model, str) else type(self.model).__name__

    def artifact(self, key: str, make: Callable[[Path], Artifact]) -> Artifact:
        """``make(self.out / key)`` once; later calls (from other producers) reuse the result or its error."""
        if key not in self._made:
            try:
                self._made[key] = make(self.out / key)
            except Exception as e:  # remembered so that dependent rows fail with the same reason
                self._made[key] = e
        made = self._made[key]
        if isinstance(made, BaseException):
            raise made
        return made

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

    def profile_row(self, artifact: Artifact, *, backend: str) -> BenchRow:
        """Profile ``artifact`` on ``backend`` and turn the result into an ``ok`` row."""
        result = profile(artifact, self.profile_config, backend=backend)
        lat = result.latency
        return BenchRow(
            format=artifact.format,
            precision=artifact.precision,
            backend=backend,
            status="ok",
            reason="" if lat.stable else str(lat.unstable_reason),
            size_mb=result.size_bytes / 1e6,
            parity_cosine=parity_cosine(artifact.manifest.extra.get("parity")),
            p50_ms=lat.p50_ms,
            p90_ms=lat.p90_ms,
            fps=lat.throughput,
            stable=lat.stable,
            artifact_path=str(artifact.path),
        )


@dataclass(frozen=True)
class RowProducer:
    """One bench target: ``run(ctx)`` returns its :class:`BenchRow` or raises."""

    name: str
    format: str
    precision: str
    backend: str
    run: Callable[[BenchContext], BenchRow]


def _onnx_fp32_ort(ctx: BenchContext) -> BenchRow:
    return ctx.profile_row(ctx.onnx_fp32(), backend="ort")


def _pytorch_eager(ctx: BenchContext) -> BenchRow:
    """PyTorch eager, fused, same seeded input and thread count: the reference the exports are judged against."""
    model, inputs = _torch_model_and_inputs(ctx)
    stats = time_torch(model, inputs, ctx.profile_config)
    n_bytes = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    return BenchRow(
        format="pytorch",
        precision="fp32",
        backend="eager",
        status="ok",
        reason="size = weights in memory" + ("" if stats.stable else f"; {stats.unstable_reason}"),
        size_mb=n_bytes / 1e6,
        p50_ms=stats.p50_ms,
        p90_ms=stats.p90_ms,
        fps=stats.throughput,
        stable=stats.stable,
    )


def _onnx_int8_ort(ctx: BenchContext) -> BenchRow:
    """edgeformer INT8: the transformer-aware plan refined by the latency-aware placement search, on ORT CPU."""
    from ..quant.placement import SearchConfig, quantize_search

    fp32 = ctx.onnx_fp32()
    search = SearchConfig(threads=ctx.threads or 2, time_budget_s=60.0, max_candidates=12, max_sensitivity_groups=0)
    art = ctx.artifact(
        "onnx-int8",
        lambda dest: quantize_search(fp32, calib=ctx.calib or "synthetic", out=dest, overwrite=True, search=search),
    )
    return _int8_row(ctx, art, "edgeformer placement")


def _onnx_int8_ort_static_defaults(ctx: BenchContext) -> BenchRow:
    """The peer: ``onnxruntime.quantization.quantize_static`` with its defaults, same calibration data."""
    fp32 = ctx.onnx_fp32()
    art = ctx.artifact("onnx-int8-static-defaults", lambda dest: quantize_static_defaults(fp32, ctx.calib, dest))
    return _int8_row(ctx, art, "ORT quantize_static defaults")


def _int8_row(ctx: BenchContext, art: Artifact, what: str) -> BenchRow:
    row = ctx.profile_row(art, backend="ort")
    fid = art.manifest.extra.get("fidelity", {})
    calib = art.manifest.extra.get("calibration", {}).get("source", "?")
    note = f"{what}; cosine vs ONNX FP32 on {fid.get('samples', '?')} {fid.get('on', 'samples')}; calib {calib}"
    return dataclasses.replace(row, parity_cosine=fid.get("cosine_min"), reason=f"{note}. {row.reason}".strip(". "))


def quantize_static_defaults(fp32: Artifact, calib: Any, dest: Path) -> Artifact:
    """Quantize ``fp32`` with ``quantize_static``'s defaults (QDQ, s8/s8, per-tensor, every op type) as an artifact.

    The comparison point for edgeformer's recipe: what a user gets from ORT without tuning. Calibrated on
    the same samples (``calib``, synthetic when ``None``) and checked against FP32 on the same held-out ones.
    """
    import tempfile

    import onnx
    from onnxruntime.quantization import quantize_static

    from ..artifact import ArtifactWriter
    from ..quant import QuantConfig, open_calibration
    from ..quant.fidelity import compare_outputs
    from ..quant.ort_adapter import preprocess, run_model

    config = QuantConfig()
    data = open_calibration(calib or "synthetic", inputs=fp32.manifest.inputs,
                            preprocessing=fp32.manifest.preprocessing, config=config)  # fmt: skip
    with ArtifactWriter(dest, overwrite=True, inputs=[fp32.path]) as w, tempfile.TemporaryDirectory() as tmp:
        pre = preprocess(fp32.model_path, Path(tmp) / "pre.onnx", dataclasses.replace(config, fuse_gelu=False))
        data.reader.rewind()
        quantize_static(str(pre), str(w.dir / "model.onnx"), data.reader)
        fid = compare_outputs(run_model(fp32.model_path, data.holdout), run_model(w.dir / "model.onnx", data.holdout))
        onnx.checker.check_model(str(w.dir / "model.onnx"))
        manifest = dataclasses.replace(
            fp32.manifest, precision="int8", main_file="model.onnx", step="quantize", parent_sha=fp32.sha, files={},
            created="", tool_versions={}, step_config={"peer": "onnxruntime.quantization.quantize_static defaults"},
            extra={"fidelity": fid.to_dict(), "calibration": data.summary.to_dict()},
        )  # fmt: skip
        return w.commit(manifest)


# The bench table. Add a target by writing one producer function and one line here.
ROW_PRODUCERS: tuple[RowProducer, ...] = (
    RowProducer("onnx-fp32-ort", "onnx", "fp32", "ort", _onnx_fp32_ort),
    RowProducer("pytorch-fp32-eager", "pytorch", "fp32", "eager", _pytorch_eager),
    RowProducer("onnx-int8-ort", "onnx", "int8", "ort", _onnx_int8_ort),
    RowProducer("onnx-int8-ort-static-defaults", "onnx", "int8", "ort", _onnx_int8_ort_static_defaults),
)


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
) -> BenchReport:
    """Export ``model`` and time every target in the bench table on this machine.

    Args:
        model: a zoo model name or a ``torch.nn.Module`` (then pass ``example_inputs``).
        out: report folder; gets ``bench.json``, ``bench.md`` and one sub-folder per artifact.
        resolution: input side for image models (default: the published one).
        batch: batch size of the timed inputs.
        threads: intra-op threads for every backend, PyTorch included (``None``: each one's default).
        config: timing settings and the row selection.
        example_inputs: torch example inputs, needed for a user module.
        overwrite: replace an existing report in ``out``.
        producers: the targets to run (default :data:`ROW_PRODUCERS`, filtered by ``config.rows``).
        calib: calibration data of the INT8 rows (a folder or ``.npz``); synthetic inputs when ``None``.

    Returns:
        A :class:`BenchReport`; failed and skipped rows carry their reason.
    """
    out = Path(out)
    if (out / "bench.json").exists() and not overwrite:
        raise OutputExistsError(f"{out} already holds a bench report; pass --overwrite or choose another --out.")
    table = _select(producers if producers is not None else ROW_PRODUCERS, config.rows)
    ctx = BenchContext(
        model=model, out=out, batch=batch, threads=threads, resolution=resolution, config=config,
        # built here so that a bad batch/threads/resolution fails before any export starts
        profile_config=config.profile_config(batch=batch, threads=threads, resolution=resolution),
        example_inputs=example_inputs, calib=calib,
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    rows = [_run_producer(p, ctx) for p in table]
    report = BenchReport(
        model=ctx.model_name,
        rows=tuple(rows),
        device=device_card(backend="ort", threads=threads).to_dict(),
        batch=batch,
        threads=threads,
        resolution=resolution,
        config=config,
        out=str(out),
    )
    write_json_atomic(out / "bench.json", report.to_dict())
    _write_text_atomic(out / "bench.md", report.to_markdown())
    return report


def _select(producers: Sequence[RowProducer], names: tuple[str, ...] | None) -> list[RowProducer]:
    if names is None:
        return list(producers)
    known = {p.name: p for p in producers}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown bench row(s) {', '.join(unknown)}; known: {', '.join(known)}.")
    return [known[n] for n in names]


def _run_producer(producer: RowProducer, ctx: BenchContext) -> BenchRow:
    log.info("bench %s: %s", ctx.model_name, producer.name)
    base = {"format": producer.format, "precision": producer.precision, "backend": producer.backend}
    try:
        return producer.run(ctx)
    except BackendUnavailableError as e:
        return BenchRow(**base, status="skipped", reason=str(e))
    except EdgeformerError as e:
        return BenchRow(**base, status="failed", reason=f"{type(e).__name__}: {e}")
    except Exception as e:  # a bug in one target must not lose the others; the traceback goes to the log
        log.warning("bench row %s failed", producer.name, exc_info=True)
        return BenchRow(**base, status="failed", reason=f"{type(e).__name__}: {e}")


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


def _torch_model_and_inputs(ctx: BenchContext) -> tuple[Any, tuple[Any, ...]]:
    try:
        import torch
    except ImportError as e:
        raise BackendUnavailableError("the PyTorch reference row needs torch: pip install torch") from e

    if isinstance(ctx.model, str):
        from ..models import create_model, get_spec

        spec = get_spec(ctx.model)
        model = create_model(ctx.model, **arch_for_resolution(ctx.model, ctx.resolution)).eval().fuse()
        shape = spec.input.shape(ctx.batch, ctx.resolution)
        # the same generator, seed and shape as profile()'s feeds: both runtimes see identical data
        feeds = build_feeds([TensorSpec(name="x", shape=shape, dtype="float32")], batch=ctx.batch, seed=ctx.config.seed)
        return model, (torch.from_numpy(feeds["x"]),)
    if ctx.example_inputs is None:
        raise ConfigError("benching a user module needs example_inputs (a tuple of tensors shaped like its input).")
    model = ctx.model.eval()
    if hasattr(model, "fuse"):
        model = model.fuse() or model
    return model, tuple(ctx.example_inputs)


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


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
