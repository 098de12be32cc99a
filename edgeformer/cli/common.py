"""Shared CLI plumbing: option aliases (the same flag means the same thing everywhere), output, errors.

Errors: every command is wrapped by :func:`command`, which turns an ``EdgeformerError`` into one line on
stderr and its documented exit code (docs/faults.md), a missing package of the ``export`` extra into exit 5
naming the extra, Ctrl-C into 130, and anything else into a traceback with exit 1 (a bug). With ``--json``
the error is also printed as a JSON object on stdout.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from ..errors import EdgeformerError
from ..scratch import disk_full, is_disk_full

# tables are laid out for 120 columns (bench keeps its cells on one line at that width); when stdout is not a
# terminal rich would assume 80 and fold every cell
_WIDTH = max(120, shutil.get_terminal_size((120, 40)).columns)
console = Console(highlight=False, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

# --- shared options --------------------------------------------------------------------------------
ModelArg = Annotated[str, typer.Argument(help="A zoo model name (see `edgeformer models list`).", show_default=False)]
ArtifactArg = Annotated[
    Path, typer.Argument(help="An artifact folder (with artifact.json) or a bare .onnx file.", show_default=False)
]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: derived from the input).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace the output folder if it exists.")]
ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", "-t", min=1, help="Intra-op threads (default: all cores).")
]
BatchOpt = Annotated[int, typer.Option("--batch", "-b", min=1, help="Batch size of the exported/profiled input.")]
ResolutionOpt = Annotated[
    int | None, typer.Option("--resolution", "-r", min=16, help="Image side in pixels (default: the spec's).")
]
# the vocabulary: --format is what an artifact is, --backend what runs it, --preset how quantization is tuned
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="Artifact format to write: onnx, or coreml.")]
BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        help="Runtime that runs the artifact: ort, openvino, tensorrt, coreml; auto: the one its format implies.",
    ),
]
PresetOpt = Annotated[
    str,
    typer.Option("--preset", help="Quantization preset for the runtime that will run it: ort-cpu, openvino, tensorrt."),
]
WarmupOpt = Annotated[int, typer.Option("--warmup", min=0, help="Untimed calls before timing (reported apart).")]
MinTimeOpt = Annotated[float, typer.Option("--min-time", min=0.01, help="Seconds of timed calls (per model or row).")]
NoCacheOpt = Annotated[
    bool,
    typer.Option(
        "--no-cache",
        help="Recompute even if this step already ran on the same input with the same settings "
        "(the cache: $EDGEFORMER_CACHE_DIR, default ~/.cache/edgeformer/steps; EDGEFORMER_NO_CACHE=1 turns it off).",
    ),
]
CheckpointOpt = Annotated[
    Path | None, typer.Option("--checkpoint", help="Weights: official .pth/.pt, timm state dict, or .safetensors.")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log what each step does.")]


def command(fn: F) -> F:
    """Wrap a command: one-line errors with documented exit codes, 130 on Ctrl-C."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("json_out") or kwargs.get("as_json"))
        try:
            return fn(*args, **kwargs)
        except EdgeformerError as e:
            fail(e, as_json)
        except ModuleNotFoundError as e:  # a device install (no `export` extra) running an authoring command
            err = _missing_extra(e, fn)
            if err is None:
                raise
            fail(err, as_json)
        except OSError as e:  # a full disk that no writer worded (a system temp folder, a library's own write)
            if not is_disk_full(e):
                raise
            fail(disk_full(e, Path(e.filename) if getattr(e, "filename", None) else Path.cwd(), 0), as_json)
        except KeyboardInterrupt:
            err_console.print("[red]interrupted[/red]: nothing was written for the unfinished step.")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _missing_extra(e: ModuleNotFoundError, fn: Callable[..., Any]) -> EdgeformerError | None:
    """Exit 5 naming the extra when ``e`` is a package of the ``export`` extra; ``None`` for any other module."""
    from ..export.formats import missing_extra  # torch-free; lazy so that the device commands never load it

    # cli/<group>.py holds <verb>_cmd: export.export_cmd is `edgeformer export`, models.list_cmd `models list`
    group, verb = fn.__module__.rpartition(".")[2], fn.__name__.removesuffix("_cmd")
    return missing_extra(e, f"`edgeformer {group if group == verb else f'{group} {verb}'}`")


def fail(e: EdgeformerError, as_json: bool = False) -> None:
    first, _, details = str(e).partition("\n")
    if as_json:
        print(json.dumps({"error": {"type": type(e).__name__, "message": str(e), "exit_code": e.exit_code}}))
    # one line a script can grep; a table of details (e.g. expected vs given inputs) may follow it
    err_console.print(f"error ({type(e).__name__}): {first}", style="bold red", markup=False, emoji=False)
    if details:
        err_console.print(details, markup=False, emoji=False)
    raise typer.Exit(e.exit_code)


class JsonErrorsGroup(TyperGroup):
    """The root group: a usage error found while the command line is parsed (``--threads 0``, ``--batch x``, an
    unknown option) honours ``--json`` like every other error, as a JSON object on stdout; click still prints
    its usage message on stderr and exits 2.

    Parsing happens before any command's :func:`command` wrapper runs, so only the root group sees these: the
    root's own options fail in ``make_context``, a subcommand's inside ``invoke``.
    """

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        as_json = _asks_for_json(args)
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except typer.TyperException as e:  # typer's vendored click.ClickException (UsageError, BadParameter...)
            _usage_error_as_json(e, as_json)
            raise
        ctx.meta["edgeformer.json"] = as_json
        return ctx

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except typer.TyperException as e:  # typer's vendored click.ClickException (UsageError, BadParameter...)
            _usage_error_as_json(e, bool(ctx.meta.get("edgeformer.json")))
            raise


def _asks_for_json(args: Sequence[str]) -> bool:
    args = list(args)
    return "--json" in (args[: args.index("--")] if "--" in args else args)  # after `--` it is an argument


def _usage_error_as_json(e: typer.TyperException, as_json: bool) -> None:
    if as_json and hasattr(e, "format_message"):
        code = getattr(e, "exit_code", 2)
        print(json.dumps({"error": {"type": type(e).__name__, "message": e.format_message(), "exit_code": code}}))


def print_json(obj: Any) -> None:
    """Print ``obj`` (or ``obj.to_dict()``) as JSON on stdout, nothing else."""
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    print(json.dumps(obj, indent=2, default=str, ensure_ascii=False))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    t = Table(title=title, header_style="bold", title_justify="left")
    for c in columns:
        t.add_column(c, overflow="ellipsis", max_width=40)
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    return t


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def fmt_ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


# --- remote devices (edgeformer.agent) ------------------------------------------------------------------
DeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="Run on a device agent instead of here: agent://HOST:PORT (started there with `edgeformer agent serve`).",
    ),
]
TokenFileOpt = Annotated[
    Path | None,
    typer.Option("--token-file", help="File whose first line is the agent's token (default: $EDGEFORMER_AGENT_TOKEN)."),
]
FleetOpt = Annotated[
    Path | None, typer.Option("--fleet", help="A fleet file (TOML: agents with url and label): run on every label.")
]
ExecutorOpt = Annotated[
    str, typer.Option("--executor", help="Where fleet work is driven from: local (threads) or ray (the ray extra).")
]
RayAddressOpt = Annotated[
    str | None, typer.Option("--ray-address", help="Ray cluster for --executor ray (auto: the running one).")
]
