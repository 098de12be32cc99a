"""Quantize with a search: sensitivity analysis, latency-aware placement, an optional accuracy budget, a report.

The orchestration above the pieces (:mod:`.placement`, :mod:`.budget`, :mod:`.sensitivity`, :mod:`.report`)
and the core :func:`~.core.quantize_core` that writes the chosen plan; :func:`edgeformer.quant.quantize` runs it
when ``QuantConfig.search`` is on (the default, as ``edgeformer quantize``) or eval data is given.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..artifact import Artifact, Manifest
from ..compare import compare_outputs, ort_runner, run_all
from ..errors import QualityGateError
from ..profiling import device_card
from .budget import apply_budget, load_eval, top1
from .config import QuantConfig
from .core import Calibration, quantize_core
from .placement import LatencyFn, measure_speedup, ort_latency, search_placement
from .recipe import QuantPlan, default_plan, node_groups
from .report import QuantReport, write_report
from .sensitivity import group_alone, group_sqnr, tensor_sqnr

log = logging.getLogger(__name__)


def search_build(
    src: Artifact,
    config: QuantConfig,
    calibration: Calibration,
    folder: Path,
    *,
    io: Any,
    eval_data: Any,
    max_drop: float | None,
    latency: LatencyFn | None,
    workdir: Path,
    start: QuantPlan | None = None,
) -> Manifest:
    """Search the placement of ``config.search`` over one calibration, apply the ``max_drop`` budget on
    ``eval_data``, write the chosen plan (:func:`~.core.quantize_core`) and the report into ``folder``; the manifest
    to commit (:func:`edgeformer.quant.quantize` runs this when the search is on or ``eval_data`` is given).

    Raises:
        AccuracyBudgetError: no placement meets ``max_drop``.
        QualityGateError: no placement reaches ``search.min_cosine`` vs FP32.
    """
    search, inputs, tmp = config.search, list(io[0]), Path(workdir)
    (tmp / "cands").mkdir()
    data, pre, ranges = calibration.data, calibration.model_path, calibration.ranges
    pre_model = onnx.load(str(pre))
    plan0 = start or default_plan(pre_model, config)  # start: the fidelity fallback's plan (quantize.py)
    groups = node_groups(pre_model, search.level)
    feeds, on = _fidelity_feeds(data, config)
    reference = run_all(ort_runner(src.model_path, search.threads), feeds)
    eval_set = (
        load_eval(eval_data, inputs=inputs, preprocessing=src.manifest.preprocessing, labels=src.manifest.labels)
        if eval_data is not None
        else None
    )
    metric = (lambda p: top1(p, eval_set, threads=search.threads)) if eval_set is not None else None
    sqnr = tensor_sqnr(pre, ranges, plan0, config, feeds[:4])
    per_group = group_sqnr(groups, sqnr)
    alone = (
        {
            a.group: a
            for a in group_alone(
                pre,
                ranges,
                plan0,
                groups,
                config,
                feeds,
                reference,
                metric=metric,
                max_groups=search.max_sensitivity_groups,
                threads=search.threads,
            )
        }
        if search.max_sensitivity_groups
        else {}
    )
    lat = latency or ort_latency(
        feeds[0],
        threads=search.threads,
        rounds=search.rounds,
        runs_per_round=search.runs_per_round,
        warmup=search.warmup,
    )
    placed = search_placement(
        pre,
        ranges,
        plan0,
        groups,
        config,
        feeds=feeds,
        reference=reference,
        workdir=tmp / "cands",
        search=search,
        latency=latency,  # None: pairs timed interleaved in open ORT sessions (timing.ort_comparator)
    )
    plan, chosen, decisions = placed.plan, placed.path, {d.group: d for d in placed.decisions}
    accuracy = None
    if eval_set is not None:
        fp32_top1 = top1(src.model_path, eval_set, threads=search.threads)
        if max_drop is not None:
            # most sensitive first: lowest metric alone, then lowest cosine alone (a NaN/Inf output
            # lowest of all), then lowest SQNR
            def rank(name: str) -> tuple[float, float, float]:
                a = alone.get(name)
                cos = math.inf if a is None else -math.inf if a.problem else a.cosine
                return (a.metric if a and a.metric is not None else math.inf, cos, per_group.get(name, math.inf))

            order = sorted(decisions, key=rank)
            budget = apply_budget(
                pre,
                ranges,
                plan,
                groups,
                config,
                eval_set=eval_set,
                max_drop=max_drop,
                fp32_metric=fp32_top1,
                order=order,
                workdir=tmp / "cands",
                latency=lat,
                threads=search.threads,
            )
            plan, chosen, accuracy = budget.plan, budget.path, budget.to_dict()
            for f in budget.fallbacks:
                decisions[f.group] = dataclasses.replace(
                    decisions[f.group],
                    decision="float",
                    reason="accuracy",
                    latency_int8_ms=f.latency_before_ms,
                    latency_float_ms=f.latency_after_ms,
                    note=f"top-1 {f.metric:.2f}% after returning it to float",
                )
        else:
            accuracy = {"fp32_top1": round(fp32_top1, 4), "int8_top1": round(top1(chosen, eval_set), 4)}
    fidelity = compare_outputs(reference, run_all(ort_runner(chosen, search.threads), feeds), rows=True, on=on)
    speedup = measure_speedup(src.model_path, chosen, feeds[0], search, latency)  # paired, with its interval
    t_fp32, t_int8 = speedup.fp32_ms, speedup.int8_ms
    manifest = quantize_core(src, config, calibration, folder, io=io, plan=plan)
    report = QuantReport(
        model=src.manifest.model_name,
        device=device_card(backend="ort", threads=search.threads).to_dict(),
        latency={
            "fp32_ms": round(t_fp32, 4),
            "int8_ms": round(t_int8, 4),
            "speedup": round(speedup.ratio, 3),
            "threads": search.threads,
        },
        fidelity=fidelity.to_dict(),
        groups=[
            {
                **d.to_dict(),
                "sqnr_db": _round(per_group.get(d.group)),
                "alone_cosine": _round(alone[d.group].cosine, 6) if d.group in alone else None,
                "alone_top1": alone[d.group].metric if d.group in alone else None,
            }
            for d in decisions.values()
        ],
        tensors=[t.to_dict() for t in sqnr],
        candidates=[c.to_dict() for c in placed.candidates],
        accuracy=accuracy,
        search={
            **search.to_dict(),
            "searched": placed.searched,
            "stopped": placed.stopped,
            "elapsed_s": round(placed.elapsed_s, 2),
        },
        calibration=data.summary.to_dict(),
        speedup=speedup.to_dict(),
    )
    write_report(folder, report)
    log.info(
        "quantized %s with placement search: %.3f -> %.3f ms (%.2fx), cosine %.5f",
        src.manifest.model_name,
        t_fp32,
        t_int8,
        t_fp32 / t_int8 if t_int8 else float("nan"),
        fidelity.cosine,
    )
    return dataclasses.replace(
        manifest,
        step_config={
            **manifest.step_config,
            "eval": str(eval_data) if eval_data is not None else None,
            "max_drop": max_drop,
        },  # the search settings are in the config's own
        extra={**manifest.extra, "placement": report.summary()},
    )


def _fidelity_feeds(data: Any, config: QuantConfig) -> tuple[list[dict[str, np.ndarray]], str]:
    """The same feeds the core's fidelity check uses, and what they are; none at all is an error here (nothing
    to search on)."""
    feeds, on = data.fidelity_feeds(config.fidelity_samples)
    if not feeds:
        raise QualityGateError("no samples to check fidelity on; pass calibration data with at least one sample.")
    return feeds, on


def _round(v: float | None, nd: int = 3) -> float | None:
    return round(v, nd) if v is not None and math.isfinite(v) else None
