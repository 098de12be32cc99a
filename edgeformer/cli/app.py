"""The ``edgeformer`` command: joins one Typer module per command group.

Exit codes: 0 ok · 1 bug · 2 usage · 3 invalid input · 4 unsafe input · 5 unavailable here ·
6 quality gate failed · 7 partial success · 130 interrupted.
"""

from __future__ import annotations

import typer

from .agent import app as agent_app
from .app_web import app as apps_app
from .bench import bench_cmd
from .common import JsonErrorsGroup
from .compile import compile_cmd
from .doctor import doctor_cmd
from .export import export_cmd
from .fleet import app as fleet_app
from .latency import app as latency_app
from .models import app as models_app
from .predict import predict_cmd
from .profile import profile_cmd
from .quantize import quantize_cmd
from .samples import samples_cmd
from .slim import slim_cmd

HELP = """Take mobile vision and audio transformers to the edge.

\b
Typical path:
  edgeformer doctor                              # what this machine can build and run
  edgeformer models list                         # the zoo, and the trained reference models
  edgeformer export efficientformer_l1 -o l1     # parity-checked ONNX
  edgeformer quantize l1 --calib images/ -o l1-int8
  edgeformer compile l1 --format openvino        # ORT-optimized, OpenVINO IR, TensorRT, CoreML
  edgeformer profile l1-int8 --per-op            # latency on this device
  edgeformer bench efficientformer_l1            # everything above, one table
  edgeformer latency build shvit_s4 -o s4.json   # per-device block latency table for slimming
  edgeformer slim clutter_shvit --table t.json --budget-ms 1 -o slim   # slim to a measured budget
  edgeformer samples -o samples                  # real inputs for the trained models (digits_shvit, ...)
  edgeformer agent serve                         # on a device: profile there for this machine (--device)
  edgeformer app web l1                          # the browser demo (onnxruntime-web) on 127.0.0.1

One vocabulary in every command: --format is what an artifact is (onnx, ort, openvino, tensorrt,
coreml), --backend what runs it (ort, openvino, tensorrt, coreml), --preset how INT8 is tuned for
the runtime that will run it (ort-cpu, openvino, tensorrt), --json machine-readable output.

Exit codes: 0 ok, 2 usage, 3 invalid input (or a job failed on the device), 4 unsafe input or agent
token refused, 5 target (or device agent) unavailable here,
6 quality gate failed, 7 partial success, 130 interrupted, 1 internal bug.
"""

app = typer.Typer(
    name="edgeformer",
    cls=JsonErrorsGroup,  # usage errors honour --json too
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# every command, listed: a verb that is not here does not exist (no placeholders)
app.add_typer(models_app, name="models")
app.command("export")(export_cmd)
app.command("quantize")(quantize_cmd)
app.command("compile")(compile_cmd)
app.command("profile")(profile_cmd)
app.command("bench")(bench_cmd)
app.command("predict")(predict_cmd)
app.command("samples")(samples_cmd)
app.command("doctor")(doctor_cmd)
app.add_typer(agent_app, name="agent")
app.add_typer(fleet_app, name="fleet")
app.add_typer(latency_app, name="latency")
app.command("slim")(slim_cmd)
app.add_typer(apps_app, name="app")


def main() -> None:
    app(prog_name="edgeformer")


if __name__ == "__main__":
    main()
