"""``edgeformer profile``: latency of an artifact on this device."""

from __future__ import annotations

from typing import Annotated

import typer

from ..artifact import Artifact
from ..profiling import ProfileConfig, profile
from ..runtimes.ort import probe_in_subprocess
from .common import (
    ArtifactArg,
    BackendOpt,
    BatchOpt,
    JsonOpt,
    MinTimeOpt,
    ResolutionOpt,
    ThreadsOpt,
    VerboseOpt,
    WarmupOpt,
    command,
    console,
    fmt_ms,
    print_json,
    setup_logging,
    table,
)


@command
def profile_cmd(
    artifact: ArtifactArg,
    backend: BackendOpt = "auto",
    threads: ThreadsOpt = None,
    batch: BatchOpt = 1,
    resolution: ResolutionOpt = None,
    warmup: WarmupOpt = 10,
    runs: Annotated[int | None, typer.Option(min=1, help="Exact number of timed calls (default: --min-time).")] = None,
    min_time: MinTimeOpt = 2.0,
    per_op: Annotated[bool, typer.Option("--per-op", help="Breakdown by op type and node (ORT profiler).")] = False,
    top: Annotated[int, typer.Option("--top", min=1, help="Rows of the per-node table.")] = 15,
    isolate: Annotated[
        bool, typer.Option(help="Load the model once in a child process first, so a native crash cannot take us down.")
    ] = True,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Time an artifact: p50/p90/p99, throughput, stability, memory, size, and the device it ran on.

    Example: edgeformer profile build/l1 --threads 2 --per-op
    """

    setup_logging(verbose)
    config = ProfileConfig(
        warmup=warmup,
        runs=runs,
        min_time_s=min_time,
        threads=threads,
        batch=batch,
        resolution=resolution,
        per_op=per_op,
        top_n=top,
    )
    art = Artifact.load(artifact)
    if isolate and backend in ("auto", "ort") and art.format == "onnx":
        probe_in_subprocess(art.model_path)
    with console.status(f"profiling {art.manifest.model_name} on {backend}…", spinner="dots"):
        result = profile(art, config, backend=backend)
    if json_out:
        print_json(result)
        return
    lat = result.latency
    rows = [
        ("model", art.summary()),
        ("device", result.device.label),
        ("runs", f"{lat.runs} ({lat.stop_reason}), warm-up {len(lat.warmup_ms)}"),
        ("p50 / p90 / p99 ms", f"{fmt_ms(lat.p50_ms)} / {fmt_ms(lat.p90_ms)} / {fmt_ms(lat.p99_ms)}"),
        ("mean ± std ms", f"{fmt_ms(lat.mean_ms)} ± {fmt_ms(lat.std_ms)}"),
        ("throughput", f"{lat.throughput:.1f} items/s (batch {lat.batch})"),
        ("stable", "yes" if lat.stable else f"NO — {lat.unstable_reason}"),
        ("peak RSS MB", f"{result.peak_rss_mb:.0f}"),
        ("size MB", f"{result.size_bytes / 1e6:.2f}"),
    ]
    console.print(table("profile", ("metric", "value"), rows))
    if result.per_op is not None:
        console.print(result.per_op.to_markdown(top))
