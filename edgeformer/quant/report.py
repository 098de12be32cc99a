"""The quantization report: JSON, Markdown and a PNG plot, written inside the quantized artifact.

Being files of the artifact, they are hashed in its manifest like the model: a report cannot drift
from the model it describes. Contents: per-layer SQNR, each group's decision (INT8 or float) with the
reason (``latency`` or ``accuracy``) and the timings behind it, FP32 vs INT8 latency on this device with
its device card, fidelity vs FP32 (cosine, top-1 agreement) and, with eval data, accuracy before/after.

Example::

    names = write_report(writer.dir, report)   # ["quant_report.json", "quant_report.md", "quant_report.png"]
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
from pathlib import Path
from typing import Any

from ..artifact import write_json_atomic
from ..errors import BackendUnavailableError

log = logging.getLogger(__name__)

JSON_NAME, MD_NAME, PNG_NAME = "quant_report.json", "quant_report.md", "quant_report.png"


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuantReport:
    """Everything the report shows; plain data (dicts/lists) so that it serialises as is.

    Attributes:
        model: model name.
        device: the device card (``DeviceCard.to_dict()``) the latencies were measured on.
        latency: ``{"fp32_ms", "int8_ms", "speedup", "threads"}``.
        fidelity: ``Agreement.to_dict()`` (:mod:`edgeformer.compare`) of the written model vs FP32.
        groups: one dict per group: ``group``, ``quantized_nodes``, ``decision``, ``reason``, timings,
            ``sqnr_db`` (worst tensor), ``alone_cosine`` (the group quantized alone).
        tensors: per-tensor SQNR rows (``TensorSqnr.to_dict()``).
        candidates: the timed placements (label, latency, cosine; ``Candidate.to_dict()``) for the plot.
        accuracy: ``BudgetResult.to_dict()`` or ``{"fp32_top1", "int8_top1"}``; ``None`` without eval data.
        search: the search settings and bounds met.
        calibration: ``CalibrationSummary.to_dict()``: samples used and skipped, the method used (a fallback
            from the one requested shows here) and the warnings.
        fallback: ``FidelityFallback.to_dict()`` (:mod:`.fallback`): the ops kept float to reach the cosine bar
            and their latency cost against the same placement all in INT8; ``None`` when the default plan met it.
    """

    model: str
    device: dict[str, Any]
    latency: dict[str, Any]
    fidelity: dict[str, Any]
    groups: list[dict[str, Any]]
    tensors: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    accuracy: dict[str, Any] | None = None
    search: dict[str, Any] = dataclasses.field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    speedup: dict[str, Any] | None = None  # timing.Speedup.to_dict(): FP32/INT8 paired, interval, int8_slower
    fallback: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantReport:
        """Read back :meth:`to_dict` output (``quant_report.json``); unknown or missing required keys raise."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown quantization report field(s): {', '.join(unknown)}")
        return cls(**d)

    def summary(self) -> dict[str, Any]:
        """The headline figures, for the manifest's ``extra``."""
        kept = [g for g in self.groups if g.get("decision") == "float"]
        return {
            "latency": self.latency,
            "fidelity": {k: self.fidelity.get(k) for k in ("cosine", "cosine_mean", "top1_agreement", "problem")},
            "float_groups": {
                "latency": sum(g["reason"] == "latency" for g in kept),
                "accuracy": sum(g["reason"] == "accuracy" for g in kept),
            },
            "accuracy": self.accuracy,
            "speedup": self.speedup,
            "fallback_ops": [op["node"] for op in (self.fallback or {}).get("float_ops", [])],
            "files": [JSON_NAME, MD_NAME, PNG_NAME],
        }

    def to_markdown(self) -> str:
        lat, fid, dev = self.latency, self.fidelity, self.device
        lines = [
            f"# Quantization report: {self.model}",
            "",
            f"Device: {dev.get('label', dev.get('cpu_model', '?'))} (id `{dev.get('device_id', '?')}`), "
            f"{lat.get('threads')} thread(s)",
            "",
            "| | FP32 | INT8 |",
            "|---|---:|---:|",
            f"| p50 latency (ms) | {_num(lat.get('fp32_ms'))} | {_num(lat.get('int8_ms'))} |",
            "",
            f"Speed-up: **{_num(lat.get('speedup'), '.2f')}x**. Fidelity vs FP32 on {fid.get('samples')} "
            f"{fid.get('on')}: cosine min {_num(fid.get('cosine'), '.5f')}, mean "
            f"{_num(fid.get('cosine_mean'), '.5f')}, top-1 agreement {_num(fid.get('top1_agreement'), '.3f')}."
            + (f" **Not measurable: {fid['problem']}.**" if fid.get("problem") else ""),
        ]
        if (sp := self.speedup) is not None:  # paired timing: say whether the speed-up is beyond the noise
            verdict = (
                "**INT8 is slower than FP32** beyond the interval"
                if sp["int8_slower"]
                else ("INT8 faster beyond the interval" if sp["decided"] else "within noise")
            )
            lines += [
                "",
                f"Paired FP32/INT8: {sp['ratio']:.3f} [{sp['low']:.3f}, {sp['high']:.3f}] over {sp['rounds']} "
                f"rounds ({sp['method']}, {sp['backend']}): {verdict}.",
            ]
        if self.calibration:
            c = self.calibration
            method = str(c.get("method"))
            if c.get("method_requested") not in (None, method):
                method += f" (fallback from {c['method_requested']}: too few samples)"
            skipped = c.get("skipped", 0) + c.get("holdout_skipped", 0)
            lines += [
                "",
                f"Calibration: {c.get('used')} sample(s) from `{c.get('source')}`, method {method}"
                + (f", {skipped} unreadable sample(s) skipped" if skipped else "")
                + ".",
            ]
            lines += [f"- {w}" for w in c.get("warnings", [])]
        if self.accuracy:
            a = self.accuracy
            lines += [
                "",
                f"Accuracy (top-1 %): FP32 {_num(a.get('fp32_top1'), '.2f')}, INT8 "
                f"{_num(a.get('int8_top1'), '.2f')}"
                + (f" (budget: drop <= {a['max_drop']})" if "max_drop" in a else ""),
            ]
            for f in a.get("fallbacks", []):
                lines.append(
                    f"- {f['group']} back to float for accuracy: top-1 {_num(f['metric'], '.2f')}, latency "
                    f"{_num(f['latency_before_ms'])} -> {_num(f['latency_after_ms'])} ms"
                )
        lines += fallback_markdown(self.fallback)
        lines += [
            "",
            "## Groups",
            "",
            "| group | INT8 nodes | decision | reason | ms INT8 | ms float | worst SQNR dB | cosine alone | note |",
            "|---|---:|---|---|---:|---:|---:|---:|---|",
        ]
        for g in self.groups:
            lines.append(
                f"| {g['group']} | {g['quantized_nodes']} | {g['decision']} | {g['reason']} | "
                f"{_num(g.get('latency_int8_ms'))} | {_num(g.get('latency_float_ms'))} | "
                f"{_num(g.get('sqnr_db'), '.1f')} | {_num(g.get('alone_cosine'), '.5f')} | "
                f"{str(g.get('note', '')).replace('|', '/')} |"
            )
        lines += ["", "## Per-tensor SQNR", "", "| tensor | kind | consumer | SQNR dB |", "|---|---|---|---:|"]
        for t in sorted(self.tensors, key=lambda t: math.inf if t["sqnr_db"] is None else t["sqnr_db"]):
            lines.append(f"| {t['tensor']} | {t['kind']} | {t['node']} | {_num(t['sqnr_db'], '.1f')} |")
        return "\n".join(lines) + "\n"


def fallback_markdown(fallback: dict[str, Any] | None) -> list[str]:
    """The report's section on the ops kept float for fidelity (none when the default plan met the bar)."""
    if not fallback or not fallback.get("float_ops"):
        return []
    lat = fallback.get("latency") or {}
    lines = [
        "",
        "## Kept float for fidelity",
        "",
        f"The default plan missed the cosine bar {fallback['bar']} vs FP32 (worst cosine "
        f"{_num(fallback.get('cosine_before'), '.5f')} on {fallback.get('on', 'held-out samples')}); with these "
        f"{len(fallback['float_ops'])} op(s) in float it reaches {_num(fallback.get('cosine_after'), '.5f')}. "
        "They are the fewest of the most sensitive ops (lowest SQNR first) found in "
        + f"{fallback.get('trials')} trial(s)"
        + ("; each one, quantized again alone, misses the bar." if fallback.get("minimal") else ".")
        + " The placement search started from this plan.",
        "",
        "| op | type | worst SQNR dB |",
        "|---|---|---:|",
    ]
    lines += [f"| {op['node']} | {op['op_type']} | {_num(op.get('sqnr_db'), '.1f')} |" for op in fallback["float_ops"]]
    if lat:
        lines += [
            "",
            f"Latency cost ({lat.get('threads')} thread(s), the two timed in alternating rounds): all-INT8 "
            f"{_num(lat.get('int8_ms'))} ms, delivered {_num(lat.get('delivered_ms'))} ms "
            f"({_num(lat.get('cost_ms'), '+.3f')} ms, {_num(lat.get('cost_pct'), '+.1f')}%).",
        ]
    return lines


def write_report(folder: str | Path, report: QuantReport) -> list[str]:
    """Write the JSON, Markdown and PNG into ``folder``; returns the file names written."""
    folder = Path(folder)
    write_json_atomic(folder / JSON_NAME, report.to_dict())
    (folder / MD_NAME).write_text(report.to_markdown(), encoding="utf-8")
    plot(report, folder / PNG_NAME)
    return [JSON_NAME, MD_NAME, PNG_NAME]


def require_plotting() -> None:
    """Fail fast where :func:`plot` cannot run: the PNG is part of the report, so of the artifact (hashed, and the
    same for the same step key), and matplotlib belongs to the 'export' extra, the authoring tools.

    Raises:
        BackendUnavailableError: matplotlib is not installed (exit 5), naming both ways out.
    """
    if importlib.util.find_spec("matplotlib") is None:
        # worded as export.formats.missing_extra words it for the CLI commands of the authoring stack
        raise BackendUnavailableError(
            "`edgeformer quantize` needs the 'export' extra for the placement search's report plot (matplotlib is not "
            "installed): pip install 'edgeformer[export]', or quantize without the search (--no-search, "
            "QuantConfig(search=SearchConfig(enabled=False)))."
        )


def plot(report: QuantReport, path: str | Path) -> None:
    """Two panels: worst SQNR per group (bars, float groups hatched) and latency vs cosine of the candidates."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display on build machines; never open a window
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    groups = [g for g in report.groups if g.get("sqnr_db") is not None]
    xs = range(len(groups))
    colors = ["tab:blue" if g["decision"] == "int8" else "tab:orange" for g in groups]
    ax1.bar(xs, [g["sqnr_db"] for g in groups], color=colors)
    ax1.set_xticks(list(xs), [g["group"] for g in groups], rotation=70, fontsize=6)
    ax1.set_ylabel("worst tensor SQNR (dB)")
    ax1.set_title("per-group SQNR (orange: kept float)")
    cands = report.candidates
    if cands:
        # a candidate with a NaN/Inf output has no cosine (None): it cannot be placed on the axis
        measured = [c for c in cands if c["cosine"] is not None]
        ax2.scatter([c["latency_ms"] for c in measured], [c["cosine"] for c in measured], s=14)
        for c in measured[:1]:
            ax2.annotate(c["label"], (c["latency_ms"], c["cosine"]), fontsize=7)
    lat = report.latency
    if lat.get("int8_ms") is not None and report.fidelity.get("cosine") is not None:
        ax2.scatter([lat["int8_ms"]], [report.fidelity["cosine"]], marker="*", s=120, color="tab:red", label="chosen")
    if lat.get("fp32_ms") is not None:
        ax2.scatter([lat["fp32_ms"]], [1.0], marker="s", s=40, color="black", label="FP32")
    ax2.set_xlabel("p50 latency (ms)")
    ax2.set_ylabel("worst cosine vs FP32")
    ax2.set_title("candidate placements")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(str(path), dpi=90)
    plt.close(fig)


def _num(v: Any, fmt: str = ".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)
