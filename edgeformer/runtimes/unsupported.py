"""Which nodes a backend cannot run, by op type *and* node name, for the message that refuses the model.

The runtimes' own messages name one or the other, or neither: onnxruntime names the op of a domain it does not
know but not the node; OpenVINO's conversion error lists op types and is cut by our one-line policy; TensorRT's
parser gives a node index that may have no name. Each function here turns what a backend says into
:class:`UnsupportedNode` rows found in the ONNX graph itself, and :func:`describe` words them.

Example::

    nodes = openvino_unsupported(Path("model.onnx"))
    raise ModelFileError(f"model.onnx: OpenVINO cannot run {describe(nodes)}; use --format ort.")
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple


class UnsupportedNode(NamedTuple):
    """A node of the ONNX graph a backend cannot run: its name (``""`` when the graph gave it none), op type and
    op domain (``""`` for the default ONNX domain)."""

    name: str
    op_type: str
    domain: str = ""

    def __str__(self) -> str:
        op = f"{self.domain}:{self.op_type}" if self.domain not in ("", "ai.onnx") else self.op_type
        return f"{op} at node {self.name!r}" if self.name else f"{op} at an unnamed node"


def describe(nodes: Sequence[UnsupportedNode], limit: int = 8) -> str:
    """``"2 nodes: com.example:FancyOp at node 'block3/fancy'; STFT at node 'stft_0'"``, the first ``limit``."""
    shown = "; ".join(str(n) for n in nodes[:limit])
    more = f"; and {len(nodes) - limit} more" if len(nodes) > limit else ""
    return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}: {shown}{more}"


def graph_nodes(model_path: Path) -> list[Any]:
    """Every ``NodeProto`` of the ONNX file, subgraphs (If/Loop/Scan bodies) included; ``[]`` for a file that is
    not a readable ONNX protobuf (an ``.ort`` flatbuffer). External data is not read."""
    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception:  # a refusal message must not fail on a second, different error
        return []
    return list(_walk(model.graph))


def _walk(graph: Any) -> Iterator[Any]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                yield from _walk(sub)


def nodes_by_op(model_path: Path, ops: Iterable[tuple[str | None, str]]) -> list[UnsupportedNode]:
    """The nodes whose ``(domain, op_type)`` is in ``ops`` (domain ``None``: any), in graph order."""
    wanted = list(ops)
    found = []
    for node in graph_nodes(model_path):
        domain = "" if node.domain == "ai.onnx" else node.domain
        if any(op == node.op_type and (d is None or d == domain) for d, op in wanted):
            found.append(UnsupportedNode(node.name, node.op_type, domain))
    return found


# --- onnxruntime --------------------------------------------------------------------------------------------
_ORT_PATTERNS = (
    # a domain it has no schema for: "Fatal error: com.example:FancyOp(-1) is not a registered function/op"
    re.compile(r"(?P<domain>[\w.]*):(?P<op>\w+)\(-?\d+\) is not a registered function/op"),
    # a type combination it has no kernel for
    re.compile(r"Could not find an implementation for (?P<op>\w+)\(\d+\) node with name '(?P<node>[^']*)'"),
    # an op the default domain does not define at the model's opset
    re.compile(r'In Node, \("(?P<node>[^"]*)", (?P<op>\w+), "(?P<domain>[^"]*)", -?\d+\)'),
)


def ort_unsupported(model_path: Path, error: BaseException | str) -> list[UnsupportedNode]:
    """The nodes onnxruntime's load error is about, read from the graph; ``[]`` when it names no op."""
    text = str(error)
    for pattern in _ORT_PATTERNS:
        m = pattern.search(text)
        if m is None:
            continue
        groups = m.groupdict()
        op, node, domain = groups["op"], groups.get("node"), groups.get("domain")
        domain = None if domain is None else ("" if domain == "ai.onnx" else domain)
        nodes = nodes_by_op(model_path, [(domain, op)])
        if node is not None:
            nodes = [n for n in nodes if n.name == node] or [UnsupportedNode(node, op, domain or "")]
        return nodes or [UnsupportedNode("", op, domain or "")]
    return []


# --- OpenVINO -----------------------------------------------------------------------------------------------
def openvino_unsupported(model_path: Path, device: str = "CPU") -> list[UnsupportedNode]:
    """The nodes of an ONNX file that OpenVINO cannot run on ``device``.

    OpenVINO's conversion error lists op types only (and our one-line policy cut it), so the model is converted
    again with the frontend's ``convert_partially``, which keeps each op it has no rule for as an
    ``ONNXFrameworkNode`` carrying the op's type and domain; the ONNX node is the one producing its output.
    A model that converts whole is asked of the device plugin instead (``Core.query_model``): ops missing from
    its answer are the unsupported ones. ``[]`` when OpenVINO is missing or names nothing.
    """
    try:
        import openvino as ov
        from openvino.frontend import FrontEndManager
    except ImportError:
        return []
    onnx_nodes = graph_nodes(model_path)
    by_output = {out: node for node in onnx_nodes for out in node.output}
    try:
        frontend = FrontEndManager().load_by_framework("onnx")
        # the framework nodes read their attributes from the input model: it must outlive them (freed early,
        # get_attributes() crashed natively, SIGSEGV, OpenVINO 2026.4)
        input_model = frontend.load(str(model_path))
        model = frontend.convert_partially(input_model)
    except Exception:  # not even partially convertible: nothing more precise to say than OpenVINO's own words
        return []
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "ONNXFrameworkNode":
            continue
        attrs = op.get_attributes()
        op_type, domain = str(attrs.get("ONNX_META_type", "?")), str(attrs.get("ONNX_META_domain", ""))
        outputs = [name for port in op.outputs() for name in port.get_names()]
        node = next((by_output[o] for o in outputs if o in by_output), None)
        found.append(UnsupportedNode(node.name if node is not None else op.get_friendly_name(), op_type, domain))
    del input_model  # only now
    if found:
        return found
    try:
        supported = ov.Core().query_model(model, device)
    except Exception:
        return []
    skip = {"Parameter", "Result", "Constant"}
    return [
        UnsupportedNode(op.get_friendly_name(), op.get_type_name(), "openvino")
        for op in model.get_ordered_ops()
        if op.get_type_name() not in skip and op.get_friendly_name() not in supported
    ]


# --- TensorRT -----------------------------------------------------------------------------------------------
def tensorrt_parser_nodes(
    errors: Sequence[tuple[int, str, str, str]], model_path: Path
) -> list[tuple[UnsupportedNode, str]]:
    """TensorRT's ONNX parser errors as ``(node, description)``.

    Each error is ``(node index, node name, node operator, description)`` as ``IParserError.node()``,
    ``.node_name()``, ``.node_operator()`` and ``.desc()`` give them; the name and operator are empty for some
    errors (and the index is -1 for errors about the whole graph), so they are filled from the graph's node at
    that index (the parser counts the top-level nodes of the main graph).
    """
    top = _top_level_nodes(model_path)
    out = []
    for index, name, op_type, desc in errors:
        node = top[index] if 0 <= index < len(top) else None
        name = name or (node.name if node is not None else "")
        op_type = op_type or (node.op_type if node is not None else "?")
        domain = node.domain if node is not None and node.op_type == op_type else ""
        out.append((UnsupportedNode(name, op_type, "" if domain == "ai.onnx" else domain), desc))
    return out


def _top_level_nodes(model_path: Path) -> list[Any]:
    import onnx

    try:
        return list(onnx.load(str(model_path), load_external_data=False).graph.node)
    except Exception:
        return []


# --- CoreML -------------------------------------------------------------------------------------------------
_COREML_PATTERNS = (
    # coremltools' torch.export frontend names both: "Unsupported fx node special_bessel_j0, kind special_bessel_j0"
    re.compile(r"Unsupported fx node (?P<node>\S+), kind (?P<op>[\w.:]+)"),
    # its TorchScript frontend the op only: "PyTorch convert function for op 'stft' not implemented."
    re.compile(r"convert function for op '(?P<op>[\w.:]+)' not implemented"),
    # its MIL ops: "Op "stft_0" (op_type: stft) ..."
    re.compile(r'Op "(?P<node>[^"]+)" \(op_type: (?P<op>\w+)\)'),
)


def coreml_unsupported(error: BaseException | str, torch_nodes: Iterable[tuple[str, str]]) -> list[UnsupportedNode]:
    """The torch nodes coremltools could not convert.

    CoreML converts from torch, not from ONNX, so the graph is the torch one: ``torch_nodes`` is
    ``(node name, op)`` for each node of the captured program (``torch.export``: ``node.name`` and
    ``node.target``'s name such as ``aten.stft.default``; TorchScript: the value name and ``node.kind()``,
    ``aten::stft``). coremltools names the op and not the node, or a MIL op by its name and type.
    """
    text = str(error)
    for pattern in _COREML_PATTERNS:
        m = pattern.search(text)
        if m is None:
            continue
        op, node = m["op"], m.groupdict().get("node")
        if node is not None:
            return [UnsupportedNode(node, op, "torch")]
        short = re.split(r"[.:]+", op.removeprefix("aten::").removeprefix("aten."))[0]
        hits = [
            UnsupportedNode(name, kind, "torch")
            for name, kind in torch_nodes
            if re.split(r"[.:]+", kind.removeprefix("aten::").removeprefix("aten."))[0] == short
        ]
        return hits or [UnsupportedNode("", op, "torch")]
    return []


def torch_nodes(graph: Any) -> list[tuple[str, str]]:
    """``(node name, op)`` of a captured torch program, for :func:`coreml_unsupported`, without importing torch:
    a ``torch.export.ExportedProgram`` (its FX nodes) or a TorchScript module (``inlined_graph``; the node is
    named by its module scope when it has one, else by its value name)."""
    if hasattr(graph, "graph_module"):  # ExportedProgram
        return [(n.name, str(n.target)) for n in graph.graph.nodes if n.op == "call_function"]
    inlined = getattr(graph, "inlined_graph", None)
    if inlined is None:
        return []
    out = []
    for n in inlined.nodes():
        value = f"%{n.output().debugName()}" if n.outputsSize() == 1 else ""
        out.append((n.scopeName() or value, n.kind()))
    return out
