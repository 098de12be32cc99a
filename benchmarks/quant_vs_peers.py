"""INT8 on CPU, side by side: ORT FP32, ORT ``quantize_static`` defaults, edgeformer INT8, OpenVINO+NNCF INT8.

Not a test: a one-run comparison that prints a table and writes JSON. Run::

    python benchmarks/quant_vs_peers.py --out build/quant_vs_peers.json [--models shvit_s1 ...] [--skip-ov]

For each zoo model (random weights, published resolution, batch 1, ``--threads`` threads): p50 latency of
each variant (all variants take turns in short rounds, median of the rounds' p50s, ORT sessions without
spin-waiting), the ratio vs ORT FP32, and the worst cosine vs FP32 on held-out synthetic inputs. Then, for
the trained reference models in ``edgeformer/zoo_weights``, the top-1 drop of edgeformer INT8 on their
held-out split; and the wall time of export + quantize + profile of efficientformer_l1.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("quant_vs_peers")
MODELS = ("efficientformer_l1", "efficientformerv2_s1", "shvit_s1", "shvit_s4")


def ort_runner(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return lambda x: s.run(None, {name: x})[0]


def ov_int8_runner(fp32_onnx: Path, calib: np.ndarray, threads: int):
    import nncf
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(fp32_onnx))
    q = nncf.quantize(
        model,
        nncf.Dataset([calib[i : i + 1] for i in range(len(calib))]),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(calib),
    )
    compiled = core.compile_model(q, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    return lambda x: compiled(x)[0]


def timed(runners: dict, x: np.ndarray, rounds: int, runs: int) -> dict[str, float]:
    per: dict[str, list[float]] = {k: [] for k in runners}
    for f in runners.values():
        for _ in range(3):
            f(x)
    for r in range(rounds):
        for k in list(runners)[:: 1 if r % 2 == 0 else -1]:
            ts = []
            for _ in range(runs):
                t0 = time.perf_counter()
                runners[k](x)
                ts.append((time.perf_counter() - t0) * 1e3)
            per[k].append(statistics.median(ts))
    return {k: statistics.median(v) for k, v in per.items()}


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def compare_model(name: str, tmp: Path, args) -> dict:
    from edgeformer.bench.rows import quantize_static_defaults
    from edgeformer.export import export
    from edgeformer.models import get_spec
    from edgeformer.quant import QuantConfig, SearchConfig, quantize

    t0 = time.monotonic()
    fp32 = export(name, fmt="onnx", out=tmp / f"{name}-fp32", overwrite=True, cache=None)  # timed: never a cache hit
    shape = get_spec(name).input.shape(1)
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((args.calib, *shape[1:])).astype(np.float32)
    np.savez(tmp / f"{name}-calib.npz", **{fp32.manifest.inputs[0].name: calib})
    search = SearchConfig(threads=args.threads, time_budget_s=args.search_s, max_sensitivity_groups=0)
    int8 = quantize(
        fp32,
        QuantConfig(search=search),
        calib=tmp / f"{name}-calib.npz",
        out=tmp / f"{name}-int8",
        overwrite=True,
        cache=None,
    )
    t_quant = time.monotonic() - t0
    peer = quantize_static_defaults(fp32, tmp / f"{name}-calib.npz", tmp / f"{name}-static")
    runners = {
        "ort_fp32": ort_runner(fp32.model_path, args.threads),
        "ort_static_defaults": ort_runner(peer.model_path, args.threads),
        "edgeformer_int8": ort_runner(int8.model_path, args.threads),
    }
    if not args.skip_ov:
        try:
            runners["openvino_nncf_int8"] = ov_int8_runner(fp32.model_path, calib[: min(64, len(calib))], args.threads)
        except Exception as e:  # reported in the table, the other columns still stand
            log.warning("OpenVINO+NNCF failed for %s: %s", name, e)
    held = rng.standard_normal((8, *shape[1:])).astype(np.float32)
    ref = [runners["ort_fp32"](held[i : i + 1]) for i in range(len(held))]
    p50 = timed(runners, held[:1], args.rounds, args.runs)
    row = {"model": name, "export_quantize_s": round(t_quant, 1), "variants": {}}
    for k, f in runners.items():
        cos = min(cosine(r, f(held[i : i + 1])) for i, r in enumerate(ref))
        row["variants"][k] = {
            "p50_ms": round(p50[k], 3),
            "ratio_vs_fp32": round(p50["ort_fp32"] / p50[k], 3),
            "cosine_min": round(cos, 6),
        }
    return row


def trained_drop(tmp: Path, args) -> list[dict]:
    """Top-1 of each trained reference model, FP32 vs INT8, on held-out samples it was not calibrated on.

    The held-out split is shuffled with a fixed seed: the first 128 samples calibrate, the rest evaluate
    (the committed data has no other split for the keyword model). Two INT8 variants: the core
    ``quantize()`` with its default plan (search off, no gate, so a collapse is reported rather than refused),
    and ``quantize()`` with the search and the accuracy budget (``--eval`` on the evaluation samples, ``max_drop``).
    """
    import torch

    from edgeformer.export import export
    from edgeformer.models.reference import list_references, load_reference, reference_heldout
    from edgeformer.quant import QuantConfig, SearchConfig, quantize
    from edgeformer.quant.budget import EvalSet, top1

    out = []
    for ref in list_references():
        model, meta = load_reference(ref)
        x, y = reference_heldout(meta)
        order = np.random.default_rng(0).permutation(len(y))
        cal, ev = order[:128], order[128:]
        fp32 = export(
            model.eval(), fmt="onnx", out=tmp / f"{ref}-fp32", overwrite=True, example_inputs=(torch.from_numpy(x[:1]),)
        )
        name = fp32.manifest.inputs[0].name
        np.savez(tmp / f"{ref}-calib.npz", **{name: x[cal]})
        np.savez(tmp / f"{ref}-eval.npz", x=x[ev], y=y[ev])
        evs = EvalSet(feeds=tuple({name: x[i : i + 1]} for i in ev), labels=y[ev], source="heldout")
        a32 = top1(fp32.model_path, evs)
        core = quantize(
            fp32,
            QuantConfig(min_cosine=None, search=SearchConfig(enabled=False)),
            calib=tmp / f"{ref}-calib.npz",
            out=tmp / f"{ref}-int8",
            overwrite=True,
        )
        search = SearchConfig(threads=args.threads, time_budget_s=args.search_s, max_sensitivity_groups=8)
        t0 = time.monotonic()
        budget = quantize(
            fp32,
            QuantConfig(search=search),
            calib=tmp / f"{ref}-calib.npz",
            out=tmp / f"{ref}-int8-budget",
            overwrite=True,
            eval_data=tmp / f"{ref}-eval.npz",
            max_drop=args.max_drop,
            cache=None,  # timed
        )
        a_core, a_budget = top1(core.model_path, evs), top1(budget.model_path, evs)
        speedup = budget.manifest.extra.get("placement", {}).get("latency", {}).get("speedup")
        out.append(
            {
                "reference": ref,
                "eval_samples": len(ev),
                "calib_samples": len(cal),
                "fp32_top1": round(a32, 2),
                "int8_default_top1": round(a_core, 2),
                "drop_default": round(a32 - a_core, 2),
                "int8_budget_top1": round(a_budget, 2),
                "drop_budget": round(a32 - a_budget, 2),
                "budget_search_s": round(time.monotonic() - t0, 1),
                "budget_speedup": speedup,
            }
        )
    return out


def pipeline_wall(tmp: Path, args) -> float:
    import edgeformer
    from edgeformer.profiling import ProfileConfig
    from edgeformer.quant import SearchConfig

    t0 = time.monotonic()
    fp32 = edgeformer.export("efficientformer_l1", fmt="onnx", out=tmp / "wall-fp32", overwrite=True, cache=None)
    core = edgeformer.QuantConfig(search=SearchConfig(enabled=False))  # the wall of the core pipeline, uncached
    int8 = edgeformer.quantize(fp32, core, calib="synthetic", out=tmp / "wall-int8", overwrite=True, cache=None)
    edgeformer.profile(int8, ProfileConfig(threads=args.threads, min_time_s=1.0))
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--search-s", type=float, default=90.0)
    ap.add_argument("--skip-ov", action="store_true")
    ap.add_argument("--skip-trained", action="store_true")
    ap.add_argument("--max-drop", type=float, default=0.5, help="accuracy budget of the trained-model check")
    ap.add_argument("--skip-wall", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("quant_vs_peers.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result: dict = {"threads": args.threads, "models": [], "trained": [], "pipeline_wall_s": None}
    with tempfile.TemporaryDirectory(prefix="quant-vs-peers-") as d:
        tmp = Path(d)
        for m in args.models:
            row = compare_model(m, tmp, args)
            result["models"].append(row)
            print(f"\n{m} (export+quantize+search {row['export_quantize_s']} s)")
            print(f"  {'variant':24s} {'p50 ms':>9s} {'x FP32':>7s} {'cosine':>9s}")
            for k, v in row["variants"].items():
                print(f"  {k:24s} {v['p50_ms']:9.3f} {v['ratio_vs_fp32']:7.2f} {v['cosine_min']:9.5f}")
            args.out.write_text(json.dumps(result, indent=2))
        if not args.skip_trained:
            result["trained"] = trained_drop(tmp, args)
            for t in result["trained"]:
                print(
                    f"{t['reference']} ({t['eval_samples']} held-out): top-1 FP32 {t['fp32_top1']} | INT8 default "
                    f"{t['int8_default_top1']} (drop {t['drop_default']}) | INT8 with --max-drop {args.max_drop} "
                    f"{t['int8_budget_top1']} (drop {t['drop_budget']}, {t['budget_speedup']}x FP32)"
                )
        if not args.skip_wall:
            result["pipeline_wall_s"] = round(pipeline_wall(tmp, args), 1)
            print(f"export+quantize+profile efficientformer_l1: {result['pipeline_wall_s']} s")
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
