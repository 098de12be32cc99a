"""``edgeformer bench``: export, build every target available here, time it and check it against PyTorch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..agent import resolve_token
from ..errors import PartialFailureError
from .common import (
    BatchOpt,
    DeviceOpt,
    JsonOpt,
    ModelArg,
    OutOpt,
    OverwriteOpt,
    ResolutionOpt,
    ThreadsOpt,
    TokenFileOpt,
    VerboseOpt,
    WarmupOpt,
    command,
    console,
    err_console,
    fmt_ms,
    print_json,
    setup_logging,
)

_ICON = {"ok": "✅", "skipped": "⏭", "failed": "❌"}


def _split(values: list[str] | None) -> tuple[str, ...] | None:
    """Repeatable and comma-separated: ``--formats onnx,openvino --formats ort``."""
    if not values:
        return None
    return tuple(v.strip().lower() for item in values for v in item.split(",") if v.strip())


# the table fits a 120-column terminal with every cell on one line; what does not fit goes to numbered
# footnotes here and in full to bench.md / --json
TABLE_WIDTH = 120
_NOTE_WIDTH = 22  # what is left of 120 columns beside the widest figures
# cosine and top-1: vs PyTorch; ±: half the p50's 95 % interval, relative; start: session creation + first call
_COLUMNS = ("", "row", "MB", "cosine", "top-1", "p50 ms", "±", "start ms", "FPS", "note")


def _note(row, footnotes: list[str]) -> str:
    """What the row is (its first clause) or, failed/skipped, why: a long text becomes a numbered footnote,
    one per distinct text (three TensorRT rows share one)."""
    if row.status != "ok":
        text = row.reason
    else:
        parts = [
            "peer" if row.peer else "",
            "INT8 slower than FP32" if row.int8_slower else row.reason.split(";")[0],
            "soft timing" if row.stable is False else "",
        ]
        text = " · ".join(p for p in parts if p)
    if len(text) <= _NOTE_WIDTH:
        return text
    if text not in footnotes:
        footnotes.append(text)
    return f"see [{footnotes.index(text) + 1}]"


def bench_table(report) -> tuple[Table, list[str]]:
    """The terminal table of ``report`` and its footnotes (the tools line last)."""
    best, footnotes = report.best(), []
    body = [
        (
            _ICON[r.status] + (" ★" if r is best else ""),
            r.name,
            None if r.size_mb is None else f"{r.size_mb:.1f}",
            None if r.parity_cosine is None else f"{r.parity_cosine:.6f}",
            None if r.top1_agreement is None else f"{r.top1_agreement:.3f}",
            fmt_ms(r.p50_ms),
            _halfwidth(r),
            None if r.startup_ms is None else f"{r.startup_ms:.0f}",
            None if r.fps is None else f"{r.fps:.1f}",
            _note(r, footnotes),
        )
        for r in report.rows
    ]
    t = Table(
        title=f"bench {report.model} · {report.device.get('cpu_model')}"[:TABLE_WIDTH],
        header_style="bold",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,  # one space each side of the divider, not two: room for the note
    )
    for c in _COLUMNS:
        t.add_column(c, no_wrap=True, overflow="ellipsis", justify="left" if c in ("", "row", "note") else "right")
    for r in body:
        t.add_row(*("" if v is None else str(v) for v in r))
    tools = {k: v for r in report.rows for k, v in r.versions.items()}
    footnotes.append("tools: " + " · ".join(f"{k} {v}" for k, v in sorted(tools.items())))
    return t, footnotes


def _halfwidth(r) -> str | None:
    if r.p50_ms is None or r.p50_low_ms is None or r.p50_high_ms is None or r.p50_ms <= 0:
        return None
    return f"{(r.p50_high_ms - r.p50_low_ms) / 2 / r.p50_ms:.1%}"


@command
def bench_cmd(
    model: ModelArg,
    out: OutOpt = None,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--formats",
            help="Artifact formats to bench, repeatable or comma-separated: pytorch, onnx, ort (ORT-optimized), "
            "openvino, tensorrt, coreml. Default: all; those that cannot run here show ⏭ with the reason.",
        ),
    ] = None,
    precisions: Annotated[
        list[str] | None,
        typer.Option("--precisions", help="Precisions, repeatable or comma-separated: fp32, fp16, bf16, int8."),
    ] = None,
    backends: Annotated[
        list[str] | None,
        typer.Option(
            "--backends", help="Runtimes, repeatable or comma-separated: eager, ort, openvino, tensorrt, coreml."
        ),
    ] = None,
    calib: Annotated[
        str | None,
        typer.Option(
            help="Real samples (image/wav folder, .npy/.npz) for the INT8 rows' calibration and the parity check "
            "(held-out ones). Default: synthetic inputs, which say nothing about accuracy."
        ),
    ] = None,
    min_cosine: Annotated[
        float, typer.Option("--min-cosine", min=0.0, max=1.0, help="Fidelity bar vs PyTorch for the ★ marker.")
    ] = 0.999,
    threads: ThreadsOpt = None,
    batch: BatchOpt = 1,
    resolution: ResolutionOpt = None,
    rows: Annotated[
        list[str] | None, typer.Option("--rows", help="Only these rows by name, repeatable (e.g. onnx-int8-ort).")
    ] = None,
    min_time: Annotated[
        float,
        typer.Option("--min-time", min=0.01, help="Timed seconds per row, spread over the --rounds."),
    ] = 2.0,
    rounds: Annotated[
        int,
        typer.Option(
            "--rounds",
            min=3,
            help="Rounds the rows take turns in (each p50's interval is bootstrapped over them); more rounds, "
            "tighter intervals on a noisy machine.",
        ),
    ] = 10,
    aa_check: Annotated[
        bool,
        typer.Option(
            "--aa-check/--no-aa-check",
            help="Also time the reference artifact (plain ONNX FP32) as a second row: if the two disagree beyond "
            "their interval the machine is too noisy and no row gets the ★.",
        ),
    ] = True,
    warmup: WarmupOpt = 10,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = None,
    token_file: TokenFileOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Export MODEL, build it for every target × precision available here and time each: one table.

    Each row shows status (✅ ran, ⏭ cannot run here and why, ❌ failed and the error), file size, parity vs PyTorch
    (worst cosine, top-1 agreement), p50/p90 latency, FPS and the tool versions. Every row is built and checked first;
    then all rows are timed together, taking turns in --rounds rounds (A B C, C A B, ...: a fresh order each), so load
    that comes and goes hits them alike. p50 is the median of the round medians and ± half its 95 % bootstrap interval;
    every ORT row runs with the same threads and spinning off; OpenVINO rows are reopened each round. Start-up (session
    creation + first call) and memory are in bench.md. --batch 8 gives batch-8 throughput in the FPS column.

    ★ marks the row with cosine vs PyTorch ≥ --min-cosine that is faster than every other such row
    beyond the interval of their paired ratio. Within the noise it is a tie, broken by fidelity, then
    size, and the footer says so. The A/A check times the reference artifact twice; when the two
    disagree beyond their interval, no row is marked. An INT8 row slower than FP32 on its backend is
    never marked. Rows marked "peer" are what you get without edgeformer (eager PyTorch, plain ORT,
    quantize_static defaults, OpenVINO, NNCF).

    The report folder (--out, default bench-MODEL) keeps every artifact plus bench.md, bench.json and
    bench.png (latency vs fidelity). A failing row does not stop the others; the exit code is 7 when
    some rows failed.

    Examples:

      edgeformer bench efficientformer_l1 --threads 2

      edgeformer bench shvit_s1 --formats onnx,openvino --precisions int8 --calib images/ --out bench-s1

      edgeformer bench shvit_s1 --device agent://pi5.local:8765 --token-file pi5.token

    With --device every artifact row is timed on that device agent (so is the INT8 placement search);
    builds and parity checks run here, PyTorch rows are skipped.
    """
    # Rows take turns: torch's OpenMP workers busy-wait after each eager call by default and would steal the cores
    # from the row timed next. Only effective before torch loads (the CLI keeps it out until here); a user's own
    # setting wins. The report's timing line says which policy was in force.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from ..bench import BenchConfig, bench
    from ..models import get_spec
    from ..models.reference import list_references

    setup_logging(verbose)
    if model not in list_references():  # a trained reference model benches by name too
        get_spec(model)  # an unknown name is a usage error (exit 2), not a table of failed rows
    config = BenchConfig(
        min_time_s=min_time,
        rounds=rounds,
        aa_check=aa_check,
        warmup=warmup,
        rows=_split(rows),
        formats=_split(formats),
        precisions=_split(precisions),
        backends=_split(backends),
        min_cosine=min_cosine,
    )
    out = out or Path(f"bench-{model}")
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    # the bar goes to stderr: stdout stays the table (or the JSON) alone
    with Progress(*columns, console=err_console, transient=True, disable=json_out) as bar:
        task = bar.add_task(f"bench {model}", total=None)

        def progress(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, description=f"bench {model}: {name or 'writing report'}")

        report = bench(
            model,
            out=out,
            resolution=resolution,
            batch=batch,
            threads=threads,
            config=config,
            overwrite=overwrite,
            calib=calib,
            progress=progress,
            device=device,
            token=resolve_token(token_file=token_file) if device else None,
        )
    if json_out:
        print_json(report)
    else:
        best = report.best()
        t, footnotes = bench_table(report)
        console.print(t)
        for i, text in enumerate(footnotes[:-1], 1):
            console.print(f"[{i}] {text}", markup=False)
        console.print(footnotes[-1], markup=False)
        console.print(f"parity vs PyTorch on {report.parity_on or 'n/a'}")
        for line in report.footer():
            console.print(line, markup=False)
        if best is None and report.verdict is None:
            console.print(f"no row reached cosine ≥ {config.min_cosine} vs PyTorch")
        console.print(f"report: {Path(report.out) / 'bench.md'} and bench.png")
    if report.failed:
        raise PartialFailureError(
            f"{len(report.failed)} of {len(report.rows)} rows failed: "
            + "; ".join(f"{r.name}: {r.reason}" for r in report.failed)
        )
