"""``edgeformer export``: a zoo model to a parity-checked ONNX artifact."""

from __future__ import annotations

import ast
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError
from ..steps import USE_DEFAULT_CACHE
from .common import (
    CheckpointOpt,
    FormatOpt,
    JsonOpt,
    ModelArg,
    NoCacheOpt,
    OutOpt,
    OverwriteOpt,
    ResolutionOpt,
    VerboseOpt,
    command,
    console,
    print_json,
    setup_logging,
    table,
)


class Exporter(str, Enum):
    dynamo = "dynamo"
    torchscript = "torchscript"


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["num_classes=10", "depths=(2,2,6,4)"]`` -> ``{"num_classes": 10, "depths": (2, 2, 6, 4)}``."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--arch expects KEY=VALUE (e.g. --arch num_classes=10), got {item!r}.")
        try:
            out[key.strip()] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = raw.strip()  # a bare word is a string value
    return out


@command
def export_cmd(
    model: ModelArg,
    fmt: FormatOpt = "onnx",
    out: OutOpt = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: the model's export hint).")] = None,
    batch: Annotated[int | None, typer.Option("--batch", "-b", min=1, help="Batch size of the exported input.")] = None,
    dynamic_batch: Annotated[
        bool | None, typer.Option("--dynamic-batch/--static-batch", help="Symbolic batch axis (default: spec's).")
    ] = None,
    resolution: ResolutionOpt = None,
    checkpoint: CheckpointOpt = None,
    exporter: Annotated[
        Exporter | None, typer.Option(help="ONNX: torch.export-based dynamo exporter (default), or TorchScript.")
    ] = None,
    optimize: Annotated[
        bool | None, typer.Option("--optimize/--no-optimize", help="ONNX: run the graph optimizer (default: on).")
    ] = None,
    atol: Annotated[float | None, typer.Option(help="Parity: max abs error relative to output scale.")] = None,
    min_cosine: Annotated[float | None, typer.Option(help="Parity: minimum cosine vs torch per output.")] = None,
    arch: Annotated[
        list[str] | None, typer.Option("--arch", help="Architecture override KEY=VALUE, repeatable (num_classes=10).")
    ] = None,
    overwrite: OverwriteOpt = False,
    no_cache: NoCacheOpt = False,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Export a zoo model: eval + fuse, export, optimize, check, and parity vs torch on several inputs.

    Example: edgeformer export efficientformer_l1 --out build/l1 --dynamic-batch
    """
    from ..export import build_config, export

    setup_logging(verbose)
    dynamo = None if exporter is None else exporter is Exporter.dynamo
    given = dict(
        opset=opset,
        batch=batch,
        dynamic_batch=dynamic_batch,
        resolution=resolution,
        atol=atol,
        min_cosine=min_cosine,
        optimize=optimize,
        dynamo=dynamo,
    )
    # the format's table builds its config: a flag it does not take is an error, never silently dropped
    config = build_config(fmt, **{k: v for k, v in given.items() if v is not None})
    out = out or Path(f"{model}-{fmt}")
    with console.status(f"exporting {model} to {fmt}…", spinner="dots"):
        artifact = export(
            model,
            fmt=fmt,
            out=out,
            config=config,
            checkpoint=checkpoint,
            overwrite=overwrite,
            cache=None if no_cache else USE_DEFAULT_CACHE,
            **parse_overrides(arch),
        )
    if json_out:
        print_json({"artifact": str(artifact.path), "manifest": artifact.manifest.to_dict()})
        return
    console.print(f"[green]✓[/green] {artifact.summary()}")
    parity = artifact.manifest.parity
    rows = [
        (name, f"{o.max_abs or 0:.2e}", f"{o.max_rel or 0:.2e}", f"{o.cosine or 0:.6f}")
        for name, o in (parity.outputs if parity is not None else {}).items()
    ]
    if rows:
        console.print(table("parity vs torch (worst over samples)", ("output", "max abs", "max rel", "cosine"), rows))
