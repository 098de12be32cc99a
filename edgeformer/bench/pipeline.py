"""The bench pipeline: export a model, build and time every target here, one table row per target x precision.

Rows are data. Each target is a :class:`RowProducer` (in :data:`edgeformer.bench.rows.ROW_PRODUCERS`,
one per target x precision x backend) whose function takes the shared :class:`BenchContext` and returns
a :class:`BenchRow` or raises. A producer that raises gives a ``failed`` row (``skipped`` when the
backend, extra or hardware is missing here) and the others still run.

Producers build and check; the timing comes after, for every row at once (:func:`~edgeformer.bench.timing. time_rows`):
rows take turns in rounds (a fresh order each round), each p50 has a bootstrap interval, an A/A row (the reference
artifact opened twice) checks the machine is quiet enough to rank, and the ★ goes only to a row faster than the
runner-up beyond the interval of their paired ratio (a tie goes to fidelity, then size).

Every row that ran is checked against PyTorch on the same inputs (:meth:`BenchContext.parity`): the
cosine of the outputs and top-1 agreement, on held-out calibration samples when ``calib`` is given,
else on seeded random inputs. Only rows that meet the fidelity bar (``BenchConfig.min_cosine``) can get the
marker: a fast row that computes something else is not a result.

The report folder holds ``bench.json``, ``bench.md``, ``bench.png`` (latency vs fidelity) and every
artifact the producers wrote.

Example::

    report = bench("efficientformer_l1", out="build/bench-l1", threads=2, config=BenchConfig(formats=("onnx",)))
    print(report.to_markdown())
    best = report.best()
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..agent import AgentClient, resolve_token
from ..artifact import tool_versions, write_json_atomic, write_text_atomic
from ..errors import (
    BackendUnavailableError,
    CalibrationError,
    ConfigError,
    EdgeformerError,
    OutputExistsError,
    did_you_mean,
)
from ..profiling import device_card
from .context import BenchContext, RowProducer
from .plot import write_plot
from .report import BenchConfig, BenchReport, BenchRow
from .rows import ROW_PRODUCERS
from .timing import time_rows

log = logging.getLogger(__name__)


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
    device: str | None = None,
    token: str | None = None,
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
        producers: the targets to run (default :data:`~edgeformer.bench.rows.ROW_PRODUCERS`,
            filtered by ``config``).
        calib: calibration data of the INT8 rows and the parity check (a folder or ``.npz``); synthetic
            inputs when ``None``.
        progress: called as ``progress(done, total, row_name)`` before each row and once at the end.
        device: ``agent://HOST:PORT``: time every artifact row on that device agent (the INT8 placement search
            too); builds and parity checks stay here, PyTorch rows are skipped.
        token: the agent's token (default ``$EDGEFORMER_AGENT_TOKEN``).

    Returns:
        A :class:`BenchReport`; failed and skipped rows carry their reason.
    """
    if producers is None:
        producers = ROW_PRODUCERS
    out = Path(out)
    if (out / "bench.json").exists() and not overwrite:
        raise OutputExistsError(f"{out} already holds a bench report; pass --overwrite or choose another --out.")
    table = select(producers, config)
    if isinstance(calib, str | Path) and str(calib) != "synthetic" and not Path(calib).exists():
        # before the export: a typo in --calib should not cost minutes and then fail every INT8 row
        raise CalibrationError(f"--calib {calib} does not exist; pass a folder of images/wavs or a .npy/.npz file.")
    ctx = BenchContext(
        model=model,
        out=out,
        batch=batch,
        threads=threads,
        resolution=resolution,
        config=config,
        # built here so that a bad batch/threads/resolution fails before any export starts
        profile_config=config.profile_config(batch=batch, threads=threads, resolution=resolution),
        example_inputs=example_inputs,
        calib=calib,
    )
    if device is not None:
        ctx.agent = AgentClient(device, resolve_token(token))
        ctx.agent.info()  # unreachable or refused: fail before the first export
    out.mkdir(parents=True, exist_ok=True)
    rows, timed = [], {}
    for i, producer in enumerate(table):
        if progress is not None:
            progress(i, len(table) + 1, producer.name)
        ctx.pending = None
        row = _run_producer(producer, ctx)
        rows.append(row)
        if row.status == "ok" and ctx.pending is not None:
            timed[row.name] = ctx.pending
    if progress is not None:
        progress(len(table), len(table) + 1, "timing every row, interleaved")
    rows, verdict, timing = time_rows(rows, timed, ctx, progress=progress)
    if progress is not None:
        progress(len(table) + 1, len(table) + 1, "")
    report = BenchReport(
        model=ctx.model_name,
        rows=tuple(rows),
        device=(ctx.agent.info().device if ctx.agent else device_card(backend="ort", threads=threads)).to_dict(),
        batch=batch,
        threads=threads,
        resolution=resolution,
        config=config,
        out=str(out),
        parity_on=ctx.parity_on,
        verdict=verdict,
        timing=timing,
    )
    write_json_atomic(out / "bench.json", report.to_dict())
    write_text_atomic(out / "bench.md", report.to_markdown())
    write_plot(report, out / "bench.png")
    return report


def select(producers: Sequence[RowProducer], config: BenchConfig) -> list[RowProducer]:
    """The producers ``config`` asks for (by row name, format, precision and backend), in table order."""
    known = {p.name: p for p in producers}
    if len(known) != len(producers):  # names are derived: two producers of one kind need a variant
        twice = sorted({p.name for p in producers if sum(q.name == p.name for q in producers) > 1})
        raise ConfigError(f"bench rows named twice: {', '.join(twice)}; give them a variant.")
    unknown = [n for n in config.rows or () if n not in known]
    if unknown:
        hints = "".join(did_you_mean(n, known) for n in unknown[:1])
        raise ConfigError(f"unknown bench row(s) {', '.join(unknown)}{hints}; known: {', '.join(known)}.")
    chosen = [
        p
        for p in producers
        if (config.rows is None or p.name in config.rows)
        and (config.formats is None or p.format in config.formats)
        and (config.precisions is None or p.precision in config.precisions)
        and (config.backends is None or p.backend in config.backends)
    ]
    if not chosen:
        raise ConfigError(
            "no bench row matches the selection (--rows/--formats/--precisions/--backends); rows: "
            + ", ".join(p.name for p in producers)
            + "."
        )
    return chosen


def _run_producer(producer: RowProducer, ctx: BenchContext) -> BenchRow:
    log.info("bench %s: %s", ctx.model_name, producer.name)
    base = {
        "name": producer.name,
        "format": producer.format,
        "precision": producer.precision,
        "backend": producer.backend,
        "peer": producer.peer,
        "versions": tool_versions(producer.tools),
    }
    try:
        row = producer.run(ctx)
        return dataclasses.replace(row, **base)
    except BackendUnavailableError as e:
        return BenchRow(**base, status="skipped", reason=str(e))
    except EdgeformerError as e:
        return BenchRow(**base, status="failed", reason=f"{type(e).__name__}: {e}")
    except Exception as e:  # a bug in one target must not lose the others; the traceback goes to the log
        log.warning("bench row %s failed", producer.name, exc_info=True)
        return BenchRow(**base, status="failed", reason=f"{type(e).__name__}: {e}")
