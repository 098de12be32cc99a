"""Which nodes go to int8: the transformer-aware default placement, and node groups to search over.

A :class:`QuantPlan` is the list of nodes to quantize plus, for every node left in float, the reason.
:func:`default_plan` builds it from a *pre-processed* graph (see ``ort_adapter.preprocess``; node
names change in pre-processing, so a plan belongs to the graph it was made from). :func:`node_groups`
cuts the graph into named blocks (``stages.1.blocks.0``) that a latency-aware search can toggle.

Placement rules and the measurements behind them. Whole-model figures are single-thread CPU time on
ORT 1.31's CPU EP, AVX2 EPYC without VNNI, random weights, ``benchmarks/quant_speed.py`` (speed-up
vs the FP32 export, p10 of 60 interleaved runs); kernel figures are single-op models.

* Conv/Gemm and MatMuls with a weight operand: int8. u8s8 QLinearConv runs 1x1 convolutions at ~2x
  FP32 (0.54 -> 0.25 ms, 224->448 channels at 14x14), the ceiling for everything below.
* Depthwise convs: their int8 kernel is only on par with FP32 (~1.0x), so they pay only inside an int8
  chain. Next to quantized convs/adds (SHViT) keeping them int8 won (S1 1.40x vs 1.34x float, S4 1.61x
  vs 1.48x); between two float GELUs (EfficientFormerV2's FFN) it lost (1.29x vs 1.39x float). So a
  depthwise conv with no int8 neighbour stays float (:func:`_drop_islands`).
* The stem convolution (<= 4 input channels) stays float: int8 ran it at 0.75x of FP32 (3->48 ch,
  112x112) and it would quantize the raw image, the most accuracy-sensitive tensor.
* Softmax, LayerNorm/InstanceNorm/GroupNorm, GELU/Erf, Div/Sub/Pow/Sqrt/ReduceMean: float. ORT CPU
  has no int8 kernels for them, so quantizing them only adds a DQ before and a Q after each; ORT's
  quantize-everything placement (u8, per-channel) ran L1 at 1.19x and V2-S1 at 1.10x against 1.59x and
  1.31x for this recipe (SHViT, whose norms and attention are tiny, was on par: 1.69x vs 1.64x on S4).
* Attention: q·kᵀ and attn·v multiply two activations. Quantizing *both* in a block made ORT CPU's
  fused QDQ attention path return wrong results (cosine 0.39 vs FP32; 1.0 with that fusion off), so at
  most one is quantized, the attn·v one, and only with ``quantize_attention_matmuls``. Activation x
  activation MatMuls that are not recognised around a Softmax stay float.
* Residual Adds: int8 (QLinearAdd keeps the chain in int8): +4% on L1, +2% on V2-S1, +2-4% on SHViT,
  cosine unchanged to 1e-5. Adds of a constant (attention position bias, unfused bias) stay float: the
  constant would set the range. An Add with no int8 neighbour stays float like a depthwise conv.
* A feature front-end in the graph (everything upstream of a ``Log``: the audio models' STFT-as-conv,
  power and mel MatMul) stays float: a power spectrum spans more decades than 8 bits hold. Quantized, it
  took the trained keywords_audioformer from 94.5 % to 35.6 % top-1; float, 93.4 % (minmax) and 94.5 %
  (percentile) on 256 held-out clips.
* A Relu/Clip right after a quantized op (its only consumer) joins the plan (:func:`_fold_activations`). Left
  out, ORT still drops the Relu but keeps a DequantizeLinear -> QuantizeLinear requantization of the tensor
  between the producer's range and the Relu's; in the plan, ORT's quantizer gives the producer the Relu's
  output range (zero point at 0 clamps the negatives) and removes the node. INT8/FP32, paired ratio of
  interleaved rounds at 2 threads on a shared Sapphire Rapids (AVX-512 VNNI) VM, ``benchmarks/int8_small.py``
  (load average ~2.3): SHViT-S1 0.797 -> 0.694 (1.25x -> 1.44x), SHViT-S4 0.454 -> 0.411 (2.20x -> 2.43x);
  Q/DQ kernels fell from 23 % to 14 % of S1's INT8 kernel time, the FFN's expanded tensor no longer requantized.
  Only with asymmetric activations: with symmetric ones (TensorRT) ORT keeps the Relu between a DQ and a Q.
* Mul and AveragePool stay float: quantizing Muls was within noise, AveragePool cost L1 a quarter of
  its gain (1.59x -> 1.23x). QOperator instead of QDQ was within noise (ORT fuses QDQ to the same
  kernels), so QDQ, which every runtime reads, is the default.

Example::

    plan = default_plan(onnx.load("pre.onnx"), QuantConfig())
    groups = node_groups(onnx.load("pre.onnx"))
    fewer = plan.without(groups[3].nodes, reason="search: block kept float")
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import onnx

from .config import QuantConfig
from .graph import GraphIndex, conv_kind

_FLOAT_REASONS = {
    "Softmax": "Softmax: exp of int8 logits loses the small probabilities; no int8 CPU kernel",
    "LayerNormalization": "normalization: statistics need float; no int8 CPU kernel (DQ/Q overhead only)",
    "InstanceNormalization": "normalization: statistics need float; no int8 CPU kernel (DQ/Q overhead only)",
    "GroupNormalization": "normalization: statistics need float; no int8 CPU kernel (DQ/Q overhead only)",
    "BatchNormalization": "normalization: folded at export when possible; left float otherwise",
    "Erf": "GELU part: no int8 CPU kernel, only adds Q/DQ",
    "Gelu": "GELU: no int8 CPU kernel, only adds Q/DQ",
}
_PASS_THROUGH = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Cast", "Identity")
_SCORE_OPS = ("Mul", "Div", "Add", "Where", *_PASS_THROUGH)


@dataclass(frozen=True)
class QuantPlan:
    """Nodes to quantize, and for every other node of interest the reason it stays float."""

    nodes_to_quantize: tuple[str, ...]
    reasons: Mapping[str, str] = field(default_factory=dict)

    def without(self, nodes: Iterable[str], reason: str) -> QuantPlan:
        """A plan with ``nodes`` moved to float, recording ``reason``."""
        drop = set(nodes)
        keep = tuple(n for n in self.nodes_to_quantize if n not in drop)
        reasons = dict(self.reasons)
        reasons.update({n: reason for n in self.nodes_to_quantize if n in drop})
        return QuantPlan(keep, reasons)

    def with_nodes(self, nodes: Iterable[str]) -> QuantPlan:
        """A plan that also quantizes ``nodes`` (kept in graph order of insertion)."""
        add = [n for n in nodes if n not in set(self.nodes_to_quantize)]
        reasons = {k: v for k, v in self.reasons.items() if k not in set(add)}
        return QuantPlan(self.nodes_to_quantize + tuple(add), reasons)

    def summary(self, model: onnx.ModelProto | None = None) -> dict[str, Any]:
        """Counts for reports: quantized nodes by op type (given the model) and float nodes by reason."""
        out: dict[str, Any] = {"quantized": len(self.nodes_to_quantize)}
        if model is not None:
            types = {n.name: n.op_type for n in model.graph.node}
            out["quantized_by_op"] = dict(sorted(Counter(types.get(n, "?") for n in self.nodes_to_quantize).items()))
        out["float_by_reason"] = dict(sorted(Counter(self.reasons.values()).items()))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"nodes_to_quantize": list(self.nodes_to_quantize), "reasons": dict(self.reasons)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantPlan:
        return cls(tuple(d["nodes_to_quantize"]), dict(d.get("reasons", {})))


@dataclass(frozen=True)
class NodeGroup:
    """A named set of nodes (a block or stage) that a placement search switches as one."""

    name: str
    nodes: tuple[str, ...]
    op_types: tuple[str, ...] = ()


def attention_matmuls(model: onnx.ModelProto) -> dict[str, str]:
    """Map each activation x activation MatMul next to a Softmax to ``"qk"`` or ``"av"``."""
    g = GraphIndex(model)
    roles: dict[str, str] = {}
    for s in model.graph.node:
        if s.op_type != "Softmax":
            continue
        node = g.producer.get(s.input[0])  # upwards through scale / bias / reshapes to q·kᵀ
        for _ in range(6):
            if node is None:
                break
            if node.op_type == "MatMul" and not any(g.is_constant(i) for i in node.input):
                roles[node.name] = "qk"
                break
            if node.op_type not in _SCORE_OPS:
                break
            node = next((g.producer[i] for i in node.input if i in g.producer and not g.is_constant(i)), None)
        frontier = list(g.consumers.get(s.output[0], ()))  # downwards to attn·v
        for _ in range(4):
            nxt = []
            for c in frontier:
                if c.op_type == "MatMul" and not any(g.is_constant(i) for i in c.input):
                    roles.setdefault(c.name, "av")
                elif c.op_type in _PASS_THROUGH:
                    nxt.extend(g.consumers.get(c.output[0], ()))
            frontier = nxt
    return roles


def default_plan(model: onnx.ModelProto, config: QuantConfig) -> QuantPlan:
    """The transformer-aware placement for a pre-processed graph (see the module docstring)."""
    g = GraphIndex(model)
    roles = attention_matmuls(model)
    allowed = set(config.op_types)
    keep_float_types = set(config.keep_float_op_types)
    keep_nodes = set(config.keep_float_nodes)
    quantize: list[str] = []
    reasons: dict[str, str] = {}
    front_end = _log_front_end(g)
    for node in model.graph.node:
        op, name = node.op_type, node.name
        if not name or op in ("Constant", "QuantizeLinear", "DequantizeLinear"):
            continue
        if name in keep_nodes:
            reasons[name] = "listed in keep_float_nodes"
        elif name in front_end:
            reasons[name] = _FRONT_END_REASON
        elif op in keep_float_types:
            reasons[name] = _FLOAT_REASONS.get(op, f"{op}: in keep_float_op_types")
        elif op not in allowed:
            if op in ("Add", "Mul", "Softmax", "Gelu") or op in _FLOAT_REASONS:
                reasons[name] = _FLOAT_REASONS.get(op, f"{op}: not in op_types (float by default)")
        elif (why := _float_reason(g, node, roles, config)) is not None:
            reasons[name] = why
        else:
            quantize.append(name)
    _drop_islands(g, quantize, reasons)
    if not config.symmetric_activations:
        _fold_activations(g, quantize, reasons, keep_nodes, keep_float_types)
    return QuantPlan(tuple(quantize), reasons)


_FOLDABLE = ("Relu", "Clip")


def _fold_activations(
    g: GraphIndex, quantize: list[str], reasons: dict[str, str], keep_nodes: set[str], keep_types: set[str]
) -> None:
    """Add each Relu/Clip whose input is the output of a quantized node and read by nothing else, in graph order.

    Quantized, ORT's QDQ quantizer removes the activation and quantizes its producer's output with the
    activation's range (the zero point clamps), so the int8 chain runs on without a DQ -> Q requantization.
    """
    chosen = set(quantize)
    added = set()
    for node in g.model.graph.node:
        if node.op_type not in _FOLDABLE or node.name in chosen or not node.input:
            continue
        if node.name in keep_nodes or node.op_type in keep_types:
            continue
        producer = g.producer.get(node.input[0])
        if producer is not None and producer.name in chosen and g.single_use(node.input[0]):
            added.add(node.name)
            reasons.pop(node.name, None)
    if added:
        order = {n.name: i for i, n in enumerate(g.model.graph.node)}
        quantize[:] = sorted(chosen | added, key=order.__getitem__)


_FRONT_END_REASON = (
    "feature front-end (feeds a Log, e.g. STFT + mel of a spectrogram): a power spectrum spans decades that "
    "8 bits cannot hold (keywords_audioformer: top-1 94.5% -> 35.6% with it quantized)"
)


def _log_front_end(g: GraphIndex) -> set[str]:
    """Names of every node upstream of a ``Log`` node: the feature extraction in front of the network."""
    seen: set[str] = set()
    stack = [n for n in g.model.graph.node if n.op_type == "Log"]
    while stack:
        node = stack.pop()
        for i in node.input:
            p = g.producer.get(i)
            if i and p is not None and p.name not in seen:
                seen.add(p.name)
                stack.append(p)
    return seen


_ISLAND_REASON = {
    "depthwise": "depthwise conv between float ops: its int8 kernel is no faster (~1.0x), so the Q/DQ around "
    "it is pure cost (EfficientFormerV2-S1: 1.29x -> 1.39x vs FP32 with these kept float)",
    "Add": "Add between float ops: QLinearAdd only pays inside an int8 chain",
}
_THROUGH = ("Relu", "Clip", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity")


def _drop_islands(g: GraphIndex, quantize: list[str], reasons: dict[str, str]) -> None:
    """Move to float the ops that only pay inside an int8 chain when no int8 neighbour is next to them.

    Neighbours are looked for through ops ORT carries in int8 or removes (Relu, Reshape, Transpose, ...).
    Repeated until stable, since dropping one op can strand the next; bounded by the number of nodes.
    """
    by_name = {n.name: n for n in g.model.graph.node}
    for _ in range(len(quantize) + 1):
        chosen = set(quantize)
        stranded = []
        for name in quantize:
            n = by_name[name]
            kind = "depthwise" if n.op_type == "Conv" and conv_kind(g, n) == "depthwise" else n.op_type
            if kind in _ISLAND_REASON and not _int8_neighbour(g, n, chosen):
                stranded.append((name, kind))
        if not stranded:
            return
        for name, kind in stranded:
            quantize.remove(name)
            reasons[name] = _ISLAND_REASON[kind]


def _int8_neighbour(g: GraphIndex, node: onnx.NodeProto, chosen: set[str]) -> bool:
    up = [g.producer.get(i) for i in node.input if i and not g.is_constant(i)]
    for _ in range(8):  # walk up through carried ops
        nxt = []
        for p in up:
            if p is None:
                continue
            if p.name in chosen:
                return True
            if p.op_type in _THROUGH:
                nxt.append(g.producer.get(p.input[0]))
        up = nxt
    down = [c for o in node.output for c in g.consumers.get(o, ())]
    for _ in range(8):
        nxt = []
        for c in down:
            if c.name in chosen:
                return True
            if c.op_type in _THROUGH:
                nxt.extend(g.consumers.get(c.output[0], ()))
        down = nxt
    return False


def _float_reason(g: GraphIndex, node: onnx.NodeProto, roles: Mapping[str, str], config: QuantConfig) -> str | None:
    op = node.op_type
    if op == "Conv":
        if len(node.input) < 2 or node.input[1] not in g.initializers:
            return "Conv with a non-constant weight"
        if conv_kind(g, node) == "stem":
            return "stem conv (<= 4 input channels): int8 slower than FP32 (0.75x) and quantizes the raw image"
    elif op == "MatMul" and not any(g.is_constant(i) for i in node.input):
        role = roles.get(node.name)
        if role is None:
            return "activation x activation MatMul outside attention: kept float"
        if not config.quantize_attention_matmuls:
            return f"attention MatMul ({role}): quantize_attention_matmuls is off"
        if role == "qk":
            return "attention q·kᵀ: only attn·v is quantized (both at once hit an ORT fused-kernel bug)"
    elif op == "Add" and any(g.is_constant(i) for i in node.input):
        return "Add of a constant (bias / attention position bias): the constant sets the range"
    elif op == "Gemm" and (len(node.input) < 2 or node.input[1] not in g.initializers):
        return "Gemm with a non-constant weight"
    return None


# --- groups --------------------------------------------------------------------------------------
_NUMERIC = re.compile(r"^\d+$")


def node_groups(model: onnx.ModelProto, level: str = "block") -> list[NodeGroup]:
    """Named groups of nodes, in graph order: ``level="block"`` (``stages.1.blocks.0``) or ``"stage"``.

    A node's module path comes from the exporter's metadata (``pkg.torch.onnx.name_scopes`` or
    ``namespace``) or else from its weight's name. Nodes with neither (pooling, residual adds, reshapes;
    exporters and pre-processing often drop metadata) join the first labelled node downstream, so a token
    mixer's ops join the block whose weights follow them; a node merging two activations (a residual
    add) joins its labelled producer instead, the branch it closes.
    """
    if level not in ("block", "stage"):
        raise ValueError(f"level must be 'block' or 'stage', got {level!r}")
    g = GraphIndex(model)
    labelled = {}
    for node in model.graph.node:
        path = _module_path(g, node)
        if path is not None:
            labelled[node.output[0]] = _group_key(path, level)
    key_of: dict[str, str] = {}
    last = "model"
    for node in model.graph.node:
        key = labelled.get(node.output[0])
        if key is None:
            direct = [labelled[p.output[0]] for i in node.input if (p := g.producer.get(i)) and p.output[0] in labelled]
            merges = sum(1 for i in node.input if i and not g.is_constant(i)) >= 2
            if direct and merges:  # a residual add closes the branch its labelled input comes from
                key = direct[0]
            else:
                key = _downstream_label(g, node, labelled) or (direct[0] if direct else last)
        key_of[node.output[0]] = last = key
    order = list(dict.fromkeys(key_of.values()))
    members: dict[str, list[onnx.NodeProto]] = {k: [] for k in order}
    for node in model.graph.node:
        members[key_of[node.output[0]]].append(node)
    return [
        NodeGroup(k, tuple(n.name for n in members[k]), tuple(sorted({n.op_type for n in members[k]}))) for k in order
    ]


def _downstream_label(g: GraphIndex, node: onnx.NodeProto, labelled: Mapping[str, str], limit: int = 64) -> str | None:
    """The group of the first labelled node reached through consumers (breadth first, at most ``limit``)."""
    frontier, seen = [node], 0
    while frontier and seen < limit:
        nxt = []
        for n in frontier:
            for c in (c for o in n.output for c in g.consumers.get(o, ())):
                if c.output and c.output[0] in labelled:
                    return labelled[c.output[0]]
                nxt.append(c)
                seen += 1
        frontier = nxt
    return None


def _module_path(g: GraphIndex, node: onnx.NodeProto) -> str | None:
    meta = {p.key: p.value for p in node.metadata_props}
    scopes = meta.get("pkg.torch.onnx.name_scopes")
    if scopes:
        try:
            parts = [s for s in ast.literal_eval(scopes) if s]
        except (ValueError, SyntaxError):
            parts = []
        if parts:  # the last entry is the op's own name; before it, the module path from the root down
            return parts[-2] if len(parts) > 1 else ""
    if "namespace" in meta:
        paths = [seg.split(":")[0].strip() for seg in meta["namespace"].split("/")]
        paths = [p for p in paths if p]
        if paths:
            return paths[-1]
    weights = [i for i in node.input[1:] if i in g.initializers and "." in i]
    if weights:
        return weights[0].rsplit(".", 1)[0]
    return None


def _group_key(path: str, level: str) -> str:
    """``stages.1.blocks.0.mlp.fc1`` -> ``stages.1.blocks.0`` (block) or ``stages.1`` (stage).

    Block: the first indexed container plus the child below it, and that child's index if it has one
    (``stages.1.downsample``, ``stages.1.blocks.0``). A path ending in an index is grouped with its
    siblings (``patch_embed.3`` -> ``patch_embed``); a path without an index is its own top-level name.
    """
    comps = path.split(".")
    first = next((i for i, c in enumerate(comps) if _NUMERIC.match(c)), None)
    if first is None:
        return comps[0] or "model"
    if first == len(comps) - 1:
        return ".".join(comps[:first]) or "model"
    if level == "stage":
        return ".".join(comps[: first + 1])
    end = first + 2
    if end < len(comps) and _NUMERIC.match(comps[end]):
        end += 1
    return ".".join(comps[:end])
