"""Per-operator breakdown from ONNX Runtime's profiler (Chrome-trace JSON).

ORT writes one ``"cat": "Node"`` event per executed kernel (``"<node>_kernel_time"``, with
``args.op_name`` and ``args.provider``) and one ``"cat": "Session"`` ``"model_run"`` event per
``run()``. Node names are those of the *optimized* graph, so fused kernels show up as what actually
ran (``FusedConv``, ``*_nchwc``, ``ReorderInput``) rather than the exported nodes.

Warm-up runs are excluded: the first ``warmup`` ``model_run`` events are dropped together with every
node event that starts before the first measured run. Profiling adds overhead per node, so these
figures are for *where time goes*, not for the headline latency (which the harness measures in a
session without profiling).

Example::

    ops = profile_ops(artifact, feeds, warmup=5, runs=20, threads=2)
    for row in ops.top(10):
        print(row.name, row.op_type, f"{row.pct:.1f}%")
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import InvalidInputError
from ..modelscopes import node_segments, propagate, segment_of_name
from ..records import Record
from ..runtimes import open_session
from ..runtimes.base import SessionOptions
from ..runtimes.feeds import check_feeds
from ..scratch import scratch_dir

log = logging.getLogger(__name__)

_KERNEL_SUFFIX = "_kernel_time"
_OPTIMIZED = "ort-optimized.onnx"


@dataclass(frozen=True, kw_only=True)
class NodeStat(Record):
    """Time spent in one node of the optimized graph over the measured runs."""

    name: str
    op_type: str
    provider: str
    calls: int
    total_us: float
    mean_us: float  # per call
    pct: float  # share of the summed kernel time of all nodes


@dataclass(frozen=True, kw_only=True)
class OpTypeStat(Record):
    """Time spent in all nodes of one op type."""

    op_type: str
    nodes: int
    calls: int
    total_us: float
    per_run_us: float
    pct: float


@dataclass(frozen=True, kw_only=True)
class SegmentStat(Record):
    """Kernel time of one model segment (``front``, ``stages.i.downsample``, ``stages.i.blocks.j``, ``tail``)."""

    segment: str
    nodes: int
    per_run_us: float
    pct: float


@dataclass(frozen=True, kw_only=True)
class OpBreakdown(Record):
    """Per-node and per-op-type kernel times, sorted slowest first.

    ``num_nodes`` counts every node timed; written JSON may keep only the slowest (``to_dict(top_n)``).

    ``kernel_us_per_run`` sums the kernels of one run; ``run_us_per_run`` is ORT's own ``model_run``
    span, so their difference is the executor's overhead (input copies, scheduling, profiling itself).
    """

    nodes: tuple[NodeStat, ...]
    op_types: tuple[OpTypeStat, ...]
    runs: int
    warmup_runs: int
    kernel_us_per_run: float
    run_us_per_run: float
    trace_path: str | None = None
    num_nodes: int = 0
    segments: tuple[SegmentStat, ...] = ()  # in graph order; empty when the model carries no segment tags

    def top(self, n: int = 15) -> tuple[NodeStat, ...]:
        """The ``n`` slowest nodes."""
        return self.nodes[:n]

    def to_dict(self, top_n: int | None = None) -> dict[str, Any]:
        d = super().to_dict()
        return d | {"nodes": d["nodes"][:top_n]} if top_n is not None else d

    def to_markdown(self, top_n: int = 15) -> str:
        lines = [
            f"Top {min(top_n, len(self.nodes))} of {len(self.nodes)} nodes over {self.runs} runs "
            f"(kernels {self.kernel_us_per_run:.0f} us/run, model_run {self.run_us_per_run:.0f} us/run):",
            "",
            "| node | op | provider | mean us | % |",
            "|---|---|---|---:|---:|",
        ]
        lines += [
            f"| `{n.name}` | {n.op_type} | {n.provider} | {n.mean_us:.1f} | {n.pct:.1f} |" for n in self.top(top_n)
        ]
        lines += ["", "| op type | nodes | us/run | % |", "|---|---:|---:|---:|"]
        lines += [f"| {o.op_type} | {o.nodes} | {o.per_run_us:.1f} | {o.pct:.1f} |" for o in self.op_types]
        if self.segments:
            lines += ["", "| segment | nodes | us/run | % |", "|---|---:|---:|---:|"]
            lines += [f"| {g.segment} | {g.nodes} | {g.per_run_us:.1f} | {g.pct:.1f} |" for g in self.segments]
        return "\n".join(lines)


def segment_breakdown(
    nodes: Sequence[NodeStat], runs: int, tags: Mapping[str, str], order: Sequence[str]
) -> tuple[SegmentStat, ...]:
    """Sum node times per export segment (:mod:`edgeformer.modelscopes`); ORT's fused nodes keep the name of the
    node they grew from, or extend it, so a node is matched by name, else by the longest tagged name it starts with.
    """
    if not tags:
        return ()
    names = sorted(tags, key=len, reverse=True)
    per: dict[str, list[float]] = {}
    for n in nodes:
        seg = segment_of_name(n.name, tags, names) or "other"
        per.setdefault(seg, []).append(n.total_us)
    total = sum(sum(v) for v in per.values()) or 1.0
    rank = {s: i for i, s in enumerate(dict.fromkeys([*order, "other"]))}
    return tuple(
        SegmentStat(segment=s, nodes=len(v), per_run_us=sum(v) / max(runs, 1), pct=100 * sum(v) / total)
        for s, v in sorted(per.items(), key=lambda kv: rank.get(kv[0], len(rank)))
    )


def parse_trace(path: str | Path, warmup_runs: int = 0) -> OpBreakdown:
    """Read an ORT profiling trace and aggregate kernel times, skipping the first ``warmup_runs`` runs.

    Args:
        path: the JSON file returned by ``InferenceSession.end_profiling()``.
        warmup_runs: how many leading ``run()`` calls were warm-up.

    Raises:
        InvalidInputError: the file is not an ORT trace, or has no measured run after the warm-up.
    """
    path = Path(path)
    try:
        events = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"{path}: cannot read the ORT profiling trace ({e}); profile again.") from e
    if isinstance(events, dict):  # the Chrome "object format" wraps the list
        events = events.get("traceEvents", [])
    if not isinstance(events, list):
        raise InvalidInputError(f"{path}: not a Chrome-trace event list; is it an ORT profile?")

    run_events = sorted(
        (e for e in events if isinstance(e, dict) and e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: e["ts"],
    )
    measured = run_events[warmup_runs:]
    if not measured:
        raise InvalidInputError(
            f"{path}: trace holds {len(run_events)} runs, none after the {warmup_runs} warm-up runs; "
            "profile with more runs."
        )
    first_ts = measured[0]["ts"]
    per_node: dict[str, dict[str, Any]] = {}
    for e in events:
        if not isinstance(e, dict) or e.get("cat") != "Node" or e.get("ts", -1) < first_ts:
            continue
        name = str(e.get("name", ""))
        if not name.endswith(_KERNEL_SUFFIX):  # fence events and others carry no kernel time
            continue
        node = name[: -len(_KERNEL_SUFFIX)]
        args = e.get("args", {})
        acc = per_node.setdefault(
            node, {"op_type": args.get("op_name", "?"), "provider": args.get("provider", "?"), "calls": 0, "us": 0.0}
        )
        acc["calls"] += 1
        acc["us"] += float(e.get("dur", 0))

    runs = len(measured)
    total = sum(a["us"] for a in per_node.values())
    nodes = sorted(
        (
            NodeStat(
                name=n,
                op_type=a["op_type"],
                provider=a["provider"],
                calls=a["calls"],
                total_us=a["us"],
                mean_us=a["us"] / a["calls"],
                pct=100.0 * a["us"] / total if total else 0.0,
            )
            for n, a in per_node.items()
        ),
        key=lambda s: (-s.total_us, s.name),
    )
    by_type: dict[str, list[NodeStat]] = defaultdict(list)
    for n in nodes:
        by_type[n.op_type].append(n)
    op_types = sorted(
        (
            OpTypeStat(
                op_type=t,
                nodes=len(ns),
                calls=sum(n.calls for n in ns),
                total_us=sum(n.total_us for n in ns),
                per_run_us=sum(n.total_us for n in ns) / runs,
                pct=sum(n.pct for n in ns),
            )
            for t, ns in by_type.items()
        ),
        key=lambda s: (-s.total_us, s.op_type),
    )
    return OpBreakdown(
        nodes=tuple(nodes),
        op_types=tuple(op_types),
        runs=runs,
        warmup_runs=min(warmup_runs, len(run_events)),
        kernel_us_per_run=total / runs,
        run_us_per_run=float(np.mean([e.get("dur", 0) for e in measured])),
        trace_path=str(path),
        num_nodes=len(nodes),
    )


def profile_ops(
    artifact: Any,
    feeds: Mapping[str, np.ndarray],
    *,
    warmup: int = 5,
    runs: int = 20,
    threads: int | None = None,
    profile_dir: str | Path | None = None,
) -> OpBreakdown:
    """Run ``artifact`` (an :class:`~edgeformer.artifact.Artifact`) on ORT with profiling and parse the trace.

    Args:
        artifact: an ONNX artifact.
        feeds: input arrays by name.
        warmup: leading runs left out of the statistics.
        runs: measured runs.
        threads: ORT intra-op threads (``None``: ORT's default).
        profile_dir: where to keep the trace; a temporary folder (deleted) when ``None``.
    """
    if profile_dir is not None:
        Path(profile_dir).mkdir(parents=True, exist_ok=True)
        trace = _run_profiled(artifact, feeds, warmup + runs, threads, Path(profile_dir))
        return _with_segments(parse_trace(trace, warmup), artifact, Path(profile_dir))
    with scratch_dir("ort-profile") as tmp:
        breakdown = parse_trace(_run_profiled(artifact, feeds, warmup + runs, threads, Path(tmp)), warmup)
        return _with_segments(dataclasses.replace(breakdown, trace_path=None), artifact, Path(tmp))


def _with_segments(breakdown: OpBreakdown, artifact: Any, folder: Path) -> OpBreakdown:
    """Per-segment sums when the model was tagged at export; ORT's own nodes are placed through the optimized graph
    the profiled session saved (it names the fused and layout nodes the trace reports)."""
    path = Path(artifact.model_path)
    if path.suffix != ".onnx":  # an .ort flatbuffer keeps no node metadata
        return breakdown
    model = onnx.load(str(path), load_external_data=False)
    tags = node_segments(model)
    if not tags:
        return breakdown
    order = list(dict.fromkeys(tags[n.name] for n in model.graph.node if n.name in tags))
    optimized = folder / _OPTIMIZED
    if optimized.exists():
        tags = propagate(onnx.load(str(optimized), load_external_data=False).graph.node, tags)
        optimized.unlink()
    return dataclasses.replace(breakdown, segments=segment_breakdown(breakdown.nodes, breakdown.runs, tags, order))


def _run_profiled(artifact: Any, feeds: Mapping[str, np.ndarray], n: int, threads: int | None, out: Path) -> Path:

    # the optimized graph names the nodes ORT made (fusions, layout reorders) that the trace times
    extra = (("optimized_model_filepath", str(out / _OPTIMIZED)), ("log_severity_level", 3))
    options = SessionOptions(threads=threads, enable_profiling=True, profile_dir=str(out), extra=extra)
    session = open_session(artifact, backend="ort", options=options)
    try:
        feeds = check_feeds(session.inputs, feeds)
        for _ in range(n):
            session.run(feeds)
        trace = session.end_profiling()
    finally:
        session.close()
    if trace is None:
        raise InvalidInputError("the ORT session returned no profiling trace; per-op profiling needs enable_profiling.")
    return Path(trace)
