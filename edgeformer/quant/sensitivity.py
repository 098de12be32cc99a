"""Per-layer sensitivity: how much signal each quantized tensor loses, and what one group alone costs.

Two measures, both computed from the *one* calibration pass (ranges are reused, never recomputed):

* **SQNR** (signal-to-quantization-noise ratio, dB) of every tensor a plan quantizes: the activation
  (recorded on held-out samples) or weight is quantized and dequantized in numpy with the scale and zero
  point its calibrated range gives, and ``10·log10(Σx² / Σ(x - x̂)²)`` is taken, the measure ORT's
  ``qdq_loss_debug.py`` reports. Each dB is about 1/6 of a bit; under ~20 dB a tensor is badly served.
* **One group alone**: the model with only that group quantized, run on the target (ORT CPU), compared
  with FP32 (cosine, top-1 agreement) or scored on the eval set. This catches what SQNR cannot (error that
  a later Softmax amplifies, kernels that are wrong).

Example::

    sqnr = tensor_sqnr(pre_path, ranges, plan, config, holdout_feeds)
    per_group = group_sqnr(groups, plan, sqnr, onnx.load(pre_path))
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..compare import compare_outputs, ort_runner, run_all
from ..scratch import scratch_dir
from .config import QuantConfig, rounded_fields
from .graph import GraphIndex
from .ort_adapter import write_qdq
from .ranges import TensorRanges
from .recipe import NodeGroup, QuantPlan

log = logging.getLogger(__name__)

_WEIGHTED = ("Conv", "MatMul", "Gemm", "ConvTranspose")


def fake_quant(x: np.ndarray, low: float, high: float, *, dtype: str = "uint8", symmetric: bool = False) -> np.ndarray:
    """Quantize-dequantize ``x`` with the scale/zero point ORT derives from the range ``(low, high)``.

    The range is widened to include 0 (ORT does the same, so that zero padding is exact).
    """
    lo, hi = min(float(low), 0.0), max(float(high), 0.0)
    qmin, qmax = (0, 255) if dtype == "uint8" else (-128, 127)
    if symmetric:
        amax = max(abs(lo), abs(hi))
        lo, hi = -amax, amax
    scale = (hi - lo) / (qmax - qmin) if hi > lo else 1.0
    zero = qmin - round(lo / scale) if not symmetric else (qmin + qmax + 1) // 2
    q = np.clip(np.round(np.asarray(x, np.float64) / scale) + zero, qmin, qmax)
    return ((q - zero) * scale).astype(np.float32)


def fake_quant_weight(w: np.ndarray, *, axis: int | None, bits: int = 8) -> np.ndarray:
    """Symmetric per-channel (``axis``) or per-tensor (``axis=None``) quantize-dequantize of a weight."""
    w = np.asarray(w, np.float64)
    qmax = 2 ** (bits - 1) - 1
    if axis is None:
        amax = np.max(np.abs(w))
    else:
        reduce = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
        amax = np.max(np.abs(w), axis=reduce, keepdims=True)
    scale = np.where(amax > 0, amax / qmax, 1.0)
    return (np.clip(np.round(w / scale), -qmax, qmax) * scale).astype(np.float32)


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """``10·log10(‖ref‖² / ‖ref - test‖²)`` in dB; ``inf`` when the two are identical."""
    r = np.asarray(reference, np.float64).ravel()
    noise = float(np.sum((r - np.asarray(test, np.float64).ravel()) ** 2))
    signal = float(np.sum(r**2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


@dataclass(frozen=True, kw_only=True)
class TensorSqnr:
    """SQNR of one quantized tensor: ``kind`` is ``activation`` or ``weight``; ``node`` its consumer."""

    tensor: str
    kind: str
    node: str
    sqnr_db: float

    def to_dict(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "kind": self.kind, "node": self.node, "sqnr_db": _finite(self.sqnr_db)}


def tensor_sqnr(
    model_path: str | Path,
    ranges: TensorRanges,
    plan: QuantPlan,
    config: QuantConfig,
    feeds: Sequence[Mapping[str, np.ndarray]],
) -> list[TensorSqnr]:
    """SQNR of the inputs (activations and weights) of every node ``plan`` quantizes, over ``feeds``.

    Activations are read from an ORT run of ``model_path`` (the pre-processed graph the plan belongs to)
    with no graph optimisation, so the tensors are the graph's own.
    """
    model = onnx.load(str(model_path))
    g = GraphIndex(model)
    chosen = set(plan.nodes_to_quantize)
    wanted: dict[str, tuple[str, str]] = {}  # tensor -> (kind, consumer)
    for node in model.graph.node:
        if node.name not in chosen:
            continue
        for i, name in enumerate(node.input):
            if not name:
                continue
            if name in g.initializers:
                if i == 1 and node.op_type in _WEIGHTED:
                    wanted.setdefault(name, ("weight", node.name))
            elif not g.is_constant(name) and name in ranges:
                wanted.setdefault(name, ("activation", node.name))
    acts = [t for t, (k, _) in wanted.items() if k == "activation"]
    values = _activations(model, acts, feeds) if acts and feeds else {}
    bits = 7 if config.reduce_range else 8
    out = []
    for name, (kind, node_name) in wanted.items():
        if kind == "weight":
            node = next(n for n in model.graph.node if n.name == node_name)
            w = g.constant(name)
            axis = _weight_axis(g, node, w) if config.per_channel else None
            out.append(
                TensorSqnr(
                    tensor=name,
                    kind=kind,
                    node=node_name,
                    sqnr_db=sqnr_db(w, fake_quant_weight(w, axis=axis, bits=bits)),
                )
            )
        elif name in values:
            lo, hi = ranges[name]
            x = values[name]
            xq = fake_quant(x, lo, hi, dtype=config.activation_type, symmetric=config.symmetric_activations)
            out.append(TensorSqnr(tensor=name, kind=kind, node=node_name, sqnr_db=sqnr_db(x, xq)))
    return out


def node_sqnr(
    model_path: str | Path,
    ranges: TensorRanges,
    plan: QuantPlan,
    config: QuantConfig,
    feeds: Sequence[Mapping[str, np.ndarray]],
) -> dict[str, float]:
    """The worst SQNR (dB) of every tensor each node of ``plan`` puts through Q/DQ: its activation inputs, its
    weight, and its outputs (ORT's QDQ quantizes a node's outputs too, so an op whose own output range is
    stretched by a few large channels is charged for it even when its consumer stays float).

    An activation counts with the lower of its whole-tensor SQNR and its channel-averaged SQNR (the mean of each
    channel's dB): beside a few channels ~100x the others, the whole-tensor figure is the big channels' alone
    and looks fine (the residual stream of tests/quant/outside_models.OutlierNet: 31.9 dB whole, 4.0 dB averaged
    over its channels, the small ones rounded to a few codes by the one activation scale). Unlike
    :func:`tensor_sqnr`, a tensor read by several quantized nodes counts for each: this ranks *ops*, for keeping
    the most damaging ones float (:mod:`.fallback`). Nodes with no measurable tensor (constant inputs only) get
    ``inf``.
    """
    model = onnx.load(str(model_path))
    g = GraphIndex(model)
    chosen = set(plan.nodes_to_quantize)
    nodes = [n for n in model.graph.node if n.name in chosen]
    acts = sorted({t for n in nodes for t in (*n.input, *n.output) if t and t in ranges and not g.is_constant(t)})
    values = _activations(model, acts, feeds, flat=False) if acts and feeds else {}
    act_sqnr = {}
    for t in acts:
        if t in values:
            x = values[t]
            xq = fake_quant(x, *ranges[t], dtype=config.activation_type, symmetric=config.symmetric_activations)
            act_sqnr[t] = min(sqnr_db(x, xq), channel_sqnr_db(x, xq))
    bits = 7 if config.reduce_range else 8
    out: dict[str, float] = {}
    for n in nodes:
        worst = min((act_sqnr[t] for t in (*n.input, *n.output) if t in act_sqnr), default=math.inf)
        if n.op_type in _WEIGHTED and len(n.input) > 1 and n.input[1] in g.initializers:
            w = g.constant(n.input[1])
            axis = _weight_axis(g, n, w) if config.per_channel else None
            worst = min(worst, sqnr_db(w, fake_quant_weight(w, axis=axis, bits=bits)))
        out[n.name] = worst
    return out


def channel_sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """The mean over channels of each channel's SQNR (dB): axis 1 of NCHW maps, the last axis of token (B, N, C)
    and (B, C) tensors. Channels with no signal are left out; a tensor with none at all (or 0-d/1-d) gets its
    whole-tensor :func:`sqnr_db`."""
    r, t = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    if r.ndim < 2:
        return sqnr_db(r, t)
    axis = 1 if r.ndim == 4 else r.ndim - 1
    r, t = np.moveaxis(r, axis, 0).reshape(r.shape[axis], -1), np.moveaxis(t, axis, 0).reshape(r.shape[axis], -1)
    signal, noise = np.sum(r**2, axis=1), np.sum((r - t) ** 2, axis=1)
    live = signal > 0
    if not live.any():
        return sqnr_db(r, t)
    # a channel quantized exactly adds no noise: cap it at the float32 ceiling rather than let inf swamp the mean
    per = 10.0 * np.log10(signal[live] / np.maximum(noise[live], signal[live] * 1e-15))
    return float(np.mean(per))


def group_sqnr(groups: Sequence[NodeGroup], sqnr: Sequence[TensorSqnr]) -> dict[str, float]:
    """The worst (lowest) tensor SQNR of each group's quantized nodes; groups without any are left out."""
    by_node: dict[str, float] = {}
    for t in sqnr:
        by_node[t.node] = min(by_node.get(t.node, math.inf), t.sqnr_db)
    out = {}
    for grp in groups:
        vals = [by_node[n] for n in grp.nodes if n in by_node]
        if vals:
            out[grp.name] = min(vals)
    return out


@dataclass(frozen=True, kw_only=True)
class GroupAlone:
    """The model with only ``group`` quantized, compared with FP32 on the target."""

    group: str
    cosine: float  # worst over the samples; NaN when an output was NaN/Inf (``problem`` says so)
    top1_agreement: float | None
    metric: float | None = None  # the eval metric (top-1 %), when eval data was given
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return rounded_fields(self)


def group_alone(
    model_path: str | Path,
    ranges: TensorRanges,
    plan: QuantPlan,
    groups: Sequence[NodeGroup],
    config: QuantConfig,
    feeds: Sequence[Mapping[str, np.ndarray]],
    reference: Sequence[Mapping[str, np.ndarray]],
    *,
    metric: Callable[[Path], float] | None = None,
    max_groups: int | None = None,
    threads: int | None = None,
) -> list[GroupAlone]:
    """Quantize each group *alone* (the plan's nodes in it, nothing else) and measure it against FP32.

    Args:
        model_path: the pre-processed graph ``plan`` and ``groups`` were made from.
        ranges: the calibration ranges, reused for every group.
        reference: FP32 outputs on ``feeds``.
        metric: optional scorer of a model file (e.g. top-1 % on eval data).
        max_groups: bound on the groups tried, largest (most quantized nodes) first.
    """
    chosen = set(plan.nodes_to_quantize)
    cands = [(grp, [n for n in grp.nodes if n in chosen]) for grp in groups]
    cands = [(grp, nodes) for grp, nodes in cands if nodes]
    if max_groups is not None and len(cands) > max_groups:
        cands = sorted(cands, key=lambda c: -len(c[1]))[:max_groups]
    out = []
    with scratch_dir("sens") as tmp:
        for i, (grp, nodes) in enumerate(cands):
            path = write_qdq(model_path, ranges, QuantPlan(tuple(nodes)), config, Path(tmp) / f"g{i}.onnx")
            fid = compare_outputs(reference, run_all(ort_runner(path, threads), feeds), rows=True)
            out.append(
                GroupAlone(
                    group=grp.name,
                    cosine=fid.cosine,
                    top1_agreement=fid.top1_agreement,
                    metric=metric(path) if metric else None,
                    problem=fid.problem,
                )
            )
            path.unlink()
    return out


def _weight_axis(g: GraphIndex, node: onnx.NodeProto, w: np.ndarray) -> int | None:
    """The output-channel axis ORT quantizes per channel: 0 for Conv (and Gemm with transB), else the last."""
    if w is None or w.ndim < 2:
        return None
    if node.op_type in ("Conv", "ConvTranspose"):
        return 0 if node.op_type == "Conv" else 1
    if node.op_type == "Gemm" and g.attr(node, "transB", 0):
        return 0
    return w.ndim - 1


def _activations(
    model: onnx.ModelProto, names: Sequence[str], feeds: Sequence[Mapping[str, np.ndarray]], *, flat: bool = True
) -> dict[str, np.ndarray]:
    """Values of ``names`` over all ``feeds``, read from one unoptimised ORT run: flattened and concatenated, or
    with ``flat=False`` concatenated on axis 0 (the batch) keeping their shape (scalars are flattened)."""
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inputs = {i.name for i in m.graph.input}
    present = {o.name for o in m.graph.output} | inputs
    for name in names:
        if name not in present:
            m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    outs = [n for n in names if n not in inputs]
    collected: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for f in feeds:
        for n, v in zip(outs, sess.run(outs, dict(f)), strict=True):
            collected[n].append(v)
        for n in names:
            if n in inputs:
                collected[n].append(f[n])
    if flat:
        return {n: np.concatenate([v.reshape(-1) for v in vs]) for n, vs in collected.items() if vs}
    return {n: np.concatenate([np.atleast_1d(v) for v in vs]) for n, vs in collected.items() if vs}


def _finite(v: float) -> float | None:
    return round(v, 3) if math.isfinite(v) else None
