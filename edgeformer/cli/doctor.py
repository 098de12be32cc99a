"""``edgeformer doctor``: versions, CPU features, GPUs, and what can be built and run on this machine."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from ..doctor import Capability, DoctorReport, diagnose
from .common import JsonOpt, command, console, print_json

_PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@command
def doctor_cmd(json_out: JsonOpt = False) -> None:
    """Check this machine: Python and package versions, CPU features (AVX2, AVX-512 VNNI, AMX, BF16, FP16),
    GPUs, and which formats and precisions can be built and run here, with the reason and the fix for each that
    cannot (the same reasons `compile` exits 5 with and `bench` prints for skipped rows). Always exits 0.

    Example: edgeformer doctor --json
    """
    report = diagnose()
    if json_out:
        print_json(report)
        return
    notes: dict[tuple[str, str | None], int] = {}  # (why, fix) -> footnote number

    def note(why: str, fix: str | None) -> str:
        return f"[{notes.setdefault((why, fix), len(notes) + 1)}]"

    for line in _summary(report, note):
        _line(line)
    console.print(_matrix(report.matrix, note))
    for (why, fix), n in notes.items():
        _line(f"[{n}] {why}")
        if fix:
            _line(f"    fix: {fix}")


def _line(text: str) -> None:
    # reasons hold pip extras ("edgeformer[tensorrt]"): no markup; long lines wrap in the terminal, not here
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _summary(r: DoctorReport, note) -> list[str]:
    lines = [f"edgeformer {r.edgeformer or '(not installed as a package)'} · Python {r.python} · {r.platform}"]
    for extra, versions in r.packages.items():
        shown = ", ".join(f"{d} {v or '—'}" for d, v in versions.items())
        missing = [d for d, v in versions.items() if v is None]
        hint = "" if not missing else f"  (pip install 'edgeformer[{extra}]')" if extra != "base" else "  (reinstall)"
        lines.append(f"{'packages' if extra == 'base' else '':10}{extra + ':':10}{shown}{hint}")
    c = r.cpu
    lines.append(f"{'CPU':10}{c.cpu_model} · {c.machine} · {c.physical_cores} cores, {c.usable_cpus} usable here")
    lines.append(f"{'features':10}" + " · ".join(f"{f.name} {'✓' if f.present else '✗'}" for f in r.features))
    if r.gpus:
        gpus = "; ".join(r.gpus)
    else:
        gpus = f"no NVIDIA GPU: {r.gpu_problem}" if r.gpu_problem else "an NVIDIA GPU is present; nvidia-smi lists none"
    lines.append(f"{'GPU':10}{gpus}")
    for title, items in (("targets", r.targets), ("backends", r.backends)):
        for i, comp in enumerate(items):
            state = f"✓ {comp.detail}" if comp.ok else f"✗ {note(comp.reason or '', comp.fix)}"
            lines.append(f"{title if i == 0 else '':10}{comp.name:10}{state}")
    return lines


def _matrix(rows: tuple[Capability, ...], note) -> Table:
    t = Table(
        title=escape("what runs here (✅ build and run · build only · ⏭ neither; [n]: why, below)"),
        title_justify="left",
    )
    t.add_column("format (backend)")
    for p in _PRECISIONS:
        t.add_column(p)
    for fmt in dict.fromkeys(c.format for c in rows):
        mine = {c.precision: c for c in rows if c.format == fmt}
        cells = [_cell(mine[p], note) if p in mine else "" for p in _PRECISIONS]
        t.add_row(escape(f"{fmt} ({next(iter(mine.values())).backend})"), *cells)
    return t


def _cell(c: Capability, note) -> str:
    if c.ok:
        return "✅" + (f" {escape(note('note: ' + c.note, None))}" if c.note else "")
    why = "; ".join(dict.fromkeys(r for r in (c.make, c.run) if r))
    mark = escape(note(why, c.fix))
    return f"build only {mark}" if c.make is None else f"⏭ {mark}"
