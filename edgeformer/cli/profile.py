"""``edgeformer profile``: latency of an artifact on this device."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..agent import AgentClient, Fleet, FleetRow, fleet_profile, make_executor, resolve_token
from ..artifact import Artifact
from ..errors import ConfigError, PartialFailureError
from ..profiling import ProfileConfig, profile
from ..runtimes.ort import probe_in_subprocess
from .common import (
    ArtifactArg,
    BackendOpt,
    BatchOpt,
    DeviceOpt,
    ExecutorOpt,
    FleetOpt,
    JsonOpt,
    MinTimeOpt,
    RayAddressOpt,
    ResolutionOpt,
    ThreadsOpt,
    TokenFileOpt,
    VerboseOpt,
    WarmupOpt,
    command,
    console,
    fmt_ms,
    print_json,
    setup_logging,
    table,
)
from .latency import print_measured_vs_predicted


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
    latency_table: Annotated[
        Path | None,
        typer.Option(
            "--table",
            help="With --per-op: a latency table (`edgeformer latency build`); prints its predicted cost of each "
            "block beside the measured one.",
        ),
    ] = None,
    isolate: Annotated[
        bool, typer.Option(help="Load the model once in a child process first, so a native crash cannot take us down.")
    ] = True,
    device: DeviceOpt = None,
    token_file: TokenFileOpt = None,
    fleet: FleetOpt = None,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Time an artifact: p50/p90/p99, throughput, stability, memory, size, and the device it ran on.

    With --device agent://HOST:PORT it runs on that device's agent (the model is uploaded once); with --fleet
    FILE on one agent of every label of the fleet, in one table.

    Examples:

      edgeformer profile build/l1 --threads 2 --per-op

      edgeformer profile build/l1 --device agent://pi5.local:8765 --token-file pi5.token

      edgeformer profile build/l1 --fleet fleet.toml --executor ray --ray-address auto
    """

    setup_logging(verbose)
    if device is not None and fleet is not None:
        raise ConfigError("--device and --fleet are exclusive: one device, or one per label of the fleet.")
    if fleet is None and (executor != "local" or ray_address is not None):
        raise ConfigError("--executor and --ray-address drive fleet work; add --fleet FILE.")
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
    if fleet is not None:
        fleet_ = Fleet.load(fleet)
        status = f"profiling {art.manifest.model_name} on {len(fleet_.labels)} devices…"
        with console.status(status, spinner="dots"), make_executor(executor, fleet_, ray_address=ray_address) as ex:
            rows = fleet_profile(fleet_, artifact, config, executor=ex, backend=backend)
        _print_fleet(art, rows, json_out)
        return
    if device is not None:
        client = AgentClient(device, resolve_token(token_file=token_file))
        with console.status(f"profiling {art.manifest.model_name} on {device}…", spinner="dots"):
            result = client.profile(artifact, config, backend=backend)
    else:
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
        ("device", result.device.label + (f" ({device})" if device else "")),
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
        if latency_table is not None:
            print_measured_vs_predicted(result.per_op, art.manifest, latency_table)


def _print_fleet(art: Artifact, rows: list[FleetRow], json_out: bool) -> None:
    """One row per label: p50/p90/p99 and stability, or why that label has none; exit 7 when some failed."""
    if json_out:
        print_json([r.to_dict() for r in rows])
    else:
        body = []
        for r in rows:
            if r.result is None:
                body.append((r.label, "—", "failed", "", "", "", r.problem))
                continue
            lat = r.result.latency
            stable = "yes" if lat.stable else f"NO — {lat.unstable_reason}"
            cells = (fmt_ms(lat.p50_ms), fmt_ms(lat.p90_ms), fmt_ms(lat.p99_ms))
            body.append((r.label, r.agent, r.result.device.cpu_model, *cells, stable))
        t = table(f"profile {art.summary()}", ("device", "agent", "cpu", "p50 ms", "p90 ms", "p99 ms", "stable"), body)
        console.print(t)
    failed = [r for r in rows if r.error is not None]
    if failed and len(failed) == len(rows):
        raise failed[0].error
    if failed:
        raise PartialFailureError(
            f"{len(failed)} of {len(rows)} devices failed: " + "; ".join(f"{r.label}: {r.problem}" for r in failed)
        )
