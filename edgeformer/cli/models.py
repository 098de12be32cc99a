"""``edgeformer models list|info``: browse the zoo."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import JsonOpt, ModelArg, command, console, print_json, table

app = typer.Typer(help="Browse the model zoo.", no_args_is_help=True)


def _input_str(spec) -> str:
    i = spec.input
    if i.kind == "image":
        return f"{i.channels}×{i.resolution}²"
    return f"{i.clip_seconds:g}s@{i.sample_rate // 1000}kHz"


@app.command("list")
@command
def list_cmd(
    pattern: Annotated[str, typer.Argument(help="Shell pattern, e.g. 'shvit_*'.")] = "*",
    json_out: JsonOpt = False,
) -> None:
    """List zoo models with their published size and cost.  Example: edgeformer models list 'efficientformer*'"""
    from ..models import get_spec, list_models

    specs = [get_spec(n) for n in list_models(pattern)]
    rows = [
        {
            "name": s.name,
            "family": s.family,
            "task": s.task,
            "params_m": s.params_m,
            "macs_g": s.macs_g,
            "input": _input_str(s),
            "paper": s.paper,
        }
        for s in specs
    ]
    if json_out:
        print_json(rows)
        return
    cols = ("name", "family", "task", "params (M)", "MACs (G)", "input", "paper")
    short = [[*list(r.values())[:-1], r["paper"].split(":")[0]] for r in rows]  # "Authors, Title" fits a table
    console.print(table(f"{len(rows)} models", cols, short))


@app.command("info")
@command
def info_cmd(name: ModelArg, json_out: JsonOpt = False) -> None:
    """Show a model's architecture, input spec, export hints and measured size.

    Example: edgeformer models info shvit_s4 --json
    """
    from ..models import get_spec
    from ..models.complexity import count_macs, count_params

    spec = get_spec(name)
    with __import__("torch").device("meta"):
        model = spec.build(spec.arch)
    measured = {
        "params_m": round(count_params(model) / 1e6, 3),
        "macs_g": round(count_macs(lambda: spec.build(spec.arch), spec.input.shape(1)) / 1e9, 4),
    }
    info = {
        "name": spec.name,
        "family": spec.family,
        "task": spec.task,
        "num_classes": spec.num_classes,
        "labels": spec.labels,
        "arch": spec.arch.to_dict(),
        "input": spec.input.to_dict(),
        "export": spec.export.__dict__,
        "published": {
            "params_m": spec.params_m,
            "macs_g": spec.macs_g,
            "counts_distillation_head": spec.counts_distillation_head,
        },
        "measured": measured,
        "paper": spec.paper,
        "repo": spec.repo,
        "license": spec.license,
        "notes": spec.notes,
    }
    if json_out:
        print_json(info)
        return
    rows = []
    for k, v in info.items():
        if isinstance(v, dict):
            rows.extend((f"{k}.{kk}", vv) for kk, vv in v.items())
        else:
            rows.append((k, v))
    console.print(table(spec.name, ("field", "value"), rows))
