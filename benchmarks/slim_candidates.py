"""Slimming candidates built one at a time (the default) vs as Ray tasks: wall time of one batch.

The batch is what ``slim`` builds for each budget: the seven uniform-width candidates of a trained reference
model (export, and quantize for ``--precision int8``), not scored. Ray runs on a local instance with
``--ray-cpus`` CPUs (its start-up is timed apart); the builds alternate, local first, ``--repeats`` times each.
The artifacts of both are checked equal (the graph without the embedded manifest).

Usage::

    python benchmarks/slim_candidates.py --precision int8 --json slim_candidates.json

Timings are printed and written, never asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import onnx
from rich.console import Console
from rich.table import Table

from edgeformer.agent import RayExecutor
from edgeformer.artifact import Artifact
from edgeformer.models.reference import load_reference, read_reference_meta
from edgeformer.nas import SearchSpace
from edgeformer.nas.candidates import CandidateJob, build_candidates, candidate_executor
from edgeformer.nas.data import reference_data
from edgeformer.nas.evaluate import Evaluator
from edgeformer.nas.search import uniform
from edgeformer.nas.slim import UNIFORM_FRACTIONS


def jobs(model: str, precision: str) -> list[CandidateJob]:
    space = SearchSpace.of(model)
    parent, _ = load_reference(model)
    data = reference_data(model)
    evaluate = Evaluator(parent, data)
    x, _ = data.train(0)
    return [
        CandidateJob(
            name=f"u{j}",
            module=evaluate.child(uniform(space, f)),
            zoo_model=space.zoo_model,
            input_spec=read_reference_meta(model).input,
            example=data.val[0][:1].copy(),
            precision=precision,
            backend="ort",
            calib=x[:128] if precision == "int8" else None,
        )
        for j, f in enumerate(UNIFORM_FRACTIONS)
    ]


def graph_sha(path: Path) -> str:
    m = onnx.load(Artifact.load(path).model_path)
    m.ClearField("metadata_props")
    return hashlib.sha256(m.SerializeToString()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="digits_shvit")
    ap.add_argument("--precision", default="int8", choices=("fp32", "int8"))
    ap.add_argument("--ray-cpus", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path, default=Path("slim_candidates.json"))
    args = ap.parse_args()
    import ray

    batch = jobs(args.model, args.precision)
    started = time.perf_counter()
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_start_s = time.perf_counter() - started
    wall: dict[str, list[float]] = {"local": [], "ray": []}
    shas: dict[str, list[str]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="slim-candidates-") as t:
            for k in range(args.repeats):
                for name, ex in (("local", candidate_executor()), ("ray", RayExecutor())):
                    start = time.perf_counter()
                    built = build_candidates(batch, ex, Path(t) / f"{name}{k}")
                    wall[name].append(time.perf_counter() - start)
                    shas[name] = [graph_sha(p) for p, _ in built]
    finally:
        ray.shutdown()
    result = {
        "model": args.model,
        "precision": args.precision,
        "candidates": len(batch),
        "cpus": len(os.sched_getaffinity(0)),
        "ray_cpus": args.ray_cpus,
        "ray_start_s": ray_start_s,
        "wall_s": wall,
        "speedup": statistics.median(wall["local"]) / statistics.median(wall["ray"]),
        "same_artifacts": shas["local"] == shas["ray"],
        "loadavg": os.getloadavg(),
    }
    args.json.write_text(json.dumps(result, indent=1))
    t = Table(title=f"{len(batch)} {args.model} {args.precision} candidates, one batch", title_justify="left")
    for col in ("executor", "wall s (median)", "runs"):
        t.add_column(col)
    for name in ("local", "ray"):
        t.add_row(name, f"{statistics.median(wall[name]):.1f}", ", ".join(f"{w:.1f}" for w in wall[name]))
    console = Console(width=120)
    console.print(t)
    console.print(
        f"ray / local: {result['speedup']:.2f}x faster; Ray start-up {ray_start_s:.1f} s (not in the figure); "
        f"same artifacts: {result['same_artifacts']}"
    )


if __name__ == "__main__":
    main()
