"""``validate``: how well a table's latency model predicts whole sub-networks it was not fitted on.

Seeded samples (never the correction's calibration models) are exported and timed whole, interleaved; the report
gives the share of predictions within ±5 % and ±10 %, MAPE, Kendall τ and the timing noise, for the latency model
and for two baselines fitted on the same calibration timings: latency linear in MACs, and linear in parameters.
Timings are stored in the table (``purpose="validation"``), so a rerun with the same seed times nothing again.

Drift: a shared or virtual machine speeds up and slows down over minutes (other tenants, frequency scaling), and
the blocks were timed during the build, possibly long before. So every validation batch also times the parent,
whose build-time latency the table holds, and the batch's timings are scaled by build-time / now: predictions
are scored against the machine the table describes. The raw scores and the drift factors are reported too.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..records import Record
from ..scratch import scratch_dir
from .artifacts import export_arch
from .build import _whole, calibration_archs
from .model import LatencyModel
from .space import SearchSpace
from .table import Whole, arch_dict, arch_id, check_same, read_table, update
from .timing import TimingConfig, make_timer

PREDICTORS = ("table", "table_raw", "macs", "params")


@dataclass(frozen=True, kw_only=True)
class Metrics(Record):
    within_5: float  # share of predictions within ±5 % of the measurement
    within_10: float
    mape: float  # mean absolute percentage error, in %
    kendall_tau: float


@dataclass(frozen=True, kw_only=True)
class Row(Record):
    arch: dict[str, Any]
    measured_ms: float  # drift-normalized
    raw_ms: float
    drift: float
    noise: float
    table_ms: float
    macs_ms: float
    params_ms: float


@dataclass(frozen=True, kw_only=True)
class ValidationReport(Record):
    model: str
    device: str
    precision: str
    samples: int
    seed: int
    noise_median: float  # median std/mean of the repeated timings of one model
    drift_range: tuple[float, float]  # smallest and largest drift factor of the batches
    metrics: dict[str, Metrics]  # "table", "table_raw" (no drift correction), "macs", "params"
    rows: tuple[Row, ...]

    def to_markdown(self) -> str:
        head = (
            f"**{self.model}** · {self.device} · {self.precision} · {self.samples} held-out sub-networks "
            f"(seed {self.seed}) · timing noise (median std/mean) {100 * self.noise_median:.2f}% · drift factors "
            f"{self.drift_range[0]:.3f}-{self.drift_range[1]:.3f}\n\n"
        )
        lines = ["| predictor | within ±5% | within ±10% | MAPE | Kendall τ |", "|---|---:|---:|---:|---:|"]
        names = {
            "table": "latency table + correction",
            "table_raw": "same, raw timings (no drift correction)",
            "macs": "linear in MACs",
            "params": "linear in parameters",
        }
        for k in PREDICTORS:
            m = self.metrics[k]
            share = f"{100 * m.within_5:.0f}% | {100 * m.within_10:.0f}%"
            lines.append(f"| {names[k]} | {share} | {m.mape:.2f}% | {m.kendall_tau:.3f} |")
        return head + "\n".join(lines)


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's τ-b (ties in either list reduce the denominator)."""
    n = len(a)
    conc = disc = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif da == db:
                conc += 1
            else:
                disc += 1
    denom = np.sqrt((conc + disc + ties_a) * (conc + disc + ties_b))
    return float((conc - disc) / denom) if denom else 0.0


def metrics(pred: list[float], measured: list[float]) -> Metrics:
    rel = [abs(p - m) / m for p, m in zip(pred, measured, strict=True)]
    return Metrics(
        within_5=sum(r <= 0.05 for r in rel) / len(rel),
        within_10=sum(r <= 0.10 for r in rel) / len(rel),
        mape=100 * statistics.fmean(rel),
        kendall_tau=kendall_tau(pred, measured),
    )


def _linear(xs: list[float], ys: list[float]) -> Callable[[float], float]:
    slope, intercept = np.polyfit(np.array(xs, dtype=float), np.array(ys, dtype=float), 1)
    return lambda x: float(slope * x + intercept)


def validate(
    table_path: str | Path,
    samples: int = 20,
    seed: int = 0,
    *,
    timing: TimingConfig | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    device: str | None = None,
    token: str | None = None,
    space: SearchSpace | None = None,
) -> ValidationReport:
    """Time ``samples`` seeded sub-networks whole on the table's device and score the predictors (see module doc).

    ``device``: where to time (default: where the table was measured, this machine or its agent); ``space``: sample
    from this (sub)space of the table's model instead of its whole space.
    """
    path = Path(table_path)
    table = read_table(path)
    if samples < 3:
        raise ConfigError(f"--samples must be >= 3 (Kendall τ needs pairs), got {samples}.")
    dev = table.device
    timing = replace(timing or TimingConfig(), threads=dev.threads)
    where = device if device is not None else (None if dev.host == "local" else dev.host)
    timer = make_timer(where, dev.backend, dev.threads, dev.precision, timing, token)
    check_same(table, timer.device, path)
    lm = LatencyModel(table, space, source=str(path))
    space = lm.space
    calib = [w for w in table.whole if w.purpose == "calibration"]
    excluded = {arch_id(arch_dict(a)) for a in calibration_archs(space, len(calib), 0)}
    excluded |= {arch_id(w.arch) for w in calib}
    rng = random.Random(f"validation-{seed}")
    archs: list[Any] = []
    for _ in range(100 * samples):
        if len(archs) >= samples:
            break
        a = space.sample(rng)
        if arch_id(arch_dict(a)) not in excluded and a not in archs:
            archs.append(a)
    have = {arch_id(w.arch): w for w in table.whole if w.purpose == "validation"}
    todo = [a for a in archs if arch_id(arch_dict(a)) not in have]
    anchor_ref = next((w.p50_ms for w in calib if arch_id(w.arch) == arch_id(arch_dict(space.parent))), None)
    with scratch_dir("validate") as tmp:
        anchor = None
        if todo and anchor_ref is not None:
            anchor = export_arch(
                space.parent,
                space.input_shape,
                Path(tmp) / "anchor",
                zoo_model=space.zoo_model,
                precision=dev.precision,
                backend=dev.backend,
            )
        for start in range(0, len(todo), timing.batch_size):
            batch = todo[start : start + timing.batch_size]
            folders = [
                export_arch(
                    a,
                    space.input_shape,
                    Path(tmp) / f"v{start + i}",
                    zoo_model=space.zoo_model,
                    precision=dev.precision,
                    backend=dev.backend,
                )
                for i, a in enumerate(batch)
            ]
            timed = timer.time([anchor, *folders] if anchor is not None else folders)
            drift = 1.0
            if anchor is not None:
                drift, timed = anchor_ref / timed[0].p50_ms, timed[1:]
            new = tuple(_whole(space, a, t, "validation", drift) for a, t in zip(batch, timed, strict=True))
            table = update(path, lambda t, w=new: replace(t, whole=t.whole + w))
            have.update({arch_id(w.arch): w for w in new})
            if progress:
                progress(len(archs) - len(todo) + start + len(batch), len(archs), "whole models")
    measured_rows: list[Whole] = [have[arch_id(arch_dict(a))] for a in archs]
    by_macs = _linear([w.macs for w in calib], [w.p50_ms for w in calib])
    by_params = _linear([w.params for w in calib], [w.p50_ms for w in calib])
    rows = tuple(
        Row(
            arch=w.arch,
            measured_ms=w.p50_ms * w.drift,
            raw_ms=w.p50_ms,
            drift=w.drift,
            noise=w.noise,
            table_ms=lm.predict_ms(a),
            macs_ms=by_macs(w.macs),
            params_ms=by_params(w.params),
        )
        for a, w in zip(archs, measured_rows, strict=True)
    )
    measured = [r.measured_ms for r in rows]
    return ValidationReport(
        model=table.model,
        device=dev.summary(),
        precision=dev.precision,
        samples=len(rows),
        seed=seed,
        noise_median=statistics.median(r.noise for r in rows),
        drift_range=(min(r.drift for r in rows), max(r.drift for r in rows)),
        metrics={
            "table": metrics([r.table_ms for r in rows], measured),
            "table_raw": metrics([r.table_ms for r in rows], [r.raw_ms for r in rows]),
            "macs": metrics([r.macs_ms for r in rows], measured),
            "params": metrics([r.params_ms for r in rows], measured),
        },
        rows=rows,
    )
