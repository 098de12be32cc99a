"""INT8 vs FP32 on ORT CPU for zoo models: FP32, ORT ``quantize_static`` defaults, edgeformer placements.

One-off measurement behind the defaults in ``edgeformer/quant/recipe.py``; not a test. Run::

    python benchmarks/quant_speed.py efficientformer_l1 shvit_s1 --variants default,+Add --runs 100

For each model it exports (random weights, published resolution), quantizes with every variant from
the same calibration ranges, and times ``--runs`` batch-1 inferences per variant, the variants taking
turns run by run so that noise from other processes is spread over all of them:

* ``p50``: median wall time at ``--threads`` threads;
* ``cpu1t``: 10th percentile of the CPU time of one inference on a single-thread session. With other
  processes on the machine, wall time at 2 threads mostly measures them; single-thread CPU time does not;
* ``cos``: mean cosine vs FP32 on held-out inputs.

Variants: ``default`` (the recipe), ``+Op[.Op]`` (default plus op types), ``-kind`` (default minus
``depthwise``/``pointwise``/``spatial`` convs or ``weights`` MatMuls), ``ort`` (``quantize_static``
defaults: QDQ, s8 activations, per-tensor, every op type), ``ort-u8`` (those with u8 activations,
per-channel, reduce_range). A JSON with every figure goes to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeformer.compare import compare_outputs
from edgeformer.quant import QuantConfig, compute_ranges, default_plan, open_calibration, preprocess, write_qdq
from edgeformer.quant.graph import GraphIndex, conv_kind

log = logging.getLogger("quant_speed")


def export(name: str, out: Path) -> tuple[Path, tuple[int, ...]]:
    import torch

    from edgeformer.models import create_model, get_spec

    shape = get_spec(name).input.shape(1)
    model = create_model(name).eval().fuse()
    torch.onnx.export(
        model,
        (torch.randn(*shape),),
        str(out),
        dynamo=True,
        opset_version=18,
        input_names=["input"],
        output_names=["logits"],
        external_data=False,
    )
    return out, shape


def session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def interleaved(paths: dict[str, Path], x: np.ndarray, threads: int, runs: int, clock) -> dict[str, list[float]]:
    """Per-variant times of ``runs`` inferences, the variants taking turns run by run.

    Other processes slow whichever variant happens to run at that moment; taking turns spreads that
    over all variants instead of penalising the one measured during a busy minute.
    """
    sessions = {v: session(p, threads) for v, p in paths.items()}
    for s in sessions.values():
        for _ in range(5):
            s.run(None, {"input": x})
    times: dict[str, list[float]] = {v: [] for v in paths}
    for _ in range(runs):
        for v, s in sessions.items():
            t = clock()
            s.run(None, {"input": x})
            times[v].append((clock() - t) / 1e6)
    return times


def ort_defaults(pre: Path, out: Path, calib: np.ndarray, u8: bool) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x[None]}

    kw = dict(activation_type=QuantType.QUInt8, per_channel=True, reduce_range=True) if u8 else {}
    quantize_static(str(pre), str(out), Reader(), **kw)
    return out


def variant_plan(v: str, model: onnx.ModelProto, cfg: QuantConfig):
    g = GraphIndex(model)
    if v.endswith("@qop"):
        plan, _ = variant_plan(v[: -len("@qop")], model, cfg)
        return plan, cfg.replace(quant_format="qoperator")
    if v.startswith("+"):
        extra = tuple(v[1:].split("."))
        return default_plan(model, cfg.replace(op_types=cfg.op_types + extra)), cfg
    plan = default_plan(model, cfg)
    if v.startswith("-"):
        kind = v[1:]
        drop = [
            n.name
            for n in model.graph.node
            if n.name in set(plan.nodes_to_quantize)
            and ((n.op_type == "Conv" and conv_kind(g, n) == kind) or (kind == "weights" and n.op_type == "MatMul"))
        ]
        return plan.without(drop, f"benchmark: {v}"), cfg
    return plan, cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--variants", default="ort,default")
    ap.add_argument("--runs", type=int, default=100, help="inferences per variant, interleaved")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib", type=int, default=32)
    ap.add_argument("--json", type=Path, default=Path("quant_speed.json"))
    ap.add_argument("--no-wall", action="store_true", help="skip the multi-thread wall-clock figure")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("edgeformer").setLevel(logging.ERROR)
    results = {}
    with tempfile.TemporaryDirectory(prefix="quant-speed-") as tmp:
        tmp = Path(tmp)
        for name in args.models:
            fp32, shape = export(name, tmp / f"{name}.onnx")
            rng = np.random.default_rng(0)
            data = rng.standard_normal((args.calib + 8, *shape[1:])).astype(np.float32)
            np.save(tmp / f"{name}.npy", data)
            cfg = QuantConfig(calib_size=args.calib, fidelity_samples=8)
            pre = preprocess(fp32, tmp / f"{name}.pre.onnx", cfg)
            model = onnx.load(str(pre))
            cal = open_calibration(tmp / f"{name}.npy", inputs=_inputs(shape), preprocessing=None, config=cfg)
            ranges = compute_ranges(pre, cal.reader, cfg)
            paths = {"fp32": fp32, "fp32+preprocess": pre}
            for v in args.variants.split(","):
                out = tmp / f"{name}.{v}.onnx"
                if v == "ort":  # what a user gets from quantize_static(model) with no options
                    paths[v] = ort_defaults(fp32, out, data[: args.calib], u8=False)
                elif v == "ort-u8":
                    unfused = preprocess(fp32, tmp / f"{name}.pre-nogelu.onnx", cfg.replace(fuse_gelu=False))
                    paths[v] = ort_defaults(unfused, out, data[: args.calib], u8=True)
                else:
                    plan, vcfg = variant_plan(v, model, cfg)
                    paths[v] = write_qdq(pre, ranges, plan, vcfg, out)
            feeds = [{"input": data[-8 + i : len(data) - 8 + i + 1]} for i in range(8)]
            ref = [session(fp32, 2).run(None, f) for f in feeds]
            row = {}
            for v, p in paths.items():
                s = session(p, 2)
                fid = compare_outputs(ref, [s.run(None, f) for f in feeds], rows=True)
                row[v] = {"cos": fid.cosine_mean, "p50": [], "cpu1t": []}
            x = data[:1]
            # one thread + thread CPU time: the caller's thread does all the work, and time spent
            # descheduled by other processes does not count; wall time at --threads counts everything
            cpu = interleaved(paths, x, 1, args.runs, time.thread_time_ns)
            wall = (
                {v: [np.nan] for v in paths}
                if args.no_wall
                else interleaved(paths, x, args.threads, args.runs, time.perf_counter_ns)
            )
            for v in paths:
                row[v]["cpu1t"], row[v]["p50"] = cpu[v], wall[v]
            base_w, base_c = np.percentile(wall["fp32"], 50), np.percentile(cpu["fp32"], 10)
            for v, r in row.items():
                w, c = np.percentile(r["p50"], 50), np.percentile(r["cpu1t"], 10)
                log.info(
                    "%-22s %-28s p50 %7.2f ms (%4.2fx)  cpu1t p10 %7.2f ms (%4.2fx)  cos %.5f",
                    name,
                    v,
                    w,
                    base_w / w,
                    c,
                    base_c / c,
                    r["cos"],
                )
            results[name] = row
    args.json.write_text(json.dumps(results, indent=1))


def _inputs(shape):
    from edgeformer.artifact import TensorSpec

    return [TensorSpec(name="input", shape=tuple(shape), dtype="float32")]


if __name__ == "__main__":
    main()
