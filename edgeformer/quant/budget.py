"""The accuracy budget: give groups back to float, most sensitive first, until top-1 is within ``max_drop``.

Eval data is labelled: an ``.npz`` with ``x`` (samples on axis 0) and ``y`` (class indices), or an image
folder with one sub-folder per class (named like the artifact's labels, or ``0``, ``1``, ...). Every
fallback records the accuracy it bought and the latency it cost on the target, so the report shows what
the budget is paying for. If the model still misses the budget with every group but one in float, no
INT8 placement can meet it and :class:`~edgeformer.errors.AccuracyBudgetError` says how close it got.

Example::

    ev = load_eval("heldout.npz", inputs=artifact.manifest.inputs, preprocessing=..., labels=...)
    result = apply_budget(pre, ranges, plan, groups, cfg, eval_set=ev, max_drop=0.5,
                          fp32_metric=top1(fp32_path, ev), order=most_sensitive_first, workdir=tmp)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import TensorSpec
from ..compare import ort_runner, run_all
from ..data.images import IMAGE_SUFFIXES, load_image
from ..errors import AccuracyBudgetError, CalibrationError, ConfigError
from .config import QuantConfig, rounded_fields
from .ort_adapter import write_qdq
from .placement import LatencyFn
from .ranges import TensorRanges
from .recipe import NodeGroup, QuantPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalSet:
    """Labelled samples, batched as the model takes them."""

    feeds: tuple[dict[str, np.ndarray], ...]
    labels: np.ndarray  # one class index per sample, in feed order
    source: str

    def __len__(self) -> int:
        return int(self.labels.size)


def load_eval(
    source: str | Path,
    *,
    inputs: Sequence[TensorSpec],
    preprocessing: Mapping[str, Any] | None,
    labels: Sequence[str] | None = None,
) -> EvalSet:
    """Open labelled eval data for a single-input classifier.

    Raises:
        CalibrationError: a missing/empty source, an ``.npz`` without ``x``/``y``, or class folders that
            match neither the labels nor integer indices.
        ConfigError: a model with more than one input.
    """
    if len(inputs) != 1:
        raise ConfigError(f"eval data feeds single-input models; this one has {len(inputs)} inputs.")
    path = Path(source)
    if not path.exists():
        raise CalibrationError(f"{path}: eval data not found; pass an .npz with x/y or a folder of class folders.")
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if "x" not in z or "y" not in z:
                    raise CalibrationError(f"{path}: needs arrays 'x' (samples) and 'y' (labels); has {list(z)}.")
                x, y = np.asarray(z["x"], np.float32), np.asarray(z["y"]).astype(np.int64).ravel()
        except (OSError, ValueError) as e:
            raise CalibrationError(f"{path}: unreadable eval .npz ({e}).") from e
    else:
        x, y = _image_folder(path, preprocessing, labels)
    if x.shape[0] != y.size or y.size == 0:
        raise CalibrationError(f"{path}: {x.shape[0]} samples but {y.size} labels; they must match and be > 0.")
    spec = inputs[0]
    lead = spec.shape[0] if spec.shape else None
    batch = lead if isinstance(lead, int) and lead > 0 else 16
    n = (y.size // batch) * batch if isinstance(lead, int) and lead > 0 else y.size
    if n == 0:
        raise CalibrationError(f"{path}: {y.size} samples, fewer than the model's fixed batch of {batch}.")
    feeds = tuple({spec.name: x[i : i + batch]} for i in range(0, n, batch))
    return EvalSet(feeds=feeds, labels=y[:n], source=str(path))


def _image_folder(path: Path, preprocessing, labels) -> tuple[np.ndarray, np.ndarray]:

    if preprocessing is None:
        raise CalibrationError(f"{path}: an image folder needs the artifact's preprocessing; pass an .npz instead.")
    classes = sorted(d.name for d in path.iterdir() if d.is_dir())
    if not classes:
        raise CalibrationError(f"{path}: no class sub-folders; lay images out as {path}/<class>/<image>.")
    if labels and all(c in labels for c in classes):
        index = {c: list(labels).index(c) for c in classes}
    elif all(c.isdigit() for c in classes):
        index = {c: int(c) for c in classes}
    else:
        raise CalibrationError(
            f"{path}: class folders {classes[:5]} are neither the model's labels nor integer indices; rename them."
        )
    xs, ys = [], []
    for c in classes:
        for f in sorted((path / c).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                xs.append(load_image(f, preprocessing)[0])
                ys.append(index[c])
    if not xs:
        raise CalibrationError(f"{path}: the class folders hold no images ({', '.join(IMAGE_SUFFIXES)}).")
    return np.stack(xs), np.asarray(ys, np.int64)


def top1(model_path: str | Path, eval_set: EvalSet, *, threads: int | None = None) -> float:
    """Top-1 accuracy in percent of ``model_path`` (first output's arg-max) on ORT CPU."""
    firsts = [next(iter(o.values())) for o in run_all(ort_runner(model_path, threads), eval_set.feeds)]
    pred = np.concatenate([y.reshape(y.shape[0], -1).argmax(1) for y in firsts])
    return float(100.0 * np.mean(pred == eval_set.labels))


@dataclass(frozen=True, kw_only=True)
class Fallback:
    """One group returned to float: the accuracy after it and what it cost in latency."""

    group: str
    metric: float
    latency_before_ms: float | None
    latency_after_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        return rounded_fields(self, 4)


@dataclass(frozen=True, kw_only=True)
class BudgetResult:
    """The plan within budget and how it got there."""

    plan: QuantPlan
    fp32_metric: float
    start_metric: float
    final_metric: float
    max_drop: float
    fallbacks: tuple[Fallback, ...]
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "fp32_top1": round(self.fp32_metric, 4),
            "int8_top1_before_budget": round(self.start_metric, 4),
            "int8_top1": round(self.final_metric, 4),
            "max_drop": self.max_drop,
            "drop": round(self.fp32_metric - self.final_metric, 4),
            "fallbacks": [f.to_dict() for f in self.fallbacks],
        }


def apply_budget(
    model_path: str | Path,
    ranges: TensorRanges,
    plan: QuantPlan,
    groups: Sequence[NodeGroup],
    config: QuantConfig,
    *,
    eval_set: EvalSet,
    max_drop: float,
    fp32_metric: float,
    order: Sequence[str],
    workdir: Path,
    latency: LatencyFn | None = None,
    threads: int | None = None,
) -> BudgetResult:
    """Return groups to float in ``order`` (most sensitive first) until top-1 is within ``max_drop`` points.

    Raises:
        AccuracyBudgetError: the budget is missed even with every group but one in float.
        ConfigError: a negative ``max_drop``.
    """
    if max_drop < 0:
        raise ConfigError(f"max_drop is in top-1 points and must be >= 0, got {max_drop}.")
    chosen = set(plan.nodes_to_quantize)
    members = {g.name: tuple(n for n in g.nodes if n in chosen) for g in groups}
    queue = [name for name in order if members.get(name)]
    queue += [g.name for g in groups if members[g.name] and g.name not in queue]
    k = 0

    def write(p: QuantPlan) -> Path:
        nonlocal k
        k += 1
        return write_qdq(model_path, ranges, p, config, Path(workdir) / f"budget{k}.onnx")

    current, path = plan, write(plan)
    metric = start = top1(path, eval_set, threads=threads)
    best = metric
    fallbacks: list[Fallback] = []
    for name in queue:
        if fp32_metric - metric <= max_drop:
            break
        left = [n for n in current.nodes_to_quantize if n not in set(members[name])]
        if not left:  # that would be the FP32 model: no INT8 placement meets the budget
            break
        cand = current.without(members[name], reason=f"accuracy: top-1 budget of {max_drop} points")
        cand_path = write(cand)
        cand_metric = top1(cand_path, eval_set, threads=threads)
        t_before, t_after = latency([path, cand_path]) if latency else (None, None)
        fallbacks.append(Fallback(group=name, metric=cand_metric, latency_before_ms=t_before, latency_after_ms=t_after))
        log.info("budget: %s back to float, top-1 %.2f -> %.2f", name, metric, cand_metric)
        current, path, metric = cand, cand_path, cand_metric
        best = max(best, metric)
    if fp32_metric - metric > max_drop:
        raise AccuracyBudgetError(
            f"no INT8 placement keeps top-1 within {max_drop} points of FP32 ({fp32_metric:.2f}%): the best reached "
            f"{best:.2f}% (drop {fp32_metric - best:.2f}) with {len(fallbacks)} group(s) back in float. Calibrate on "
            "more representative data, try --method percentile, or allow a larger --max-drop."
        )
    return BudgetResult(
        plan=current,
        fp32_metric=fp32_metric,
        start_metric=start,
        final_metric=metric,
        max_drop=max_drop,
        fallbacks=tuple(fallbacks),
        path=path,
    )
