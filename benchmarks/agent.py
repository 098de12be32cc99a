"""The device agent, measured: remote vs local profiling, the agent's footprint, and a 2-agent fleet's speed-up.

1. **Overhead** — ``edgeformer profile ART`` and ``edgeformer profile ART --device agent://127.0.0.1:…`` (a job
   in the agent's child process), taking turns for ``--rounds`` rounds (``--cpu N``: all of it on one core); the
   figures are the median of the rounds' remote/local p50 ratios and of each side's p50s. The commands' wall
   times (process start-up, upload check, job process start-up) are listed apart.
2. **Footprint** — ``edgeformer agent serve`` from a base (torch-free) install: start-up time to the first
   answer of ``/v1/health`` and to ``/v1/info`` (the device card, read in a child at start), and the idle RSS of
   the agent's process a few seconds later. ``--base-venv DIR`` uses an existing base venv; otherwise one is built
   in a temporary folder with ``pip install -c constraints.txt .`` (like ``tests/test_device_install.py``).
3. **Fleet speed-up** — the same batch of profiling jobs (``--jobs`` distinct models, ``--job-runs`` timed runs
   each, one thread) through a fleet of one agent, then of two, each agent pinned to its own core
   (``sched_setaffinity``); the figure is wall time 1 agent / 2 agents.
4. **Table build speed-up** — ``edgeformer latency build MODEL --fleet F`` building one latency table (every block
   and 4 whole models, one thread, no step cache) with a fleet of one agent, then two of one label, each pinned
   to its own core, alternating ``--table-repeats`` times; the fleet build splits the table into one shard per
   agent. The builds' exports run here, unpinned, on the same cores: the figure is the whole job's, as a user
   with agents on the build machine would see it (on real boards the export and the timing use separate CPUs).

Usage::

    python benchmarks/agent.py --json agent.json
    python benchmarks/agent.py --artifact build/l1 --rounds 7 --base-venv /tmp/base-venv

Timings are printed and written, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import psutil
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console
from rich.table import Table

from edgeformer.agent import Fleet, FleetAgent, LocalExecutor
from edgeformer.artifact import Artifact, ArtifactWriter, Manifest, TensorSpec
from edgeformer.profiling import ProfileConfig, device_card

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "benchmark-token-0123456789abcdef"
console = Console(width=120)


# --- agents ---------------------------------------------------------------------------------------------
class Agent:
    """``edgeformer agent serve`` from ``exe`` on a free loopback port, optionally pinned to one CPU."""

    def __init__(self, exe: str, store: Path, cpu: int | None = None) -> None:
        self.log = store.with_suffix(".log")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env |= {"EDGEFORMER_AGENT_TOKEN": TOKEN, "OMP_NUM_THREADS": "1"}
        pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        self.started = time.perf_counter()
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [exe, "agent", "serve", "--port", "0", "--store", str(store)],
                stdout=out,
                stderr=out,
                env=env,
                preexec_fn=pin,
            )
        self.url = self._wait_for_port()

    def _wait_for_port(self, timeout: float = 120) -> str:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            found = re.findall(r"listening on (agent://\S+)", self.log.read_text(errors="replace"))
            if found:
                return found[0]
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text())
            time.sleep(0.005)
        raise TimeoutError(self.log.read_text())

    def seconds_until(self, path: str, timeout: float = 120) -> float:
        """Seconds from the start of the process to the first 200 answer of ``path``."""
        http = "http://" + self.url.removeprefix("agent://") + path
        req = urllib.request.Request(http, headers={"Authorization": f"Bearer {TOKEN}"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            try:
                with opener.open(req, timeout=timeout) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                time.sleep(0.005)
        raise TimeoutError(path)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# --- models ---------------------------------------------------------------------------------------------
def mlp_artifact(dest: Path, seed: int, width: int = 384, layers: int = 6) -> Artifact:
    """A MatMul/Relu stack (about a millisecond a run at batch 16 on one core): one latency-table entry's stand-in."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        inits.append(numpy_helper.from_array((rng.standard_normal((width, width)) * 0.05).astype(np.float32), f"w{i}"))
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"]), helper.make_node("Relu", [f"m{i}"], [f"r{i}"])]
        x = f"r{i}"
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with ArtifactWriter(dest, overwrite=True) as w:
        onnx.save(model, w.dir / "model.onnx")
        spec = (TensorSpec(name="x", shape=("batch", width), dtype="float32"),)
        out = (TensorSpec(name="y", shape=("batch", width), dtype="float32"),)
        return w.commit(
            Manifest(
                format="onnx",
                precision="fp32",
                model_name=f"mlp{seed}",
                main_file="model.onnx",
                inputs=spec,
                outputs=out,
                step="benchmark",
            )
        )


def default_artifact(tmp: Path) -> Artifact:
    """shvit_s1 at 224 px, exported here (needs the export extra); a bare MLP stack without it."""
    try:
        import edgeformer

        return edgeformer.export("shvit_s1", out=tmp / "shvit_s1")
    except Exception as e:  # no torch: the benchmark still runs, on a model that needs none
        console.print(f"export of shvit_s1 not possible here ({type(e).__name__}: {e}); using an MLP stack")
        return mlp_artifact(tmp / "mlp", seed=0, width=768)


# --- the three measurements -------------------------------------------------------------------------------
def overhead(art: Artifact, exe: str, tmp: Path, rounds: int, config: ProfileConfig, cpu: int | None) -> dict[str, Any]:
    """``edgeformer profile ART`` and ``edgeformer profile ART --device agent://…``, as a user runs them: each a
    fresh process here (so neither side profits from a warm process), the remote one timed in the agent's job."""
    pin = [] if cpu is None else ["taskset", "-c", str(cpu)]  # both sides, and the agent's jobs, on one core
    agent = Agent(exe, tmp / "store-overhead", cpu=cpu)
    flags = [
        "--json",
        "--warmup",
        str(config.warmup),
        "--min-time",
        str(config.min_time_s),
        *(["--threads", str(config.threads)] if config.threads else []),
    ]
    env = os.environ | {"EDGEFORMER_AGENT_TOKEN": TOKEN}

    def run(*extra: str) -> tuple[float, float]:
        start = time.perf_counter()
        proc = subprocess.run(
            [*pin, exe, "profile", str(art.path), *flags, *extra], capture_output=True, text=True, env=env, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
        return json.loads(proc.stdout)["latency"]["p50_ms"], time.perf_counter() - start

    try:
        run("--device", agent.url)  # uploads once, outside the figures
        local, remote, local_wall, remote_wall = [], [], [], []
        for r in range(rounds):  # take turns, the order flipping each round
            for side in ("local", "remote") if r % 2 == 0 else ("remote", "local"):
                if side == "local":
                    p50, wall = run()
                    local.append(p50)
                    local_wall.append(wall)
                else:
                    p50, wall = run("--device", agent.url)
                    remote.append(p50)
                    remote_wall.append(wall)
    finally:
        agent.stop()
    lp50, rp50 = statistics.median(local), statistics.median(remote)
    # each round's two figures were taken seconds apart: their ratio cancels load that drifts over the run
    ratios = [r / loc for r, loc in zip(remote, local, strict=True)]
    return {
        "paired_ratios": ratios,
        "median_paired_ratio": statistics.median(ratios),
        "model": art.summary(),
        "cpu": cpu,
        "config": config.to_dict(),
        "local_p50_ms": local,
        "remote_p50_ms": remote,
        "local_median_p50_ms": lp50,
        "remote_median_p50_ms": rp50,
        "remote_vs_local": rp50 / lp50,
        "local_command_wall_s": statistics.median(local_wall),
        "remote_command_wall_s": statistics.median(remote_wall),
    }


def base_venv(arg: Path | None, tmp: Path) -> str:
    if arg is not None:
        return str(arg / "bin" / "edgeformer")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "edgeformer", src / "edgeformer", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp / "base-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-compile"]
    subprocess.run([*pip, "-c", str(ROOT / "constraints.txt"), str(src)], check=True)
    return str(venv / "bin" / "edgeformer")


def footprint(exe: str, tmp: Path, starts: int, idle_s: float) -> dict[str, Any]:
    health, info, rss = [], [], []
    for i in range(starts):
        agent = Agent(exe, tmp / f"store-footprint-{i}")
        try:
            health.append(agent.seconds_until("/v1/health"))
            info.append(agent.seconds_until("/v1/info"))
            time.sleep(idle_s)
            rss.append(psutil.Process(agent.proc.pid).memory_info().rss / 2**20)
        finally:
            agent.stop()
    probe = subprocess.run(
        [str(Path(exe).with_name("python")), "-c", "import importlib.util as u; print(bool(u.find_spec('torch')))"],
        capture_output=True,
        text=True,
    )
    return {
        "edgeformer": exe,
        "torch_installed": probe.stdout.strip() == "True",
        "startup_to_health_s": health,
        "startup_to_info_s": info,
        "idle_rss_mib": rss,
        "median_startup_to_health_s": statistics.median(health),
        "median_startup_to_info_s": statistics.median(info),
        "median_idle_rss_mib": statistics.median(rss),
    }


def profile_job(agent: FleetAgent, item: tuple[str, ProfileConfig]) -> float:
    path, config = item
    return agent.client().profile(path, config).latency.p50_ms


def speedup(exe: str, tmp: Path, jobs: int, job_runs: int) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return {"skipped": f"needs 2 CPUs, this process may use {len(cpus)}"}
    arts = [mlp_artifact(tmp / f"job{i}", seed=100 + i) for i in range(jobs)]
    config = ProfileConfig(warmup=5, runs=job_runs, max_runs=job_runs, threads=1, batch=16)
    items = [(str(a.path), config) for a in arts]
    agents = [Agent(exe, tmp / f"store-fleet-{i}", cpu=cpus[i]) for i in range(2)]
    try:
        fleet = [FleetAgent(name=f"core{i}", url=a.url, label="cpu", token=TOKEN) for i, a in enumerate(agents)]
        for agent in fleet:  # uploads and warm-up outside the timed batches
            LocalExecutor(Fleet(agents=(agent,))).map(profile_job, items, device_for=lambda _: "cpu")
        wall = {}
        for n in (1, 2, 1, 2):  # twice each, alternating
            start = time.perf_counter()
            LocalExecutor(Fleet(agents=tuple(fleet[:n]))).map(profile_job, items, device_for=lambda _: "cpu")
            wall.setdefault(n, []).append(time.perf_counter() - start)
    finally:
        for a in agents:
            a.stop()
    one, two = statistics.median(wall[1]), statistics.median(wall[2])
    return {
        "jobs": jobs,
        "job_runs": job_runs,
        "cpus": cpus[:2],
        "wall_1_agent_s": wall[1],
        "wall_2_agents_s": wall[2],
        "speedup": one / two,
    }


def write_fleet(path: Path, agents: list[Agent]) -> Path:
    lines = []
    for i, a in enumerate(agents):
        lines += ["[[agents]]", f'name = "core{i}"', f'url = "{a.url}"', 'label = "cpu"', ""]
    path.write_text("\n".join(lines))
    return path


def table_speedup(exe: str, tmp: Path, model: str, width_step: int, repeats: int) -> dict[str, Any]:
    """``edgeformer latency build MODEL --fleet`` (one table, label "cpu") on 1 agent, then 2, alternating."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return {"skipped": f"needs 2 CPUs, this process may use {len(cpus)}"}
    agents = [Agent(exe, tmp / f"store-table-{i}", cpu=cpus[i]) for i in range(2)]
    env = {**os.environ, "EDGEFORMER_AGENT_TOKEN": TOKEN, "EDGEFORMER_NO_CACHE": "1"}
    flags = ["--width-step", str(width_step), "--threads", "1", "--whole", "4", "--rounds", "3", "--json"]
    wall: dict[int, list[float]] = {}
    entries: dict[int, int] = {}
    try:
        for k, n in enumerate([1, 2] * repeats):
            fleet = write_fleet(tmp / f"fleet{k}.toml", agents[:n])
            out = tmp / f"tables{k}"
            start = time.perf_counter()
            proc = subprocess.run(
                [exe, "latency", "build", model, "--fleet", str(fleet), "--out", str(out), *flags],
                capture_output=True,
                text=True,
                env=env,
            )
            wall.setdefault(n, []).append(time.perf_counter() - start)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr)
            entries[n] = len(json.loads((out / "cpu.json").read_text())["entries"])
    finally:
        for a in agents:
            a.stop()
    return {
        "model": model,
        "width_step": width_step,
        "entries": entries,
        "cpus": cpus[:2],
        "wall_1_agent_s": wall[1],
        "wall_2_agents_s": wall[2],
        "speedup": statistics.median(wall[1]) / statistics.median(wall[2]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifact", type=Path, help="artifact for the overhead figure (default: shvit_s1, exported)")
    ap.add_argument("--rounds", type=int, default=15, help="local/remote turns for the overhead figure")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cpu", type=int, help="pin the overhead figure's local and remote runs to this CPU")
    ap.add_argument("--min-time", type=float, default=1.0, help="timed seconds per profile")
    ap.add_argument("--base-venv", type=Path, help="an existing base (torch-free) venv for the footprint")
    ap.add_argument("--starts", type=int, default=3, help="agent start-ups for the footprint")
    ap.add_argument("--jobs", type=int, default=8, help="profiling jobs in the fleet batch")
    ap.add_argument("--job-runs", type=int, default=300, help="timed runs of each fleet job")
    ap.add_argument("--table-model", default="digits_shvit", help="model of the fleet table build")
    ap.add_argument("--table-width-step", type=int, default=16, help="width step of the fleet table build")
    ap.add_argument("--table-repeats", type=int, default=2, help="1-agent/2-agent build pairs")
    ap.add_argument("--only", default="overhead,footprint,speedup,table", help="which measurements, comma-separated")
    ap.add_argument("--json", type=Path, default=Path("agent.json"))
    args = ap.parse_args()
    only = set(args.only.split(","))

    results: dict[str, Any] = {"device": device_card(threads=args.threads).to_dict(), "loadavg": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as t:
        tmp = Path(t)
        here = shutil.which("edgeformer") or str(Path(sys.executable).with_name("edgeformer"))
        if "overhead" in only:
            art = Artifact.load(args.artifact) if args.artifact else default_artifact(tmp)
            config = ProfileConfig(warmup=10, min_time_s=args.min_time, threads=args.threads)
            results["overhead"] = overhead(art, here, tmp, args.rounds, config, args.cpu)
        if "footprint" in only:
            results["footprint"] = footprint(base_venv(args.base_venv, tmp), tmp, args.starts, idle_s=3.0)
        if "speedup" in only:
            results["speedup"] = speedup(here, tmp, args.jobs, args.job_runs)
        if "table" in only:
            results["table"] = table_speedup(here, tmp, args.table_model, args.table_width_step, args.table_repeats)
    results["loadavg_after"] = os.getloadavg()
    args.json.write_text(json.dumps(results, indent=1))
    console.print(table(results, args))
    console.print(f"written: {args.json}")


def table(results: dict[str, Any], args: argparse.Namespace) -> Table:
    t = Table(title=f"edgeformer agent · {results['device']['cpu_model']}", title_justify="left")
    for name in ("measure", "figure", "detail"):
        t.add_column(name, justify="right" if name == "figure" else "left")
    o, f, s, tb = (results.get(k) for k in ("overhead", "footprint", "speedup", "table"))
    if o:
        t.add_row("p50 remote / local", f"{o['median_paired_ratio']:.3f}", "median of the rounds' paired ratios")
        t.add_row(
            "median p50s",
            f"{o['remote_vs_local']:.3f}",
            f"{o['remote_median_p50_ms']:.3f} vs {o['local_median_p50_ms']:.3f} ms over {args.rounds} "
            f"interleaved rounds; {o['model']}",
        )
        t.add_row(
            "command wall, remote",
            f"{o['remote_command_wall_s']:.2f} s",
            f"`edgeformer profile --device`; local: {o['local_command_wall_s']:.2f} s",
        )
    if f:
        t.add_row(
            "start-up to /v1/health",
            f"{f['median_startup_to_health_s']:.2f} s",
            f"base install (torch installed: {f['torch_installed']}), median of {args.starts}",
        )
        t.add_row("start-up to /v1/info", f"{f['median_startup_to_info_s']:.2f} s", "device card read in a child")
        t.add_row("idle RSS", f"{f['median_idle_rss_mib']:.0f} MiB", "the agent's process, 3 s after start-up")
    if s:
        speedup_row(t, "fleet speed-up", s, "{jobs} jobs", "one core each")
    if tb:
        speedup_row(
            t, "table build speed-up", tb, "one {model} table ({entries[2]} blocks)", "one core each; exports unpinned"
        )
    return t


def speedup_row(t: Table, name: str, r: dict[str, Any], what: str, how: str) -> None:
    """A 1-agent vs 2-agent figure: the speed-up and both wall times (``what`` formatted with ``r``), or why it
    was skipped."""
    if "speedup" not in r:
        t.add_row(name, "—", r["skipped"])
        return
    one, two = statistics.median(r["wall_1_agent_s"]), statistics.median(r["wall_2_agents_s"])
    t.add_row(name, f"{r['speedup']:.2f}x", f"{what.format(**r)}: {one:.1f} s on 1 agent, {two:.1f} s on 2 ({how})")


if __name__ == "__main__":
    main()
