"""``edgeformer latency build|predict|validate``: per-device block latency tables and the latency model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..agent import Fleet, make_executor, resolve_token
from ..errors import ConfigError, InvalidInputError
from .common import (
    ExecutorOpt,
    JsonOpt,
    RayAddressOpt,
    TokenFileOpt,
    VerboseOpt,
    command,
    console,
    err_console,
    print_json,
    setup_logging,
    table,
)

app = typer.Typer(
    help="""Per-device latency tables: what each block of a search space costs here, and predictions from them.

\b
  edgeformer latency build efficientformer_l1 --backend ort --precision int8 --threads 2 --out l1-int8.json
  edgeformer latency predict l1-int8.json efficientformer_l1 --arch arch.json
  edgeformer latency validate l1-int8.json --samples 20

A table holds one timing per distinct block (stem, downsample, each block kind at each width and token count,
head) of every sub-network that `slim` can cut from the model, plus a correction fitted on a few whole models.
It is tied to the device, backend, version, threads and precision it was measured with, and refuses others.
""",
    no_args_is_help=True,
)

TableArg = Annotated[Path, typer.Argument(help="A latency table file (JSON) written by `latency build`.")]


class _Bar:
    """A progress bar on stderr that appears on the first update: an error raised before any work is done then
    prints as the one line the error contract promises, with no empty line the bar left behind."""

    def __init__(self, quiet: bool) -> None:
        cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.progress = Progress(*cols, console=err_console, transient=True, disable=quiet)
        self.task = None

    def __call__(self, done: int, total: int, what: str) -> None:
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task(what, total=total)
        self.progress.update(self.task, completed=done, total=total, description=what)

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.progress.stop()


@app.command("build")
@command
def build_cmd(
    model: Annotated[str, typer.Argument(help="A zoo variant or trained reference model (`edgeformer models list`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Table file to write or extend (resumes what is missing).")],
    backend: Annotated[
        str, typer.Option("--backend", help="Runtime to time on: ort, openvino, tensorrt (NVIDIA GPU), coreml (macOS).")
    ] = "ort",
    precision: Annotated[
        str, typer.Option("--precision", help="fp32, or int8 (the default quantize recipe).")
    ] = "fp32",
    threads: Annotated[int, typer.Option("--threads", "-t", min=1, help="Intra-op threads of the timed sessions.")] = 2,
    device: Annotated[
        str, typer.Option("--device", help="Where to time: local, or agent://HOST:PORT (`edgeformer agent serve`).")
    ] = "local",
    token_file: TokenFileOpt = None,
    fleet: Annotated[
        Path | None,
        typer.Option("--fleet", help="A fleet file: one table per label, built in parallel (--out: a folder)."),
    ] = None,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    width_step: Annotated[
        int, typer.Option("--width-step", help="Channel multiple of narrowed widths: 8, 16, 32.")
    ] = 16,
    whole: Annotated[int, typer.Option("--whole", min=3, help="Whole models timed to fit the correction.")] = 8,
    rounds: Annotated[int, typer.Option("--rounds", min=2, help="Interleaved timing rounds per entry.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the correction's sampled models.")] = 0,
    shard: Annotated[
        str,
        typer.Option(
            "--shard",
            help="I/N: time only the I-th of N shares into --out (N builds on N like devices split one table; "
            "shards fit no correction: run once more without --shard to fit it). --fleet does this per label.",
        ),
    ] = "0/1",
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Time every block of MODEL's search space on this device and fit the correction; Ctrl-C keeps what is done.

    Example: edgeformer latency build shvit_s4 --precision int8 --threads 2 --out s4-int8.json
    """
    from ..nas import SearchSpace, TimingConfig, build_fleet_tables, build_table  # torch: only when it runs

    setup_logging(verbose)
    try:
        index, count = (int(x) for x in shard.split("/"))
    except ValueError:
        raise ConfigError(f"--shard takes I/N (for example 0/2), not {shard!r}.") from None
    if fleet is not None and count != 1:
        raise ConfigError("--shard goes without --fleet: a fleet build shards each table over its label's agents.")
    space = SearchSpace.of(model, width_step=width_step)
    if fleet is not None:
        fleet_ = Fleet.load(fleet)
        status = console.status(f"building {len(fleet_.labels)} tables of {model}…", spinner="dots")
        with status, make_executor(executor, fleet_, ray_address=ray_address) as ex:
            paths = build_fleet_tables(
                space,
                fleet_,
                ex,
                out_dir=out,
                backend=backend,
                precision=precision,
                threads=threads,
                whole_models=whole,
                seed=seed,
                timing=TimingConfig(threads=threads, rounds=rounds),
            )
        if json_out:
            print_json(paths)
        else:
            for label, path in paths.items():
                console.print(f"{label}: {path}")
        return
    with _Bar(json_out) as bar:
        result = build_table(
            space,
            backend,
            precision,
            threads,
            device,
            out=out,
            whole_models=whole,
            seed=seed,
            timing=TimingConfig(threads=threads, rounds=rounds),
            progress=lambda done, total, what: bar(done, total, f"{model} {precision}: {what}"),
            shard=(index, count),
        )
    if json_out:
        print_json(
            {
                "table": str(out),
                "entries": len(result.entries),
                "device": result.device.to_dict(),
                "correction": result.correction.to_dict() if result.correction else None,
            }
        )
        return
    c = result.correction
    console.print(f"{out}: {len(result.entries)} blocks of {model} on {result.device.summary()}")
    if count > 1:
        console.print(f"shard {index}/{count} merged; when every shard is in, rerun without --shard to fit")
    if c is not None:
        terms = ", ".join(f"{n} {v:+.4g}" for n, v in zip(c.features, c.coef, strict=True))
        console.print(f"correction: {terms} (fitted on {c.fitted_on}; residual rms {c.residual_rms_ms:.3f} ms)")


@app.command("predict")
@command
def predict_cmd(
    table_path: TableArg,
    model: Annotated[str, typer.Argument(help="The model the table was built for (a check, and the default arch).")],
    arch: Annotated[
        Path | None, typer.Option("--arch", help="ARCH.json: the family's arch record (arch.to_dict()).")
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="Refuse unless the table was measured on this device: local.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Predicted latency of MODEL (or of --arch, a sub-network of it) with its per-block breakdown.

    Example: edgeformer latency predict s4-int8.json shvit_s4 --arch slim.json
    """
    from ..nas import LatencyModel, local_device, read_table

    want = None
    if device is not None:
        if device != "local":
            raise ConfigError(f"--device {device!r}: only 'local' can be checked here.")
        t = read_table(table_path).device
        want = local_device(t.backend, t.threads, t.precision)
    lm = LatencyModel.load(table_path, device=want)
    if lm.table.model != model:
        raise ConfigError(f"{table_path} is the table of {lm.table.model}, not {model}; pass the matching table.")
    a = lm.space.parent if arch is None else lm.arch_from_dict(_read_arch(arch))
    if not lm.space.contains(a):
        problems = lm.space.problems(lm.space.genome(a))
        console.print(f"note: not a member of the {model} search space ({'; '.join(problems[:3])})")
    b = lm.breakdown(a)
    if json_out:
        print_json(
            {"model": model, "predicted_ms": b.total_ms, "breakdown": b.to_dict(), "device": lm.table.device.to_dict()}
        )
        return
    rows = [(r.path, r.kind, f"{r.ms:.3f}") for r in b.rows]
    rows.append(("correction", "fusion, overhead", f"{b.correction_ms:+.3f}"))
    console.print(table(f"{model} on {lm.table.device.summary()}", ("segment", "kind", "ms"), rows))
    console.print(f"predicted: {b.total_ms:.3f} ms")


@app.command("validate")
@command
def validate_cmd(
    table_path: TableArg,
    samples: Annotated[int, typer.Option("--samples", "-n", min=3, help="Held-out sub-networks to time whole.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the held-out sample.")] = 0,
    device: Annotated[
        str | None, typer.Option("--device", help="Where to time (default: where the table was measured).")
    ] = None,
    token_file: TokenFileOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Time seeded sub-networks whole here; score the table's predictions against MACs- and params-linear baselines.

    Example: edgeformer latency validate s4-int8.json --samples 20 --seed 1
    """
    from ..nas import validate

    setup_logging(verbose)
    with _Bar(json_out) as bar:
        report = validate(
            table_path,
            samples,
            seed,
            progress=lambda d, t, w: bar(d, t, f"validating: {w}"),
            device=device,
            token=resolve_token(token_file=token_file),
        )
    if json_out:
        print_json(report)
        return
    console.print(report.to_markdown(), markup=False)


def _read_arch(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InvalidInputError(f"{path}: cannot read the architecture JSON ({e}).") from e
    if not isinstance(d, dict):
        raise InvalidInputError(f"{path}: an ARCH.json is an object of arch fields, got {type(d).__name__}.")
    return d


def print_measured_vs_predicted(per_op, manifest, table_path: Path) -> None:
    """Per segment: kernel time measured by ORT's profiler beside the table's prediction for the artifact's arch."""
    from ..nas import LatencyModel

    if per_op.segments == ():
        raise ConfigError(
            "this artifact carries no block tags (re-export it with this edgeformer) to compare per block."
        )
    arch = manifest.lineage.arch if manifest.lineage is not None else None
    if arch is None:
        raise ConfigError(
            f"{manifest.model_name}: the manifest records no architecture to predict; export a zoo model."
        )
    lm = LatencyModel.load(table_path)
    predicted = {r.path: r.ms for r in lm.breakdown(lm.arch_from_dict(arch)).rows}
    measured = {g.segment: g.per_run_us / 1000 for g in per_op.segments}
    rows = [
        (seg, f"{measured[seg]:.3f}" if seg in measured else "—", f"{predicted[seg]:.3f}" if seg in predicted else "—")
        for seg in dict.fromkeys([*predicted, *measured])
    ]
    console.print(
        table(
            f"per block: measured (ORT profiler) vs predicted ({table_path})",
            ("segment", "measured ms", "predicted ms"),
            rows,
        )
    )
