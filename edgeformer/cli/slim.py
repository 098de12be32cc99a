"""``edgeformer slim``: slim a trained model to device latency budgets from a latency table, verified on the device."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..agent import resolve_token
from .common import (
    JsonOpt,
    RayAddressOpt,
    TokenFileOpt,
    VerboseOpt,
    command,
    console,
    print_json,
    setup_logging,
)
from .latency import _Bar


@command
def slim_cmd(
    model: Annotated[str, typer.Argument(help="A trained reference model, or a zoo variant with --checkpoint.")],
    table: Annotated[Path, typer.Option("--table", help="The latency table of MODEL on the target device.")],
    budget_ms: Annotated[
        list[float], typer.Option("--budget-ms", help="Latency budget in ms (repeat for several; one folder each).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder; a rerun skips budgets already delivered.")],
    data: Annotated[
        str, typer.Option("--data", help="'reference' (the reference model's own dataset) or an .npz with x and y.")
    ] = "reference",
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", help="Trained weights of a zoo variant.")] = None,
    search: Annotated[
        str,
        typer.Option(
            "--search", help="greedy (default) or evolution; the other runs for comparison unless --no-compare."
        ),
    ] = "greedy",
    compare: Annotated[bool, typer.Option(help="Also run the other search and report which found more.")] = True,
    epochs: Annotated[int, typer.Option("--epochs", min=0, help="Fine-tuning epochs with distillation (0: none).")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Seed of splits, evolution and fine-tuning.")] = 0,
    device: Annotated[
        str | None, typer.Option("--device", help="Re-measure there (default: where the table was measured).")
    ] = None,
    token_file: TokenFileOpt = None,
    executor: Annotated[
        str,
        typer.Option(
            "--executor", help="Where candidates are built: local (one at a time) or ray (parallel Ray tasks)."
        ),
    ] = "local",
    ray_address: RayAddressOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Cut MODEL down to each --budget-ms on the table's device: search, distil, export, re-measure, report.

    \b
    Example:
      edgeformer latency build clutter_shvit --threads 2 --out cs.json
      edgeformer slim clutter_shvit --table cs.json --budget-ms 1.2 --budget-ms 0.9 --out slim/
      edgeformer slim clutter_shvit --table cs.json --budget-ms 1.2 --out slim/ --executor ray --ray-address auto

    A budget counts as met when the re-measured p50 is at most budget x 1.05; misses are reported, never hidden.
    Each budget folder holds the ONNX artifact, the checkpoint, arch.json, lineage.json and the uniform-width
    baseline; report.md/.html, pareto.csv/.png sit beside them. Ctrl-C keeps finished budgets.

    With --executor ray the candidates (export, quantize, evaluate) are built as parallel Ray tasks; the
    artifacts are the same as with the default one-at-a-time build, and timing still runs one model at a time.
    """
    from ..nas.candidates import candidate_executor
    from ..nas.slim import slim

    setup_logging(verbose)
    with candidate_executor(executor, ray_address) as ex, _Bar(json_out) as bar:
        report = slim(
            model,
            table=table,
            budgets_ms=budget_ms,
            out=out,
            data=data,
            checkpoint=checkpoint,
            search=search,
            compare=compare,
            epochs=epochs,
            seed=seed,
            progress=lambda d, t, w: bar(d, t, f"slim {model}: {w}"),
            device=device,
            token=resolve_token(token_file=token_file),
            executor=ex,
        )
    if json_out:
        print_json(report)
        return
    p = report.parent
    console.print(f"parent: {p.measured_ms:.3f} ms measured, test top-1 {p.top1:.2f} %")
    for b in report.budgets:
        s, u = b.slim, b.uniform
        met = "met" if b.met else "MISSED"
        console.print(
            f"{b.budget_ms:g} ms: {met} — slimmed {s.measured_ms:.3f} ms (predicted {s.predicted_ms:.3f}), "
            f"top-1 {s.top1:.2f} % ({s.top1 - p.top1:+.2f}); uniform {u.measured_ms:.3f} ms, top-1 {u.top1:.2f} %"
        )
    console.print(f"report: {out / 'report.md'} (and .html), {out / 'pareto.png'}")
