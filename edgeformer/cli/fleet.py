"""``edgeformer fleet``: the device agents of a fleet file, their cards and health."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..agent import Fleet, fleet_status
from ..errors import PartialFailureError
from .common import JsonOpt, command, console, print_json, table

app = typer.Typer(
    help="A fleet of device agents (a TOML file naming agents and labels).", no_args_is_help=True, rich_markup_mode=None
)
FleetArg = Annotated[Path, typer.Argument(help="The fleet file (TOML).", show_default=False)]


@command
def status_cmd(fleet: FleetArg, json_out: JsonOpt = False) -> None:
    """Ask every agent of the fleet for its device card and queue; exit 7 when some do not answer.

    Example: edgeformer fleet status fleet.toml
    """
    found = fleet_status(Fleet.load(fleet))
    if json_out:
        print_json([h.to_dict() for h in found])
    else:
        rows = []
        for h in found:
            a, info = h.agent, h.info
            if info is None:
                rows.append((a.label, a.name, a.url, "✗", h.problem, ""))
                continue
            backends = ", ".join(b.name for b in info.backends if b.reason is None)
            queue = f"{info.jobs.queued}/{info.jobs.capacity} queued, {info.jobs.done} done"
            rows.append((a.label, a.name, a.url, "✓", f"{info.device.label} · {backends}", queue))
        t = table(f"fleet {fleet}", ("label", "agent", "url", "ok", "device", "jobs"), rows)
        t.columns[4].max_width = 90  # the device card's label: CPU, cores, ISA, runtime
        console.print(t)
    down = [h for h in found if not h.ok]
    if down:
        why = "; ".join(f"{h.agent.name}: {h.problem}" for h in down)
        raise PartialFailureError(f"{len(down)} of {len(found)} agents did not answer: {why}")


app.command("status")(status_cmd)
