"""The slimming report: ``report.json`` (the typed record), ``report.md`` and ``report.html`` (tables, the per-block
breakdown of why blocks were cut, the greedy steps), ``pareto.csv`` and ``pareto.png`` (test top-1 against measured
latency: parent, slimmed models, uniform baselines)."""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path
from typing import Any

from ..artifact import write_text_atomic


def _rows(report: Any) -> list[dict[str, Any]]:
    p = report.parent
    rows = [
        {
            "name": "parent",
            "kind": "parent",
            "budget_ms": "",
            "predicted_ms": p.predicted_ms,
            "measured_ms": p.measured_ms,
            "top1": p.top1,
            "params": p.params,
            "met": "",
        }
    ]
    for b in report.budgets:
        for m in (b.slim, b.uniform):
            rows.append(
                {
                    "name": f"{m.kind} @ {b.budget_ms:g} ms",
                    "kind": m.kind,
                    "budget_ms": b.budget_ms,
                    "predicted_ms": m.predicted_ms if m.predicted_ms is not None else "",
                    "measured_ms": m.measured_ms,
                    "top1": m.top1,
                    "params": m.params,
                    "met": (m.measured_ms <= b.budget_ms * 1.05),
                }
            )
    return rows


def markdown(report: Any) -> str:
    p = report.parent
    lines = [
        f"# Slimming {report.model}",
        "",
        f"Device: {report.device} · latency table `{report.table}` · {report.precision} · fine-tuning {report.epochs} "
        f"epoch(s) with distillation · seed {report.seed}.",
        f"Parent: {p.measured_ms:.3f} ms measured ({p.predicted_ms:.3f} predicted), test top-1 {p.top1:.2f} %, "
        f"{p.params / 1e6:.3f} M params.",
        "",
        "| budget ms | model | predicted ms | measured ms | met (≤ budget × 1.05) | test top-1 | Δ parent | params M |",
        "|---:|---|---:|---:|---|---:|---:|---:|",
    ]
    for b in report.budgets:
        for m in (b.slim, b.uniform):
            pred = f"{m.predicted_ms:.3f}" if m.predicted_ms is not None else "—"
            met = "yes" if m.measured_ms <= b.budget_ms * 1.05 else "**MISS**"
            lines.append(
                f"| {b.budget_ms:g} | {m.kind} | {pred} | {m.measured_ms:.3f} | {met} | {m.top1:.2f} | "
                f"{m.top1 - p.top1:+.2f} | {m.params / 1e6:.3f} |"
            )
    lines += [
        "",
        "## Search",
        "",
        "| budget ms | delivered by | greedy (val, inherited) | evolution (val, inherited) | better | search s | "
        "picks tried: predicted → measured ms |",
        "|---:|---|---:|---:|---|---:|---|",
    ]
    for b in report.budgets:
        ev = f"{b.evolution_val:.2f}" if b.evolution_val is not None else "—"
        tried = ", ".join(f"{p:.3f} → {m:.3f}" for p, m in b.attempts) or "—"
        lines.append(
            f"| {b.budget_ms:g} | {b.search} | {b.greedy_val:.2f} | {ev} | {b.better_search} | {b.search_s:.0f} | "
            f"{tried} |"
        )
    for b in report.budgets:
        lines += [
            "",
            f"## Why blocks were cut at {b.budget_ms:g} ms (predicted per-block ms)",
            "",
            "| segment | parent | slimmed | saved |",
            "|---|---:|---:|---:|",
        ]
        for seg, parent_ms, child_ms in b.breakdown:
            cut = " (cut)" if child_ms == 0 else ""
            lines.append(f"| {seg} | {parent_ms:.3f} | {child_ms:.3f}{cut} | {parent_ms - child_ms:+.3f} |")
    if report.greedy_steps:
        lines += [
            "",
            "## Greedy steps (least validation accuracy lost per predicted ms saved)",
            "",
            "| # | action | predicted ms | saved ms | val top-1 | lost |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {i} | {s.action} | {s.predicted_ms:.3f} | {s.saved_ms:.3f} | {s.accuracy:.2f} | {s.lost:+.2f} |"
            for i, s in enumerate(report.greedy_steps, 1)
        ]
    return "\n".join(lines) + "\n"


def to_html(md: str, title: str) -> str:
    """Markdown tables and headings to HTML (the only constructs :func:`markdown` writes)."""
    body, table = [], []

    def flush() -> None:
        if table:
            head, *rest = table
            body.append(
                "<table><tr>"
                + "".join(f"<th>{c}</th>" for c in head)
                + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rest)
                + "</table>"
            )
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()).replace("**", "") for c in line.strip("|").split("|")]
            if not all(set(c) <= set("-:") for c in cells):
                table.append(cells)
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush()
    style = "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    return (
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>{style}</style>"
        + "\n".join(body)
        + '\n<img src="pareto.png" alt="Pareto">\n'
    )


def write_reports(out: Path, report: Any) -> None:
    write_text_atomic(out / "report.json", report.to_json() + "\n")
    md = markdown(report)
    write_text_atomic(out / "report.md", md)
    write_text_atomic(out / "report.html", to_html(md, f"slimming {report.model}"))
    rows = _rows(report)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(out / "pareto.csv", buf.getvalue())
    _plot(out / "pareto.png", report)


def _plot(path: Path, report: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    p = report.parent
    ax.scatter([p.measured_ms], [p.top1], marker="*", s=160, color="black", label="parent", zorder=3)
    for kind, marker, color in (("slim", "o", "tab:blue"), ("uniform", "s", "tab:orange")):
        ms = [getattr(b, kind).measured_ms for b in report.budgets]
        acc = [getattr(b, kind).top1 for b in report.budgets]
        order = sorted(range(len(ms)), key=ms.__getitem__)
        ax.plot(
            [ms[i] for i in order],
            [acc[i] for i in order],
            marker=marker,
            color=color,
            label="slimmed (edgeformer)" if kind == "slim" else "uniform width scaling",
        )
    for b in report.budgets:
        ax.axvline(b.budget_ms, color="grey", lw=0.6, ls=":")
    ax.set_xlabel(f"measured p50 latency, ms ({report.precision})")
    ax.set_ylabel("test top-1, %")
    ax.set_title(f"{report.model} on {report.device.split(' · ')[0]}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
