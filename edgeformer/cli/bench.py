"""``edgeformer bench``: export, then time every target available here, in one table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import PartialFailureError
from .common import (
    BatchOpt,
    JsonOpt,
    ModelArg,
    OutOpt,
    OverwriteOpt,
    ResolutionOpt,
    ThreadsOpt,
    VerboseOpt,
    command,
    console,
    fmt_ms,
    print_json,
    setup_logging,
    table,
)

_ICON = {"ok": "✅", "skipped": "⏭", "failed": "❌"}


def _note(row) -> str:
    """Failed/skipped: the reason. Ok: what the row is (its first clause, e.g. "ORT quantize_static defaults")."""
    if row.status != "ok":
        return row.reason
    what = row.reason.split(";")[0] if row.reason else ""
    return f"{what} (unstable timing)" if row.stable is False else what


@command
def bench_cmd(
    model: ModelArg,
    out: OutOpt = None,
    threads: ThreadsOpt = None,
    batch: BatchOpt = 1,
    resolution: ResolutionOpt = None,
    rows: Annotated[
        list[str] | None, typer.Option("--rows", help="Only these rows, repeatable (e.g. onnx-fp32-ort).")
    ] = None,
    calib: Annotated[
        str | None, typer.Option(help="Calibration data for the INT8 rows (folder, .npz); default: synthetic.")
    ] = None,
    min_time: Annotated[float, typer.Option("--min-time", min=0.01, help="Seconds of timed calls per row.")] = 2.0,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed calls before each row's timing.")] = 10,
    overwrite: OverwriteOpt = False,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Export MODEL and time it on every backend available here: one row per format × precision.

    The report folder keeps every artifact plus bench.json and bench.md. A failing row does not stop
    the others; the exit code is 7 when some rows failed.

    Example: edgeformer bench efficientformer_l1 --threads 2
    """
    from ..models import get_spec
    from ..profiling.bench import BenchConfig, bench

    setup_logging(verbose)
    get_spec(model)  # an unknown name is a usage error (exit 2), not a table of failed rows
    config = BenchConfig(min_time_s=min_time, warmup=warmup, rows=tuple(rows) if rows else None)
    out = out or Path(f"bench-{model}")
    with console.status(f"bench {model}: exporting and timing…", spinner="dots"):
        report = bench(model, out=out, resolution=resolution, batch=batch, threads=threads, config=config,
                       overwrite=overwrite, calib=calib)  # fmt: skip
    if json_out:
        print_json(report)
    else:
        fastest = report.fastest_ok()
        cols = ("", "format", "precision", "backend", "size MB", "parity cos", "p50 ms", "p90 ms", "FPS", "note")
        body = [
            (
                _ICON[r.status] + (" ★" if r is fastest else ""),
                r.format,
                r.precision,
                r.backend,
                None if r.size_mb is None else f"{r.size_mb:.1f}",
                None if r.parity_cosine is None else f"{r.parity_cosine:.6f}",
                fmt_ms(r.p50_ms),
                fmt_ms(r.p90_ms),
                None if r.fps is None else f"{r.fps:.1f}",
                _note(r),
            )
            for r in report.rows
        ]
        console.print(table(f"bench {report.model} · {report.device.get('cpu_model')}", cols, body))
        console.print(f"report: {Path(report.out) / 'bench.md'}  (★ = fastest row that ran)")
    if report.failed:
        raise PartialFailureError(
            f"{len(report.failed)} of {len(report.rows)} rows failed: "
            + "; ".join(f"{r.format}/{r.precision}: {r.reason}" for r in report.failed)
        )
