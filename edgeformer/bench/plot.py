"""The bench report's latency-vs-fidelity plot (``bench.png``).

x: p50 latency (ms, log scale: rows span 100x between eager PyTorch and an int8 engine). y: distance
from PyTorch as ``1 - cosine`` (log scale, so 0.999 and 0.99999 are as far apart as they are different
in practice), with the fidelity bar drawn as a line: the good rows sit left of everything else and
under the line. Peers are grey, edgeformer's rows blue, the marked row a star.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report import BenchReport

# a row identical to PyTorch (the reference itself) would sit at 1 - cosine = 0, off a log axis
_FLOOR = 1e-8


def write_plot(report: BenchReport, path: Path) -> Path | None:
    """Draw the timed rows of ``report`` into ``path`` (atomically); ``None`` when no row has both figures."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display on build machines; never open a window
    import matplotlib.lines
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = [r for r in report.rows if r.status == "ok" and r.p50_ms is not None and r.parity_cosine is not None]
    if not rows:
        return None
    best = report.best()
    bar = 1.0 - report.config.min_cosine
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    try:
        for r in rows:
            y = max(1.0 - r.parity_cosine, _FLOOR)
            style = (
                dict(marker="*", s=220, color="tab:orange", zorder=3)
                if r is best
                else dict(marker="o", s=40, color="0.55" if r.peer else "tab:blue", zorder=2)
            )
            ax.scatter([r.p50_ms], [y], **style)
            ax.annotate(r.name, (r.p50_ms, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        ax.axhline(bar, color="tab:red", linestyle="--", linewidth=1)
        ax.text(
            ax.get_xlim()[0],
            bar,
            f" fidelity bar: cosine {report.config.min_cosine}",
            color="tab:red",
            fontsize=7,
            va="bottom",
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())  # "20", not "2x10^1"
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(
            handles=[
                matplotlib.lines.Line2D([], [], marker="o", color="tab:blue", linestyle="", label="edgeformer"),
                matplotlib.lines.Line2D([], [], marker="o", color="0.55", linestyle="", label="peer"),
                matplotlib.lines.Line2D(
                    [], [], marker="*", color="tab:orange", markersize=12, linestyle="", label="fastest meeting the bar"
                ),
            ],
            fontsize=7,
            loc="upper right",
        )
        ax.set_xlabel(f"p50 latency, ms (batch {report.batch}, threads {report.threads or 'default'})")
        ax.set_ylabel("1 - cosine vs PyTorch (lower is closer)")
        ax.set_title(f"{report.model}: latency vs fidelity ({report.device.get('cpu_model', '?')})", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
        fig.savefig(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
    return path
