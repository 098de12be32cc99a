"""The correction: a small least-squares fit of what isolated block timings miss, chosen by leave-one-out error.

Blocks timed alone miss fusion across block boundaries, layout changes between them, memory traffic and the
per-call overhead of one session instead of many. Candidates, from fewest parameters: a constant; a constant and
a scale on the block sum; those plus per-kind block counts. Ridge-regularized (a few whole models only), picked
by leave-one-out mean absolute percentage error, so more features win only when they predict held-out models better.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import LatencyTableError
from .model import LatencyModel
from .space import SearchSpace
from .table import Correction, LatencyTable

RIDGE = 1e-3


def _solve(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    scale = np.maximum(np.abs(x).max(0), 1e-9)  # ridge on comparable columns
    xs = x / scale
    coef = np.linalg.solve(xs.T @ xs + RIDGE * np.eye(x.shape[1]), xs.T @ y)
    return coef / scale


def fit_correction(table: LatencyTable, space: SearchSpace | None = None) -> Correction:
    rows = [w for w in table.whole if w.purpose == "calibration"]
    if len(rows) < 2:
        raise LatencyTableError(f"the correction needs at least 2 whole-model timings, the table has {len(rows)}.")
    lm = LatencyModel(table, space)
    feats: list[dict[str, Any]] = [lm.features(lm.arch_from_dict(w.arch)) for w in rows]
    measured = np.array([w.p50_ms for w in rows])
    sums = np.array([f["sum"] for f in feats])
    resid = measured - sums
    kinds = sorted({k for f in feats for k in f if k.startswith("count:")})
    varying = [k for k in kinds if len({f.get(k, 0.0) for f in feats}) > 1]
    candidates = [("const",), ("const", "sum"), ("const", "sum", *varying)]
    best: tuple[float, tuple[str, ...]] | None = None
    for names in dict.fromkeys(candidates):
        if len(names) >= len(rows):
            continue
        x = np.array([[f.get(n, 0.0) for n in names] for f in feats])
        errs = []
        for i in range(len(rows)):
            keep = np.arange(len(rows)) != i
            coef = _solve(x[keep], resid[keep])
            errs.append(abs(sums[i] + x[i] @ coef - measured[i]) / measured[i])
        loo = float(np.mean(errs))
        if best is None or loo < best[0] - 1e-4:
            best = (loo, names)
    assert best is not None
    loo, names = best
    x = np.array([[f.get(n, 0.0) for n in names] for f in feats])
    coef = _solve(x, resid)
    rms = float(np.sqrt(np.mean((sums + x @ coef - measured) ** 2)))
    return Correction(
        features=names,
        coef=tuple(float(c) for c in coef),
        fitted_on=(
            f"{len(rows)} whole models (smallest, largest, seeded samples) timed during the build; "
            f"features chosen by leave-one-out MAPE {100 * loo:.2f}%"
        ),
        residual_rms_ms=rms,
    )
