"""Which segment of a zoo model (front, ``stages.i.downsample``, ``stages.i.blocks.j``, tail) each ONNX node came from.

The exporters know the module each node was traced in: dynamo writes ``pkg.torch.onnx.name_scopes`` into the raw
graph's node metadata, TorchScript writes the module path into node names (``/stages/stages.0/blocks/blocks.1/...``).
The graph optimizers drop that metadata, so export tags every node of the final graph with ``edgeformer.segment``
(by name; a node an optimizer made inherits the segment of its first input's producer). Per-op profiling then sums
kernel time per segment, which latency tables predict per segment: the two breakdowns line up. Torch-free.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

import onnx

SEGMENT_KEY = "edgeformer.segment"
_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
_BLOCK = re.compile(r"^stages\.(\d+)\.blocks\.(\d+)$")
_STAGE_CHILD = re.compile(r"^stages\.(\d+)\.(\w+)$")
_STAGE = re.compile(r"^stages\.(\d+)$")


def segment_of_scopes(scopes: Iterable[str]) -> str | None:
    """The segment a node belongs to from its module scopes (outermost first), ``None`` outside ``stages``."""
    stage = None
    for s in scopes:
        if _BLOCK.match(s):
            return s
        if (m := _STAGE_CHILD.match(s)) and m[2] != "blocks":
            return s
        if _STAGE.match(s):
            stage = s
    return stage  # glue between blocks (layout changes) belongs to its stage


def _raw_scopes(node: onnx.NodeProto) -> list[str]:
    for p in node.metadata_props:
        if p.key == _SCOPES_KEY:
            try:
                value = ast.literal_eval(p.value)  # a Python list literal; literal_eval never runs code
            except (ValueError, SyntaxError):
                return []
            return [str(v) for v in value] if isinstance(value, list) else []
    # TorchScript: "/stages/stages.0/blocks/blocks.1/ffn/Conv" names the module path, a container's child as
    # "<container>.<index>" after the container itself; collapse those, then list every dotted prefix
    parts: list[str] = []
    for part in [p for p in node.name.split("/") if p][:-1]:
        if parts and part.startswith(parts[-1] + "."):
            parts[-1] = part
        else:
            parts.append(part)
    dotted = ".".join(parts).split(".")
    return [".".join(dotted[: i + 1]) for i in range(len(dotted))] if parts else []


def raw_segments(raw: onnx.ModelProto) -> dict[str, str | None]:
    """Node name -> segment of the exporter's raw graph (before optimization)."""
    return {n.name: segment_of_scopes(_raw_scopes(n)) for n in raw.graph.node if n.name}


def tag_segments(final: onnx.ModelProto, raw: dict[str, str | None]) -> int:
    """Write ``edgeformer.segment`` on every node of ``final``; returns how many were found by name."""
    producer: dict[str, str] = {}
    seen_stage, found = False, 0
    for node in final.graph.node:
        if node.name in raw:  # the exporter's own node: its scope, or outside the stages (front or tail)
            found += 1
            seg = raw[node.name]
        else:  # made by an optimizer: where its input came from
            seg = next((producer[i] for i in node.input if i in producer), None)
        if seg is None:
            seg = "tail" if seen_stage else "front"
        if seg.startswith("stages"):
            seen_stage = True
        for o in node.output:
            producer[o] = seg
        del node.metadata_props[:]  # drop stale metadata (the optimizers keep none anyway); keep ours only
        node.metadata_props.add(key=SEGMENT_KEY, value=seg)
    return found


def node_segments(model: onnx.ModelProto) -> dict[str, str]:
    """Node name *and* output tensor name -> segment as tagged at export (empty for an untagged model).

    Runtimes rename the nodes they rewrite after the tensor they produce (ORT's NCHWc layout pass names a conv
    ``<output>_nchwc``), so output names are looked up too.
    """
    out = {}
    for n in model.graph.node:
        for p in n.metadata_props:
            if p.key == SEGMENT_KEY:
                out.update(dict.fromkeys(n.output, p.value))
                out[n.name] = p.value
    return out


def segment_of_name(name: str, tags: dict[str, str], by_length: list[str] | None = None) -> str | None:
    """The segment of a runtime's node ``name``: tagged as is, or minus a layout suffix, or the longest tagged name it
    starts with, or the module path in the name itself (TorchScript-style ``/stages/stages.1/...``)."""
    if name in tags:
        return tags[name]
    base = re.sub(r"(_nchwc|_token_\d+|_fused.*)$", "", name)
    if base in tags:
        return tags[base]
    for t in by_length if by_length is not None else sorted(tags, key=len, reverse=True):
        if name.startswith(t):
            return tags[t]
    probe = onnx.NodeProto(name=name)
    return segment_of_scopes(_raw_scopes(probe)) if "/" in name else None


def propagate(graph_nodes: Iterable[onnx.NodeProto], tags: dict[str, str]) -> dict[str, str]:
    """Segments of the nodes of a runtime's *optimized* graph: by name as :func:`segment_of_name`, else by the tensors
    it reads (a fused GELU or a layout reorder sits in the segment of its input). Returns node and tensor names."""
    nodes = list(graph_nodes)
    out = dict(tags)
    by_length = sorted(tags, key=len, reverse=True)
    for _ in range(3):  # saved graphs are topologically sorted in practice; a few passes cover any that are not
        changed = False
        for n in nodes:
            if n.name in out and all(o in out for o in n.output):
                continue
            seg = segment_of_name(n.name, tags, by_length) if n.name not in out else out[n.name]
            seg = seg or next((out[o] for o in n.output if o in out), None)
            seg = seg or next((out[i] for i in n.input if i in out), None)
            if seg is None:
                continue
            for name in (n.name, *n.output):
                if name not in out:
                    out[name] = seg
                    changed = True
        if not changed:
            break
    return out
