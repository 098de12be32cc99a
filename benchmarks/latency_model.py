"""How well per-device latency tables predict whole sub-networks, against MACs- and params-linear baselines.

For each model and precision: build (or resume) the latency table on ORT CPU, then validate it on held-out seeded
sub-networks timed whole, interleaved. Reported per table: share of predictions within ±5 % and ±10 %, MAPE,
Kendall τ and the timing noise, for the table + correction and for the two baselines fitted on the same
calibration timings; plus how long the build took. The goal on a 2-core CPU: >= 95 % within ±10 %, τ >= 0.9 and
better than both baselines on every metric.

Usage::

    python benchmarks/latency_model.py --models efficientformer_l1 shvit_s4 --precisions fp32 int8 \
        --samples 20 --threads 2 --tables /tmp/tables --json latency_model.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

from edgeformer.nas import SearchSpace, build_table, read_table, validate
from edgeformer.nas.validate import PREDICTORS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["efficientformer_l1", "shvit_s4"])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--whole", type=int, default=8, help="whole models timed for the correction")
    ap.add_argument("--tables", type=Path, default=Path("latency-tables"))
    ap.add_argument("--json", type=Path, default=Path("latency_model.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    results = []
    for model in args.models:
        for precision in args.precisions:
            path = args.tables / f"{model}-ort-{precision}-t{args.threads}.json"
            t0 = time.perf_counter()
            build_table(
                SearchSpace.of(model),
                "ort",
                precision,
                args.threads,
                out=path,
                whole_models=args.whole,
                progress=lambda d, t, w, m=model, p=precision: print(f"  {m} {p}: {d}/{t} {w}", end="\r"),
            )
            build_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            report = validate(path, args.samples, args.seed)
            val_s = time.perf_counter() - t0
            table = read_table(path)
            print(
                f"\n{report.to_markdown()}\nbuild {build_s:.0f} s (resumed builds count only what was left) · "
                f"{len(table.entries)} blocks · validation {val_s:.0f} s · correction: {table.correction.fitted_on}\n"
            )
            results.append(
                {
                    "model": model,
                    "precision": precision,
                    "build_s": build_s,
                    "validate_s": val_s,
                    "entries": len(table.entries),
                    "report": report.to_dict(),
                    "correction": table.correction.to_dict() if table.correction else None,
                }
            )
    print("| model | precision | predictor | ±5% | ±10% | MAPE | τ | noise | goal met |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        m = r["report"]["metrics"]
        t = m["table"]
        beats = all(
            t["within_10"] >= m[b]["within_10"]
            and t["within_5"] >= m[b]["within_5"]
            and t["mape"] <= m[b]["mape"]
            and t["kendall_tau"] >= m[b]["kendall_tau"]
            for b in ("macs", "params")
        )
        goal = t["within_10"] >= 0.95 and t["kendall_tau"] >= 0.9 and beats
        for k in PREDICTORS:
            v = m[k]
            print(
                f"| {r['model']} | {r['precision']} | {k} | {100 * v['within_5']:.0f}% | {100 * v['within_10']:.0f}% | "
                f"{v['mape']:.2f}% | {v['kendall_tau']:.3f} | {100 * r['report']['noise_median']:.1f}% | "
                f"{'yes' if goal else 'no'} |"
                if k == "table"
                else f"| | | {k} | {100 * v['within_5']:.0f}% | {100 * v['within_10']:.0f}% | {v['mape']:.2f}% | "
                f"{v['kendall_tau']:.3f} | | |"
            )
    args.json.write_text(json.dumps({"threads": args.threads, "load": os.getloadavg(), "results": results}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
