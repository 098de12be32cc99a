"""``edgeformer quantize``: calibrated INT8 that is checked for fidelity and speed on the target."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
from ..quant import QuantConfig, SearchConfig, quantize
from ..quant.fallback import summary_line as fallback_summary
from ..quant.plan import load_plan
from ..quant.timing import Speedup
from ..steps import USE_DEFAULT_CACHE
from .common import (
    ArtifactArg,
    JsonOpt,
    NoCacheOpt,
    OutOpt,
    OverwriteOpt,
    PresetOpt,
    VerboseOpt,
    command,
    console,
    print_json,
    setup_logging,
    table,
)


@command
def quantize_cmd(
    artifact: ArtifactArg,
    calib: Annotated[
        str,
        typer.Option(help="Calibration data: image or wav folder, .npy/.npz, or 'synthetic' (pipeline checks only)."),
    ],
    method: Annotated[str, typer.Option(help="Range method: minmax, entropy or percentile.")] = "minmax",
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor", help="Weight scales.")] = True,
    preset: PresetOpt = "ort-cpu",
    calib_size: Annotated[int, typer.Option(min=1, help="Calibration samples drawn (seeded).")] = 128,
    on_bad_sample: Annotated[str, typer.Option(help="Unreadable calibration sample: fail or skip (counted).")] = "fail",
    too_few_samples: Annotated[
        str, typer.Option(help="Fewer samples than entropy/percentile need: fail, or fall back to minmax (noted).")
    ] = "fail",
    eval_data: Annotated[
        str | None, typer.Option("--eval", help="Labelled data (class folders or .npz x/y) for the accuracy budget.")
    ] = None,
    max_drop: Annotated[float | None, typer.Option(help="Accepted top-1 drop in points (needs --eval).")] = None,
    search: Annotated[
        bool | None,
        typer.Option(
            "--search/--no-search",
            help="Placement search (on by default): keep in float the node groups that are not faster quantized, "
            "timed against each other until the difference is beyond the noise. Timings decide, so two runs may "
            "differ; --no-search uses the default plan and is byte-deterministic.",
            show_default=False,
        ),
    ] = None,
    plan: Annotated[
        Path | None,
        typer.Option(
            "--plan",
            help="Build exactly this placement, no search: a plan.json, or a quantized artifact folder holding one "
            "(every quantize writes it). With the same input, --calib and flags as the run it came from, the "
            "model.onnx is byte-identical to that run's.",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of calibration sampling.")] = 0,
    out: OutOpt = None,
    overwrite: OverwriteOpt = False,
    no_cache: NoCacheOpt = False,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Quantize an FP32 ONNX artifact to INT8 (QDQ), keeping in float what costs accuracy or speed.

    Deterministic (byte-identical model.onnx for the same input, data and flags): seeded calibration, the
    default plan (--no-search) and --plan. Not deterministic: the placement search (the default), which
    follows measured timings; the plan it chose is saved as plan.json in the artifact, and --plan rebuilds it.
    When the delivered INT8 model is slower than FP32 beyond the timing's interval, one line says so.
    Fidelity: the worst held-out cosine vs FP32 must reach 0.999 (0.9 with --no-search); below it, the fewest,
    most sensitive ops stay float, and one line lists them with their latency cost; exit 6 names them when even
    every op but one in float misses the bar.

    \b
    Examples:
      edgeformer quantize build/l1 --calib images/ --out build/l1-int8
      edgeformer quantize build/l1 --calib images/ --out build/l1-again --plan build/l1-int8   # same bytes
      edgeformer quantize build/kws --calib wavs/ --eval heldout.npz --max-drop 0.5
      edgeformer quantize build/l1 --calib images/ --preset tensorrt   # symmetric, for TensorRT
    """
    setup_logging(verbose)
    if max_drop is not None and eval_data is None:
        raise ConfigError("--max-drop needs --eval (labelled data to measure the drop on).")
    if plan is not None and (search or eval_data is not None):
        raise ConfigError(
            "--plan builds the given placement without searching: drop --search"
            + (" and --eval/--max-drop (the accuracy budget searches too)." if eval_data is not None else ".")
        )
    given = load_plan(plan) if plan is not None else None  # a bad file fails before any work
    config = QuantConfig.for_target(
        preset,
        method=method,
        per_channel=per_channel,
        calib_size=calib_size,
        on_bad_sample=on_bad_sample,
        too_few_samples=too_few_samples,
        seed=seed,
        # with --plan the search settings stay as given (default: on) though nothing is searched: they are part of
        # the model file's embedded manifest, which must match the run the plan came from
        search=SearchConfig(enabled=search is not False),
    )
    out = out or Path(f"{str(artifact).rstrip('/')}-int8")
    with console.status("calibrating and quantizing…", spinner="dots"):
        # the same call as the Python API: the CLI only builds the config
        result = quantize(
            artifact,
            config,
            calib=calib,
            out=out,
            overwrite=overwrite,
            eval_data=eval_data,
            max_drop=max_drop,
            cache=None if no_cache else USE_DEFAULT_CACHE,
            plan=given,
        )
    if json_out:
        print_json({"artifact": str(result.path), "manifest": result.manifest.to_dict()})
        return
    console.print(f"[green]✓[/green] {result.summary()}")
    calib, fidelity = result.manifest.calibration, result.manifest.fidelity
    if calib:  # skips and a method fallback change what the ranges rest on: never leave them to the log alone
        method = calib.method
        if calib.method_requested != method:
            method = f"{method} (fallback from {calib.method_requested})"
        skipped = calib.skipped + calib.holdout_skipped
        console.print(
            f"calibration: {calib.used} sample(s) from {calib.source}, method {method}"
            + (f", {skipped} unreadable sample(s) skipped" if skipped else ""),
            markup=False,
            soft_wrap=True,
        )
    if line := fallback_summary(result.manifest.extra.get("fallback")):  # ops kept float to meet the cosine bar
        console.print(line, markup=False, soft_wrap=True)
    shown = fidelity.to_dict() if fidelity is not None else {}
    rows = [(k, v) for k, v in shown.items() if v is not None and not isinstance(v, (dict, list))]
    if rows:
        console.print(table("fidelity vs FP32", ("metric", "value"), rows))
    if line := slower_line(result.manifest.extra):
        console.print(line, markup=False, soft_wrap=True)
    report = result.path / "quant_report.md"
    if report.is_file():
        console.print(f"report: {report}")


def slower_line(extra: dict) -> str | None:
    """The one line saying the delivered INT8 model is slower than FP32 beyond the interval (None otherwise)."""
    raw = (extra.get("placement") or {}).get("speedup")
    if not raw:
        return None
    speedup = Speedup.from_dict(raw, where="manifest extra.placement.speedup")
    if not speedup.int8_slower:
        return None
    return (
        f"! INT8 is slower than FP32 here: {speedup.describe()} (fp32 {speedup.fp32_ms:.3f} ms, int8 "
        f"{speedup.int8_ms:.3f} ms); deploy the FP32 model on this target, or see the report for the groups."
    )
