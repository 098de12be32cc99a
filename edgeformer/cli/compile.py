"""``edgeformer compile``: an ONNX artifact to a target runtime (TensorRT, CoreML, OpenVINO, ORT)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..steps import USE_DEFAULT_CACHE
from .common import (
    ArtifactArg,
    JsonOpt,
    NoCacheOpt,
    OutOpt,
    OverwriteOpt,
    VerboseOpt,
    command,
    console,
    print_json,
    setup_logging,
)
from .export import parse_overrides


def _format_help() -> str:
    try:
        from ..compile import targets_help

        return "Artifact format to compile to. " + "; ".join(targets_help().splitlines())
    except Exception:  # --help must render even if a target module is broken
        return "Artifact format to compile to: tensorrt, coreml, openvino, ort."


@command
def compile_cmd(
    artifact: ArtifactArg,
    fmt: Annotated[str, typer.Option("--format", "-f", help=_format_help(), show_default=False)],
    precision: Annotated[str | None, typer.Option(help="fp32, fp16, bf16 or int8 (target-dependent).")] = None,
    out: OutOpt = None,
    min_batch: Annotated[int | None, typer.Option(help="TensorRT profile: smallest batch.")] = None,
    opt_batch: Annotated[int | None, typer.Option(help="TensorRT profile: batch to tune for.")] = None,
    max_batch: Annotated[int | None, typer.Option(help="TensorRT profile: largest batch.")] = None,
    workspace_mb: Annotated[int | None, typer.Option(help="TensorRT builder workspace limit (MiB).")] = None,
    timing_cache: Annotated[Path | None, typer.Option(help="TensorRT timing cache file (reused, updated).")] = None,
    nncf: Annotated[bool | None, typer.Option("--nncf/--no-nncf", help="OpenVINO int8 through NNCF.")] = None,
    calib: Annotated[str | None, typer.Option(help="Calibration data for NNCF int8 (folder, .npz, synthetic).")] = None,
    option: Annotated[
        list[str] | None, typer.Option("--set", help="Any other field of the target's config, KEY=VALUE (repeatable).")
    ] = None,
    overwrite: OverwriteOpt = False,
    no_cache: NoCacheOpt = False,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Compile an artifact for a target; fidelity vs the parent is checked wherever the target runs here.

    \b
    Examples:
      edgeformer compile build/l1 --format openvino --precision bf16
      edgeformer compile build/l1-int8 --format tensorrt --precision int8 --max-batch 8
      edgeformer compile build/l1 --format coreml --precision fp16
    """
    from ..compile import compile as compile_artifact

    setup_logging(verbose)
    given: dict[str, Any] = {
        "min_batch": min_batch,
        "opt_batch": opt_batch,
        "max_batch": max_batch,
        "workspace_mb": workspace_mb,
        "timing_cache": timing_cache,
        "nncf": nncf,
        "calib": calib,
    }
    options = {k: v for k, v in given.items() if v is not None} | parse_overrides(option)
    with console.status(f"compiling to {fmt}…", spinner="dots"):
        result = compile_artifact(
            artifact,
            target=fmt,
            precision=precision,
            out=out,
            overwrite=overwrite,
            cache=None if no_cache else USE_DEFAULT_CACHE,
            **options,
        )
    if json_out:
        print_json({"artifact": str(result.path), "manifest": result.manifest.to_dict()})
        return
    console.print(f"[green]✓[/green] {result.summary()}")
    fid = result.manifest.fidelity
    if fid is None:
        return
    if fid.skipped:
        console.print(f"fidelity vs parent: not measured here ({fid.skipped})", markup=False, soft_wrap=True)
    else:
        top1 = f", top-1 agreement {fid.top1_agreement:.3f}" if fid.top1_agreement is not None else ""
        worst = f"worst cosine {fid.cosine:.6f}" if fid.cosine is not None else f"unusable: {fid.problem}"
        console.print(f"fidelity vs parent: {worst}{top1} on {fid.samples} sample(s)", markup=False, soft_wrap=True)
