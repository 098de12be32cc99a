"""Load a model of unknown origin in a child process first, so a crash or a hang in the native runtime ends
the child, not the command (``predict``, ``profile``, ``compile``'s checks).

One entry, :func:`probe_before_loading`: the backend that will run the artifact loads it and runs it once on
zeros in a child (``runtimes.child.run_in_child``); a signal or a timeout (``$EDGEFORMER_PROBE_TIMEOUT``, default
300 s) becomes a :class:`~edgeformer.errors.ModelFileError` (exit 3) naming the model. TensorRT engines and
CoreML packages are not probed: neither runtime runs on the machines that build them here (Linux, no GPU), and an
engine is built by edgeformer itself, from an ONNX probed on the way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelFileError
from .child import PROBE_TIMEOUT_ENV, probe_timeout, run_in_child

if TYPE_CHECKING:
    from ..artifact import Artifact

log = logging.getLogger(__name__)

_OPENVINO_PROBE = r"""
import sys
import numpy as np
import openvino as ov
model = ov.Core().compile_model(sys.argv[1], "CPU")
request = model.create_infer_request()
feeds = {}
for port in model.inputs:
    shape = [d.get_length() if d.is_static else 1 for d in port.get_partial_shape()]
    feeds[port.get_any_name()] = np.zeros(shape, port.get_element_type().to_dtype())
request.infer(feeds)
"""


def probe_before_loading(
    artifact: Artifact, backend: str, *, refusal_ok: bool = False, timeout: float | None = None
) -> bool:
    """Run ``artifact`` once on ``backend`` in a child process; ``False`` when that backend is not probed here.

    Args:
        artifact: the model to load.
        backend: the backend that will load it in this process (``"ort"``, ``"openvino"``, ...).
        refusal_ok: a runtime that merely refuses the model (an op it lacks) is no error here; the caller's own
            load reports it with the op and node. Only a crash or a hang raises then.
        timeout: seconds before the child is killed (default ``$EDGEFORMER_PROBE_TIMEOUT``, else 300).

    Raises:
        ModelFileError: the runtime crashed (a signal) or hung on the model, or refused it (unless
            ``refusal_ok``).
    """
    timeout = probe_timeout() if timeout is None else timeout
    if backend == "ort" and artifact.format in ("onnx", "ort"):
        from .ort import probe_in_subprocess

        log.info("probing %s with onnxruntime in a child process", artifact.model_path)
        probe_in_subprocess(artifact.model_path, timeout, refusal_ok=refusal_ok)
        return True
    if backend == "openvino" and artifact.format == "openvino":
        log.info("probing %s with OpenVINO in a child process", artifact.model_path)
        _probe_openvino(artifact.model_path, timeout, refusal_ok)
        return True
    return False


def _probe_openvino(path: Path, timeout: float, refusal_ok: bool) -> None:
    _, failure = run_in_child(_OPENVINO_PROBE, [str(path)], timeout, own_group=True)
    if failure is None:
        return
    if failure.kind == "timeout":
        raise ModelFileError(
            f"{path}: OpenVINO did not finish loading and running the model on zeros within {failure.detail} (run "
            f"in a child process, now killed); the model hangs the runtime, or is far too large for this machine "
            f"({PROBE_TIMEOUT_ENV} sets the limit)."
        )
    if failure.kind == "signal":
        raise ModelFileError(
            f"OpenVINO crashed loading {path} ({failure.detail}); the file is malformed or triggers a runtime bug. "
            "Do not load it in-process; re-export it, or try --backend ort."
        )
    if not refusal_ok:
        raise ModelFileError(f"{path}: OpenVINO refused the model: {failure.detail}; re-export it.")
