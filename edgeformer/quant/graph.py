"""Small read-only views of an ONNX graph, and the one float rewrite quantization relies on.

:class:`GraphIndex` answers "who produces / consumes this tensor, is it a weight, what constant is
it" in O(1); the recipe and the placement search classify nodes with it. :func:`fuse_gelu` turns the
five-node erf-GELU that torch's exporter emits at opset 18 (``Div, Erf, Add, Mul, Mul``) into ORT's
single fused ``com.microsoft.Gelu``: ORT's own GeluFusion does not match the operand order the
dynamo exporter writes, and the unfused form cost EfficientFormer-L1 ~11% and EfficientFormerV2-S1
~16% of FP32 CPU time on this project's CI machine (1 thread).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import onnx
from onnx import helper, numpy_helper

log = logging.getLogger(__name__)

MS_DOMAIN = "com.microsoft"


@dataclass(frozen=True)
class GraphIndex:
    """Producer/consumer maps and constants of ``model.graph`` (top level only; no subgraphs)."""

    model: onnx.ModelProto

    @cached_property
    def initializers(self) -> dict[str, onnx.TensorProto]:
        return {t.name: t for t in self.model.graph.initializer}

    @cached_property
    def constant_nodes(self) -> dict[str, onnx.NodeProto]:
        return {n.output[0]: n for n in self.model.graph.node if n.op_type == "Constant" and n.output}

    @cached_property
    def producer(self) -> dict[str, onnx.NodeProto]:
        return {o: n for n in self.model.graph.node for o in n.output}

    @cached_property
    def consumers(self) -> dict[str, list[onnx.NodeProto]]:
        out: dict[str, list[onnx.NodeProto]] = {}
        for n in self.model.graph.node:
            for i in n.input:
                if i:
                    out.setdefault(i, []).append(n)
        return out

    @cached_property
    def graph_outputs(self) -> set[str]:
        return {o.name for o in self.model.graph.output}

    def is_constant(self, name: str) -> bool:
        return name in self.initializers or name in self.constant_nodes

    def constant(self, name: str) -> np.ndarray | None:
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.constant_nodes.get(name)
        if node is not None:
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
        return None

    def scalar(self, name: str) -> float | None:
        v = self.constant(name)
        return float(v.reshape(())) if v is not None and v.size == 1 else None

    def single_use(self, name: str) -> bool:
        return len(self.consumers.get(name, ())) == 1 and name not in self.graph_outputs

    def attr(self, node: onnx.NodeProto, name: str, default=None):
        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default


def conv_kind(g: GraphIndex, node: onnx.NodeProto) -> str:
    """``"depthwise"`` (groups > 1), ``"pointwise"`` (1x1), ``"stem"`` (<= 4 input channels) or ``"spatial"``."""
    w = g.initializers.get(node.input[1]) if len(node.input) > 1 else None
    if w is None:
        return "spatial"
    if (g.attr(node, "group", 1) or 1) > 1:
        return "depthwise"
    if len(w.dims) >= 3 and all(d == 1 for d in w.dims[2:]):
        return "pointwise"
    return "stem" if len(w.dims) > 1 and w.dims[1] <= 4 else "spatial"


def fuse_gelu(model: onnx.ModelProto) -> int:
    """Replace each ``x * 0.5 * (1 + erf(x / sqrt(2)))`` subgraph by ``com.microsoft.Gelu``, in place.

    Matches ``Div(x, sqrt 2)`` or ``Mul(x, 1/sqrt 2)`` -> ``Erf`` -> ``Add 1`` followed by the two
    ``Mul`` (by ``x`` and by ``0.5``) in either order. Intermediates used elsewhere are left alone.

    Returns:
        The number of GELUs fused.
    """
    g = GraphIndex(model)
    close = lambda v, want: v is not None and abs(v - want) < 1e-4  # noqa: E731
    # nodes are keyed by their (unique, SSA) first output: protobuf wrappers have no stable identity
    replaced: dict[str, onnx.NodeProto] = {}  # output of the last Mul -> the Gelu that replaces it
    dropped: set[str] = set()
    for erf in model.graph.node:
        if erf.op_type != "Erf" or not g.single_use(erf.input[0]) or not g.single_use(erf.output[0]):
            continue
        scale = g.producer.get(erf.input[0])
        if scale is None or len(scale.input) != 2:
            continue
        if scale.op_type == "Div" and close(g.scalar(scale.input[1]), 2**0.5):
            x = scale.input[0]
        elif scale.op_type == "Mul" and any(close(g.scalar(i), 2**-0.5) for i in scale.input):
            x = next(i for i in scale.input if g.scalar(i) is None)
        else:
            continue
        add = g.consumers[erf.output[0]][0]
        if (
            add.op_type != "Add"
            or not close(g.scalar(_other(add, erf.output[0])), 1.0)
            or not g.single_use(add.output[0])
        ):
            continue
        mul1 = g.consumers[add.output[0]][0]
        if mul1.op_type != "Mul" or not g.single_use(mul1.output[0]):
            continue
        mul2 = g.consumers[mul1.output[0]][0]
        if mul2.op_type != "Mul":
            continue
        operands = {_other(mul1, add.output[0]), _other(mul2, mul1.output[0])}
        half = operands - {x}
        if x not in operands or len(half) != 1 or not close(g.scalar(half.pop()), 0.5):
            continue
        replaced[mul2.output[0]] = helper.make_node(
            "Gelu", [x], [mul2.output[0]], name=f"{mul2.name or mul2.output[0]}_gelu", domain=MS_DOMAIN
        )
        dropped |= {scale.output[0], erf.output[0], add.output[0], mul1.output[0]}
    if not replaced:
        return 0
    nodes = []
    for n in model.graph.node:
        key = n.output[0] if n.output else ""
        if key in replaced:
            nodes.append(replaced[key])
        elif key not in dropped:
            nodes.append(n)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    _drop_unused_initializers(model)
    log.info("fused %d erf-GELU subgraphs into com.microsoft.Gelu", len(replaced))
    return len(replaced)


def _other(node: onnx.NodeProto, name: str) -> str:
    return node.input[1] if node.input[0] == name else node.input[0]


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    if len(keep) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
