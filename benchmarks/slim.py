"""Slimming to a device budget on trained, non-saturated parents: accuracy kept, uniform baseline beaten, budgets met.

For each reference model: build (or resume) its latency table on ORT CPU, time the parent, slim to budgets given as
fractions of the parent's measured p50 (default 0.6) with the greedy search (evolution run alongside for comparison),
fine-tune with distillation, and re-measure. Reported per model and budget: the parent's and the slimmed model's
test top-1, the uniformly width-scaled baseline's, measured vs predicted latency, whether the budget was met
(measured <= budget x 1.05), search time per budget, and which search found the better sub-network. Goals: at 0.6
of the parent's latency, lose <= 2 points and beat the uniform baseline by >= 1 point; >= 95 % of budgets met; search
<= 5 minutes per budget.

Usage::

    python benchmarks/slim.py --models clutter_shvit clutter_efficientformerv2 --fractions 0.6 --epochs 5 \\
        --threads 2 --work /tmp/slim-bench --json slim.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from edgeformer.models.reference import load_reference, read_reference_meta
from edgeformer.nas import SearchSpace, TimingConfig, build_table, slim
from edgeformer.nas.candidates import CandidateJob, export_candidate  # the same export the slimmed models get
from edgeformer.nas.data import reference_data
from edgeformer.nas.timing import time_artifacts


def parent_ms(model: str, threads: int) -> float:
    space = SearchSpace.of(model)
    data = reference_data(model)
    with tempfile.TemporaryDirectory() as tmp:
        job = CandidateJob(
            name="parent",
            module=load_reference(model)[0],
            zoo_model=space.zoo_model,
            input_spec=read_reference_meta(model).input,
            example=data.val[0][:1],
            precision="fp32",
            backend="ort",
        )
        path = export_candidate(job, Path(tmp))
        return time_artifacts([path], "ort", TimingConfig(threads=threads, rounds=7))[0].p50_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["clutter_shvit", "clutter_efficientformerv2"])
    ap.add_argument("--fractions", nargs="+", type=float, default=[0.6])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("slim-bench"))
    ap.add_argument("--json", type=Path, default=Path("slim.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rows = []
    for model in args.models:
        table = args.work / f"{model}-ort-fp32-t{args.threads}.json"
        t0 = time.perf_counter()
        build_table(SearchSpace.of(model), "ort", "fp32", args.threads, out=table)
        build_s = time.perf_counter() - t0
        p_ms = parent_ms(model, args.threads)
        budgets = [round(f * p_ms, 4) for f in args.fractions]
        out = args.work / f"{model}-slim"
        t0 = time.perf_counter()
        report = slim(
            model,
            table=table,
            budgets_ms=budgets,
            out=out,
            epochs=args.epochs,
            progress=lambda d, t, w, m=model: print(f"  {m}: {w}"[:150], end="\r"),
        )
        slim_s = time.perf_counter() - t0
        print()
        for b in report.budgets:
            s, u, p = b.slim, b.uniform, report.parent
            rows.append(
                {
                    "model": model,
                    "table_build_s": round(build_s),
                    "slim_s": round(slim_s),
                    "budget_ms": b.budget_ms,
                    "fraction": b.budget_ms / p_ms,
                    "parent_ms": p.measured_ms,
                    "parent_top1": p.top1,
                    "slim_ms": s.measured_ms,
                    "slim_pred_ms": s.predicted_ms,
                    "slim_top1": s.top1,
                    "uniform_ms": u.measured_ms,
                    "uniform_top1": u.top1,
                    "met": b.met,
                    "search_s": b.search_s,
                    "greedy_val": b.greedy_val,
                    "evolution_val": b.evolution_val,
                    "better": b.better_search,
                    "loss": p.top1 - s.top1,
                    "beats_uniform_by": s.top1 - u.top1,
                }
            )
    print(
        "| model | budget (× parent) | parent ms / top-1 | slimmed ms (pred) / top-1 | uniform ms / top-1 | "
        "met | loss | vs uniform | search s | better search |"
    )
    print("|---|---|---|---|---|---|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['budget_ms']:.3f} ms ({r['fraction']:.2f}) | {r['parent_ms']:.3f} / "
            f"{r['parent_top1']:.2f} | {r['slim_ms']:.3f} ({r['slim_pred_ms']:.3f}) / {r['slim_top1']:.2f} | "
            f"{r['uniform_ms']:.3f} / {r['uniform_top1']:.2f} | {'yes' if r['met'] else 'MISS'} | "
            f"{r['loss']:+.2f} | {r['beats_uniform_by']:+.2f} | {r['search_s']:.0f} | {r['better']} |"
        )
    met = sum(r["met"] for r in rows)
    print(f"budgets met: {met}/{len(rows)}")
    args.json.write_text(
        json.dumps({"threads": args.threads, "epochs": args.epochs, "load": os.getloadavg(), "rows": rows}, indent=2)
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
