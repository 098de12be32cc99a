"""Do small models pay for INT8 on ORT CPU? FP32 vs INT8 interleaved, with the per-op-type breakdown of each.

Issue 15.5: measured interleaved, INT8 ran *slower* than FP32 on shvit_s1 (ratio 1.04): small models are
overhead-bound, and Q/DQ and layout work can eat what the few MACs save. For each model this script

* exports it (random weights, published resolution) and calibrates once (synthetic inputs: speed only);
* writes three models from the same ranges: ``fp32`` (the pre-processed graph), ``int8`` (the current
  :func:`~edgeformer.quant.recipe.default_plan`), and ``int8-unfolded`` (the same plan without the Relus it
  folds into their producers, i.e. the recipe before that change);
* times them together with :func:`edgeformer.profiling.interleave.interleave` (rotating rounds, ORT CPU,
  ``--threads`` intra-op threads, spinning off, every session kept open), and reports each INT8 variant's
  **paired** ratio to FP32 with its bootstrap interval (INT8/FP32 < 1: INT8 faster; the goal is <= 1/1.3);
* profiles each model with ORT's profiler (:func:`edgeformer.profiling.per_op.profile_ops`) and groups kernel
  time by category: ``compute`` (conv / matmul / gemm kernels, float or integer), ``layout`` (transpose,
  reshape, concat, split, slice, NCHWc reorders), ``qdq`` (QuantizeLinear / DequantizeLinear) and ``other``
  (elementwise, norms, softmax, pooling).

The load average is printed with the figures: the machine is shared, and interleaving is what keeps the ratios
usable under load (their intervals say how usable). Run::

    python benchmarks/int8_small.py shvit_s1 shvit_s4 --threads 2 --json int8_small.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeformer import export
from edgeformer.artifact import Artifact
from edgeformer.profiling.interleave import Contender, InterleaveConfig, interleave
from edgeformer.profiling.per_op import profile_ops
from edgeformer.quant import QuantConfig, SearchConfig, calibrate, default_plan, write_qdq
from edgeformer.quant.timing import ort_session

COMPUTE = {
    "Conv", "FusedConv", "QLinearConv", "ConvInteger", "NhwcConv", "NhwcFusedConv", "MatMul", "FusedMatMul",
    "MatMulInteger", "MatMulIntegerToFloat", "QLinearMatMul", "DynamicQuantizeMatMul", "Gemm", "QGemm",
}  # fmt: skip
LAYOUT = {
    "Transpose", "Reshape", "Concat", "QLinearConcat", "Split", "Slice", "ReorderInput", "ReorderOutput",
    "Squeeze", "Unsqueeze", "Flatten", "Gather", "Identity", "Expand",
}  # fmt: skip
QDQ = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}


def category(op_type: str) -> str:
    if op_type in COMPUTE:
        return "compute"
    if op_type in LAYOUT:
        return "layout"
    if op_type in QDQ:
        return "qdq"
    return "other"


def build(name: str, folder: Path) -> tuple[dict[str, Path], dict[str, np.ndarray], dict[str, Any]]:
    """Export ``name``, calibrate once, write the three variants; the feeds to time them on and plan figures."""
    fp32 = export(name, fmt="onnx", out=folder / "fp32-artifact", overwrite=True)
    config = QuantConfig(search=SearchConfig(enabled=False))
    cal = calibrate(
        fp32.model_path,
        "synthetic",
        inputs=fp32.manifest.inputs,
        preprocessing=fp32.manifest.preprocessing,
        config=config,
        workdir=folder,
    )
    pre = onnx.load(str(cal.model_path))
    plan = default_plan(pre, config)
    types = {n.name: n.op_type for n in pre.graph.node}
    folded = [n for n in plan.nodes_to_quantize if types[n] in ("Relu", "Clip")]
    paths = {
        "fp32": cal.model_path,
        "int8": write_qdq(cal.model_path, cal.ranges, plan, config, folder / "int8.onnx"),
        "int8-unfolded": write_qdq(
            cal.model_path, cal.ranges, plan.without(folded, "benchmark: unfolded"), config, folder / "unfolded.onnx"
        ),
    }
    spec = fp32.manifest.inputs[0]
    shape = [d if isinstance(d, int) else 1 for d in spec.shape]
    feeds = {spec.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    return paths, feeds, {"quantized_nodes": len(plan.nodes_to_quantize), "folded_activations": len(folded)}


def opener(path: Path, feeds: dict[str, np.ndarray], threads: int):
    def open_():
        session = ort_session(path, threads)  # the placement search's settings: spin-waiting off
        return (lambda: session.run(None, feeds)), (lambda: None)

    return open_


def breakdown(path: Path, feeds: dict[str, np.ndarray], threads: int, runs: int) -> dict[str, Any]:
    ops = profile_ops(Artifact.load(path), feeds, warmup=10, runs=runs, threads=threads)
    cats: dict[str, float] = defaultdict(float)
    for o in ops.op_types:
        cats[category(o.op_type)] += o.per_run_us
    total = sum(cats.values()) or 1.0
    return {
        "kernel_us_per_run": round(ops.kernel_us_per_run, 1),
        "run_us_per_run": round(ops.run_us_per_run, 1),
        "categories": {k: {"us": round(v, 1), "pct": round(100 * v / total, 1)} for k, v in sorted(cats.items())},
        "op_types": [
            {"op_type": o.op_type, "category": category(o.op_type), "nodes": o.nodes, "us": round(o.per_run_us, 1)}
            for o in ops.op_types
        ],
    }


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"int8-small-{name}-") as tmp:
        paths, feeds, plan = build(name, Path(tmp))
        config = InterleaveConfig(rounds=args.rounds, min_rounds=min(5, args.rounds), round_time_s=args.round_time)
        load_before = os.getloadavg()
        res = interleave([Contender(k, opener(p, feeds, args.threads)) for k, p in paths.items()], config)
        load_after = os.getloadavg()
        rows = {r.name: r.to_dict() for r in res.rows}
        ratios = {k: res.ratio(k, "fp32").to_dict() for k in paths if k != "fp32"}
        per_op = {k: breakdown(p, feeds, args.threads, args.profile_runs) for k, p in paths.items()}
    return {
        "model": name,
        "threads": args.threads,
        "plan": plan,
        "rows": rows,
        "ratio_vs_fp32": ratios,  # INT8 / FP32, paired by round
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in load_after],
        "per_op": per_op,
    }


def print_result(r: dict[str, Any]) -> None:
    print(
        f"\n{r['model']} ({r['threads']} threads; load avg {r['loadavg_before'][0]:.2f} -> {r['loadavg_after'][0]:.2f})"
    )
    print(f"  {'model':14s} {'p50 ms':>8s} {'95% CI':>17s}  {'INT8/FP32 [95% CI]':>24s} {'speed-up':>8s}")
    for name, row in r["rows"].items():
        ci = f"[{row['ci_low_ms']:.3f}, {row['ci_high_ms']:.3f}]"
        ratio = r["ratio_vs_fp32"].get(name)
        paired = f"{ratio['ratio']:.3f} [{ratio['low']:.3f}, {ratio['high']:.3f}]" if ratio else "-"
        speedup = f"{1 / ratio['ratio']:.2f}x" if ratio else "-"
        print(f"  {name:14s} {row['p50_ms']:8.3f} {ci:>17s}  {paired:>24s} {speedup:>8s}")
    print(f"  per-op kernel time by category, us/run (% of kernels), {r['threads']} threads, ORT profiler:")
    cats = ("compute", "layout", "qdq", "other")
    print(f"  {'model':14s} " + " ".join(f"{c:>16s}" for c in cats) + f" {'kernels':>9s}")
    for name, b in r["per_op"].items():
        cells = [b["categories"].get(c, {"us": 0.0, "pct": 0.0}) for c in cats]
        print(
            f"  {name:14s} "
            + " ".join(f"{c['us']:9.0f} ({c['pct']:4.1f}%)" for c in cells)
            + f" {b['kernel_us_per_run']:9.0f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=["shvit_s1", "shvit_s4"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--round-time", type=float, default=0.3, help="seconds per model per round")
    ap.add_argument("--profile-runs", type=int, default=50)
    ap.add_argument("--json", type=Path, default=Path("int8_small.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = []
    for name in args.models:
        r = measure(name, args)
        print_result(r)
        results.append(r)
    args.json.write_text(json.dumps({"results": results}, indent=1) + "\n", encoding="utf-8")
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
