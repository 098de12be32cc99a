"""``edgeformer profile``: latency of an artifact on this device."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..agent import AgentClient, Fleet, FleetRow, fleet_profile, make_executor, resolve_token
from ..artifact import Artifact
from ..errors import ConfigError, PartialFailureError
from ..profiling import ProfileConfig, profile
from ..profiling.interleave import InterleaveConfig
from ..profiling.side_by_side import compare_artifacts
from ..runtimes import backend_for
from ..runtimes.isolation import probe_before_loading
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
    compare: Annotated[
        list[Path] | None,
        typer.Option(
            "--compare",
            help="Another artifact to time side by side with ARTIFACT (repeatable): rows take turns in --rounds "
            "rounds, each p50 with a 95 % interval, each ratio to ARTIFACT with its interval, and an A/A check.",
        ),
    ] = None,
    rounds: Annotated[
        int, typer.Option("--rounds", min=3, help="Rounds of --compare (time per row: --min-time).")
    ] = 10,
    device: DeviceOpt = None,
    token_file: TokenFileOpt = None,
    fleet: FleetOpt = None,
    every_agent: Annotated[
        bool,
        typer.Option(
            "--every-agent", help="With --fleet: a row for every agent, not one per label (no hand-over if one dies)."
        ),
    ] = False,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Time an artifact: p50/p90/p99, throughput, stability, memory, size, and the device it ran on.

    With --device agent://HOST:PORT it runs on that device's agent (the model is uploaded once); with --fleet
    FILE on one agent of every label of the fleet (--every-agent: on every agent), in one table.

    Examples:

      edgeformer profile build/l1 --threads 2 --per-op

      edgeformer profile build/l1 --device agent://pi5.local:8765 --token-file pi5.token

      edgeformer profile build/l1 --fleet fleet.toml --executor ray --ray-address auto

      edgeformer profile build/l1 --compare build/l1-int8 --compare build/l1-ort --threads 2

    With --compare the artifacts are timed together, taking turns (A B C, C A B, …: a fresh order each round), so load
    that comes and goes hits them alike; a row is called faster only when its ratio's interval excludes 1, and the first
    artifact is also timed as a second row (A/A): if the two disagree beyond their interval, the machine is too noisy to
    rank them.
    """

    setup_logging(verbose)
    if device is not None and fleet is not None:
        raise ConfigError("--device and --fleet are exclusive: one device, or one per label of the fleet.")
    if fleet is None and every_agent:
        raise ConfigError("--every-agent goes with --fleet FILE.")
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
    if compare:
        if device is not None or fleet is not None or per_op:
            raise ConfigError("--compare times here, whole models: drop --device/--fleet/--per-op, or profile apart.")
        _compare([art, *(Artifact.load(p) for p in compare)], backend, config, rounds, isolate, json_out)
        return
    if fleet is not None:
        fleet_ = Fleet.load(fleet).each_agent() if every_agent else Fleet.load(fleet)
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
        if isolate:  # onnxruntime for ONNX, OpenVINO for an IR; a refusal is left to the load, naming op and node
            probe_before_loading(art, backend_for(art, backend), refusal_ok=True)
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
        ("start-up ms", "-" if result.startup_ms is None else f"{result.startup_ms:.0f} (session + first call)"),
        ("peak RSS MB", f"{result.peak_rss_mb:.0f}"),
        ("size MB", f"{result.size_bytes / 1e6:.2f}"),
    ]
    console.print(table("profile", ("metric", "value"), rows))
    if result.per_op is not None:
        console.print(result.per_op.to_markdown(top))
        if latency_table is not None:
            print_measured_vs_predicted(result.per_op, art.manifest, latency_table)


def _compare(arts: list[Artifact], backend: str, config: ProfileConfig, rounds: int, isolate: bool, json_out: bool):
    """``--compare``: every artifact timed in turns, each held against the first; the verdict and the A/A check."""
    for a in arts:  # a model from elsewhere may crash the runtime: find out in a child process, not here
        if isolate:
            probe_before_loading(a, backend_for(a, backend), refusal_ok=True)
    cfg = InterleaveConfig(rounds=rounds, min_rounds=3, round_time_s=config.min_time_s / rounds, warmup=config.warmup)
    with console.status(f"timing {len(arts)} artifacts side by side…", spinner="dots"):
        result = compare_artifacts(
            arts,
            backend=backend,
            threads=config.threads,
            batch=config.batch,
            resolution=config.resolution,
            seed=config.seed,
            config=cfg,
        )
    if json_out:
        print_json(result)
        return
    body = [
        (
            ("★ " if r.name == result.verdict.star else "") + r.name,
            r.backend,
            f"{fmt_ms(r.p50_ms)} [{fmt_ms(r.ci_low_ms)}, {fmt_ms(r.ci_high_ms)}]",
            "1 (reference)" if r.vs_first is None else r.vs_first.describe(),
            "-" if r.startup_ms is None else f"{r.startup_ms:.0f}",
            "-" if r.memory_mb is None else f"{r.memory_mb:.0f}",
            f"{r.size_mb:.2f}",
        )
        for r in result.rows
    ]
    cols = ("artifact", "backend", "p50 ms [95 % CI]", "vs first [95 % CI]", "start ms", "RSS added MB", "size MB")
    console.print(table("profile --compare", cols, body))
    console.print(f"Timing: {result.timing}; {result.rows[0].timed_with}.", markup=False)
    if result.verdict.aa is not None:
        aa = result.verdict.aa
        console.print(f"A/A check: ratio {aa.describe()}, {'ok' if result.verdict.aa_ok else 'failed'}.", markup=False)
    console.print(f"Verdict: {result.verdict.message}", markup=False)


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
