"""Turn a segment or a whole sub-network into the artifact a backend times, through the normal steps.

Export (parity-checked ONNX, the family's exporter), then for ``int8`` the default quantization recipe (the
placement search off: a table times each block under the plan the whole model would get), then for OpenVINO
the compile step. Weights are random: latency does not depend on their values.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import torch

from ..compile import compile as compile_artifact
from ..compile.targets import target_unavailable
from ..export.onnx import OnnxExportConfig, export_onnx
from ..models import get_spec
from ..quant import quantize
from ..quant.config import QuantConfig, SearchConfig
from ..runtimes import get_backend
from .blocks import build_model

PRECISIONS = ("fp32", "int8")
# torch.export (dynamo) is not thread-safe: fleet builds run one thread per device, so exports take turns (the
# timing, on the devices, still runs in parallel)
_EXPORT_LOCK = threading.Lock()
BACKENDS = ("ort", "openvino", "tensorrt", "coreml")
_COMPILED = ("openvino", "tensorrt", "coreml")  # backends whose artifact is made by the compile step


def example_input(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if len(shape) == 1:  # a waveform: the audio front-end expects samples in [-1, 1]
        return torch.rand((1, *shape), generator=g) * 2 - 1
    return torch.randn((1, *shape), generator=g)


def export_module(
    module: Any, shape: tuple[int, ...], folder: Path, *, zoo_model: str, precision: str, backend: str
) -> Path:
    """Export ``module`` (fused, eval) on a batch-1 input of ``shape``; returns the artifact folder to time."""
    with _EXPORT_LOCK:
        return _export_module(module, shape, folder, zoo_model=zoo_model, precision=precision, backend=backend)


def _export_module(
    module: Any, shape: tuple[int, ...], folder: Path, *, zoo_model: str, precision: str, backend: str
) -> Path:
    hints = get_spec(zoo_model).export
    cfg = OnnxExportConfig(dynamo=hints.dynamo, opset=hints.opset, dynamic_batch=False, parity_samples=1)
    art = export_onnx(module, out=folder / "fp32", example_inputs=(example_input(shape),), config=cfg, cache=None)
    if precision == "int8":
        # random weights and synthetic ranges: the gate is for deployable models, a timing block only needs the plan
        qcfg = QuantConfig(search=SearchConfig(enabled=False), min_cosine=None)
        quiet = logging.getLogger("edgeformer.quant")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # the synthetic-calibration warning, once per block, says nothing here
        try:
            art = quantize(art, qcfg, calib="synthetic", out=folder / "int8", cache=None)
        finally:
            quiet.setLevel(level)
    if backend in _COMPILED:
        # an INT8 QDQ model keeps its quantization through each target's own INT8 path; fp32 otherwise
        target_precision = "int8" if precision == "int8" and backend != "openvino" else "fp32"
        art = compile_artifact(art, target=backend, precision=target_precision, out=folder / backend, cache=None)
    return art.path


def backend_unavailable(backend: str) -> str | None:
    """Why a table cannot be measured on ``backend`` here (its compile target or its runtime missing), or ``None``."""
    if backend in _COMPILED:
        reason = target_unavailable(backend)
        if reason:
            return reason
    return get_backend(backend).available() or None


def export_arch(
    arch: Any, shape: tuple[int, ...], folder: Path, *, zoo_model: str, precision: str, backend: str
) -> Path:
    """The whole sub-network ``arch`` (``shape`` has the batch of 1), built, fused and exported as in
    :func:`export_module`."""
    model = build_model(zoo_model, arch).fuse()
    return export_module(model, shape[1:], folder, zoo_model=zoo_model, precision=precision, backend=backend)
