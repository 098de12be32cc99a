"""Time every bench row at once, interleaved, and decide the ★ from the intervals.

The producers have built and checked each row and left its contender (:class:`~.context.Timed`). Here all of them are
timed together by :func:`edgeformer.profiling.interleave.interleave` — rounds in a fresh order each, p50 as the median
of round medians with a bootstrap interval — plus an A/A row (the reference artifact opened a second time), and
:func:`edgeformer.profiling.side_by_side.rank` gives the ★ only where the figures support it.

A row that fails while timed (a runtime error on the n-th call) becomes a ``failed`` row and the others are
timed again without it, so one broken target does not lose the table.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable

from ..profiling.interleave import ContenderFailed, Interleaved, interleave
from ..profiling.side_by_side import AA_SUFFIX, Entry, Verdict, rank, session_settings
from .context import BenchContext, Timed
from .report import BenchRow

log = logging.getLogger(__name__)

# the FP32 row an INT8 row of each backend is held against ("INT8 that never silently loses")
FP32_OF_BACKEND = {"ort": ("onnx-fp32-ort", "ort-fp32"), "openvino": ("openvino-fp32",), "tensorrt": ("tensorrt-fp32",)}
# a row whose p50 interval is wider than this (either side, relative) is flagged: its figure is soft
MAX_HALFWIDTH = 0.05


def time_rows(
    rows: list[BenchRow],
    timed: dict[str, Timed],
    ctx: BenchContext,
    *,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[list[BenchRow], Verdict | None, str]:
    """Time the ``timed`` rows interleaved; the rows with their figures, the verdict and a line on how."""
    if not timed:
        return rows, None, ""
    config = ctx.config.interleave_config()
    reference = _reference(timed)
    failed: dict[str, str] = {}
    while True:
        live = {n: t for n, t in timed.items() if n not in failed}
        if not live:
            return _mark_failed(rows, failed), None, ""
        contenders = [dataclasses.replace(t.contender, name=n) for n, t in live.items()]
        aa = None
        if ctx.config.aa_check and reference in live and len(live) >= 1:
            aa = (reference, reference + AA_SUFFIX)
            contenders.append(ctx.aa_contender(live[reference], aa[1]))

        def tick(done: int, total: int) -> None:
            if progress is not None:
                progress(len(rows), len(rows) + 1, f"timing round {done}/{total}")

        try:
            result = interleave(contenders, config, progress=tick)
            break
        except ContenderFailed as e:
            name = e.name.removesuffix(AA_SUFFIX)
            log.warning("bench row %s failed while timed: %s", name, e.error)
            failed[name] = f"failed while timed: {type(e.error).__name__}: {e.error}"
    rows = [_with_timing(r, result, live.get(r.name), ctx) for r in _mark_failed(rows, failed)]
    rows = _int8_against_fp32(rows, result)
    entries = [
        Entry(
            name=r.name,
            eligible=r.meets(ctx.config.min_cosine) and not r.int8_slower,
            cosine=r.parity_cosine,
            size_mb=r.size_mb,
        )
        for r in rows
        if r.name in live
    ]
    verdict = rank(entries, result, aa)
    return rows, verdict, _how(result, live, ctx)


def _reference(timed: dict[str, Timed]) -> str | None:
    """The A/A row: plain ONNX FP32 on ORT when it ran, else the first row with an artifact."""
    if "onnx-fp32-ort" in timed:
        return "onnx-fp32-ort"
    return next((n for n, t in timed.items() if t.artifact is not None), None)


def _mark_failed(rows: list[BenchRow], failed: dict[str, str]) -> list[BenchRow]:
    return [dataclasses.replace(r, status="failed", reason=failed[r.name]) if r.name in failed else r for r in rows]


def _with_timing(row: BenchRow, result: Interleaved, timed: Timed | None, ctx: BenchContext) -> BenchRow:
    if timed is None:
        return row
    t = result.row(row.name)
    soft = t.rel_halfwidth > MAX_HALFWIDTH
    return dataclasses.replace(
        row,
        p50_ms=t.p50_ms,
        p50_low_ms=t.ci_low_ms,
        p50_high_ms=t.ci_high_ms,
        p90_ms=t.p90_ms,
        fps=ctx.batch * 1000.0 / t.p50_ms if t.p50_ms > 0 else None,
        startup_ms=t.startup_ms,
        memory_mb=t.memory_mb,
        timed_with=_settings(timed, ctx, t.reopened),
        stable=not soft,
        unstable_reason=f"p50 interval ±{t.rel_halfwidth:.1%} > ±{MAX_HALFWIDTH:.0%}" if soft else "",
    )


def _settings(timed: Timed, ctx: BenchContext, reopened: bool) -> str:
    if ctx.agent is not None and timed.artifact is not None:
        return f"on {ctx.agent.device}: one profile job per round"
    if timed.backend == "eager":
        return f"torch threads={ctx.threads if ctx.threads is not None else 'default'} · kept open"
    return session_settings(timed.backend, ctx.threads, reopened)


def _int8_against_fp32(rows: list[BenchRow], result: Interleaved) -> list[BenchRow]:
    """Hold every INT8 row against the FP32 row of its backend; say so where INT8 is slower beyond the interval."""
    timed = set(result.names)
    out = []
    for r in rows:
        fp32 = next((n for n in FP32_OF_BACKEND.get(r.backend, ()) if n in timed), None)
        if r.precision == "int8" and r.name in timed and fp32 is not None:
            est = result.ratio(r.name, fp32)
            r = dataclasses.replace(r, vs_fp32=est.describe())
            if est.b_faster:
                note = f"INT8 slower than {fp32}: ratio {est.describe()}; not marked"
                r = dataclasses.replace(r, int8_slower=True, reason=f"{note}; {r.reason}".strip("; "))
        out.append(r)
    return out


def _how(result: Interleaved, live: dict[str, Timed], ctx: BenchContext) -> str:
    cfg = result.config
    per_round = f"{cfg.min_calls} calls" if cfg.max_calls == cfg.min_calls else f"≥ {cfg.round_time_s:.2f} s"
    parts = [
        f"interleaved, {len(result.names)} rows × {len(result.round_medians)} rounds ({result.stop_reason}), "
        f"order shuffled each round, {per_round} per row per round after {cfg.warmup} warm-up calls; "
        f"p50 = median of round medians, [95 % CI] by bootstrap over rounds"
    ]
    if any(t.backend == "ort" for t in live.values()) and ctx.agent is None:
        parts.append(f"every ORT row: threads={ctx.threads or 'default'}, spinning off, kept open")
    if any(t.backend == "eager" for t in live.values()):
        parts.append(f"PyTorch rows with OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset (spinning)')}")
    if any(t.backend == "openvino" for t in live.values()) and ctx.agent is None:
        parts.append("OpenVINO rows reopened per round (their idle workers would slow the others)")
    return "; ".join(parts)
