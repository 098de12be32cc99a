"""The ``edgeformer`` command: joins one Typer module per command group.

Exit codes: 0 ok · 1 bug · 2 usage · 3 invalid input · 4 unsafe input · 5 unavailable here ·
6 quality gate failed · 7 partial success · 130 interrupted.
"""

from __future__ import annotations

import importlib

import typer

HELP = """Take mobile vision and audio transformers to the edge.

\b
Typical path:
  edgeformer models list                         # what is in the zoo
  edgeformer export efficientformer_l1 -o l1     # parity-checked ONNX
  edgeformer quantize l1 --calib images/ -o l1-int8
  edgeformer profile l1-int8 --per-op            # latency on this device
  edgeformer bench efficientformer_l1            # everything above, one table

Exit codes: 0 ok, 2 usage, 3 invalid input, 4 unsafe input refused, 5 target unavailable here,
6 quality gate failed, 7 partial success, 130 interrupted, 1 internal bug.
"""

app = typer.Typer(
    name="edgeformer",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# (module, attribute, command name or None for a group added with add_typer)
_COMMANDS = (
    ("models", "app", "models"),
    ("export", "export_cmd", "export"),
    ("quantize", "quantize_cmd", "quantize"),
    ("compile", "compile_cmd", "compile"),
    ("profile", "profile_cmd", "profile"),
    ("bench", "bench_cmd", "bench"),
    ("predict", "predict_cmd", "predict"),
    ("slim", "slim_cmd", "slim"),
)

for _module, _attr, _name in _COMMANDS:
    try:
        _obj = getattr(importlib.import_module(f"{__package__}.{_module}"), _attr)
    except ModuleNotFoundError as _e:  # a verb whose module is not written yet is simply absent
        if _e.name != f"{__package__}.{_module}":
            raise
        continue
    if isinstance(_obj, typer.Typer):
        app.add_typer(_obj, name=_name)
    else:
        app.command(_name)(_obj)


def main() -> None:
    app(prog_name="edgeformer")


if __name__ == "__main__":
    main()
