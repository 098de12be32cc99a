"""ORT FP32 (edgeformer export) vs PyTorch eager (fused, unfused) vs torch.compile, side by side.

Every cell of a row runs in this one process on the same seeded input with the same thread count
(``torch.set_num_threads`` and ORT ``intra_op_num_threads``), timed by edgeformer's harness: warm-up
excluded and listed, p50 over bounded loops, unstable cells flagged. The cells take turns over
``--rounds`` passes so that a change in machine load during the run hits all of them alike.
torch.compile's first call (compilation) is timed on its own and its output checked against eager.
A cell that fails (export, parity, compile) is reported as failed with its reason; the others run.

Usage::

    python benchmarks/export_vs_eager.py --models efficientformer_l1,shvit_s1 --threads 2 --json out.json

On a machine where other processes compete for the cores, torch's OpenMP threads spin-wait at every
op's barrier and eager latency collapses (seconds instead of tens of ms for EfficientFormer-L1 at 2
threads); run with ``OMP_WAIT_POLICY=PASSIVE`` there. ONNX Runtime uses its own thread pool and is
unaffected by that variable. The JSON records the OpenMP variables and the load average.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from edgeformer.artifact import TensorSpec
from edgeformer.bench.context import arch_for_resolution, parity_cosine
from edgeformer.export import export
from edgeformer.export.onnx import OnnxExportConfig
from edgeformer.models import create_model, get_spec, list_models
from edgeformer.profiling import ProfileConfig, build_feeds, open_session
from edgeformer.profiling.device import device_card
from edgeformer.profiling.harness import measure, stats_from_samples
from edgeformer.runtimes.base import SessionOptions
from edgeformer.runtimes.feeds import check_feeds

CELLS = ("ort_fp32", "eager_fused", "eager_unfused", "compile")


def cell_ok(stats, **extra: Any) -> dict[str, Any]:
    return {"status": "ok", **stats.to_dict(), **extra}


def cell_failed(e: BaseException) -> dict[str, Any]:
    logging.getLogger(__name__).debug("cell failed", exc_info=e)
    first = (str(e).strip().splitlines() or [""])[0]
    return {"status": "failed", "reason": f"{type(e).__name__}: {first}"[:300]}


def prepare(name: str, resolution: int | None, cfg: ProfileConfig, workdir: Path, x_np) -> tuple[dict, dict, float]:
    """Every cell's zero-argument runner (or the error that prevented it), its facts, and the params (M)."""
    x = torch.from_numpy(x_np)
    overrides = arch_for_resolution(name, resolution)
    runners: dict[str, Any] = {}
    facts: dict[str, dict[str, Any]] = {c: {} for c in CELLS}
    try:
        t0 = time.perf_counter()
        config = OnnxExportConfig(resolution=resolution)
        artifact = export(name, fmt="onnx", out=workdir / name, overwrite=True, config=config)
        facts["ort_fp32"].update(
            export_s=time.perf_counter() - t0,
            size_mb=artifact.size_bytes() / 1e6,
            parity_cosine=parity_cosine(artifact.manifest.parity),
        )
        session = open_session(artifact, options=SessionOptions(threads=cfg.threads))
        feeds = check_feeds(session.inputs, {session.inputs[0].name: x_np})
        runners["ort_fp32"] = lambda: session.run(feeds)
    except Exception as e:
        runners["ort_fp32"] = e

    unfused = create_model(name, **overrides).eval()
    fused = copy.deepcopy(unfused).fuse()
    runners["eager_fused"] = lambda: fused(x)
    runners["eager_unfused"] = lambda: unfused(x)
    try:
        compiled = torch.compile(fused)  # mode "default"
        t0 = time.perf_counter()
        compiled(x)  # the first call compiles
        facts["compile"].update(
            compile_s=time.perf_counter() - t0, max_abs_vs_eager=float((compiled(x) - fused(x)).abs().max())
        )
        runners["compile"] = lambda: compiled(x)
    except Exception as e:
        runners["compile"] = e
    return runners, facts, sum(p.numel() for p in unfused.parameters()) / 1e6


@torch.inference_mode()
def bench_model(name: str, resolution: int | None, cfg: ProfileConfig, workdir: Path, rounds: int) -> dict[str, Any]:
    spec = get_spec(name)
    shape = spec.input.shape(1, resolution)
    # one seeded array; every cell sees exactly these values
    x_np = build_feeds([TensorSpec(name="x", shape=shape, dtype="float32")], seed=cfg.seed)["x"]
    runners, facts, params_m = prepare(name, resolution, cfg, workdir, x_np)
    row: dict[str, Any] = {"model": name, "input_shape": list(shape), "threads": cfg.threads, "params_m": params_m}
    row["cells"] = {}

    # Cells take turns (round-robin) so that a change in machine load hits all of them alike.
    per_round = dataclasses.replace(cfg, min_time_s=cfg.min_time_s / rounds)
    samples: dict[str, list[int]] = {c: [] for c in CELLS}
    warmups: dict[str, list[int]] = {c: [] for c in CELLS}
    for _ in range(rounds):
        for cell in CELLS:
            run = runners[cell]
            if isinstance(run, BaseException):
                continue
            try:
                stats = measure(run, per_round)
            except Exception as e:
                runners[cell] = e
                continue
            samples[cell] += [round(v * 1e6) for v in stats.samples_ms]
            warmups[cell] += [round(v * 1e6) for v in stats.warmup_ms]
    for cell in CELLS:
        if isinstance(runners[cell], BaseException):
            row["cells"][cell] = cell_failed(runners[cell])
            continue
        stats = stats_from_samples(
            samples[cell], warmup_ns=warmups[cell], stop_reason=f"{rounds} rounds", max_rel_spread=cfg.max_rel_spread
        )
        row["cells"][cell] = cell_ok(stats, **facts[cell])
    torch._dynamo.reset()  # release compiled graphs before the next model

    ort = row["cells"]["ort_fp32"]
    for cell in ("eager_fused", "eager_unfused", "compile"):
        c = row["cells"][cell]
        if ort["status"] == "ok" and c["status"] == "ok":
            row[f"{cell}_over_ort"] = c["p50_ms"] / ort["p50_ms"]
    return row


def render(rows: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="p50 latency (ms), batch 1; ratio = other / ORT (> 1: ORT is faster)")
    table.add_column("model")
    table.add_column("input")
    for col in ("ORT fp32", "eager fused", "eager unfused", "compile", "eager/ORT", "unfused/ORT", "compile/ORT"):
        table.add_column(col, justify="right")
    for r in rows:
        cells = []
        for cell in CELLS:
            c = r["cells"][cell]
            if c["status"] != "ok":
                cells.append(f"[red]failed[/red] ({c['reason'][:40]})")
            else:
                cells.append(f"{c['p50_ms']:.2f}" + ("" if c["stable"] else " [yellow]~[/yellow]"))
        ratios = [
            f"{r[k]:.2f}x" if k in r else "-"
            for k in ("eager_fused_over_ort", "eager_unfused_over_ort", "compile_over_ort")
        ]
        table.add_row(r["model"], "x".join(map(str, r["input_shape"][2:])) or str(r["input_shape"]), *cells, *ratios)
    console.print(table)
    console.print("~ = unstable timing (spread above the threshold; see JSON for the spread)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma-separated zoo names (default: the whole zoo)")
    ap.add_argument("--resolution", type=int, default=None, help="input side (default: each model's published one)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--min-time", type=float, default=3.0, help="seconds of measured time per cell (all rounds)")
    ap.add_argument("--rounds", type=int, default=3, help="round-robin passes over the cells (load fairness)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the exported artifacts here")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("edgeformer.profiling.harness").setLevel(logging.ERROR)  # the table marks unstable cells

    models = [m.strip() for m in args.models.split(",") if m.strip()] or list_models()
    for m in models:
        get_spec(m)  # unknown names fail here, before anything runs
    cfg = ProfileConfig(warmup=args.warmup, min_time_s=args.min_time, threads=args.threads)
    torch.set_num_threads(args.threads)
    console = Console(width=None if sys.stdout.isatty() else 160)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeformer-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        for name in models:
            console.print(f"[bold]{name}[/bold] …")
            try:
                rows.append(bench_model(name, args.resolution, cfg, workdir, args.rounds))
            except Exception as e:  # a model that cannot even be built: report and go on
                traceback.print_exc()
                rows.append({"model": name, "input_shape": [], "cells": {c: cell_failed(e) for c in CELLS}})
    render(rows, console)
    result = {
        "device": device_card(backend="ort", threads=args.threads).to_dict(),
        "torch": torch.__version__,
        "config": cfg.to_dict(),
        "rounds": args.rounds,
        # torch's OpenMP spin-waits collapse when other processes share the cores; PASSIVE avoids that
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")},
        # other processes compete for the cores; the figures mean little when this exceeds the core count
        "loadavg_1_5_15": {"before": load_before, "after": os.getloadavg()},
        "rows": rows,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
