"""OpenVINO backend: run an IR artifact (``format="openvino"``, ``model.xml`` + ``model.bin``) on a device.

The IR is device-neutral; how it runs is decided when it is compiled for a device, and
``edgeformer compile --format openvino`` records that in the manifest (``runtime``): the
device, the inference precision (``f32``, or ``bf16`` for a bf16 artifact), the performance hint and
the number of streams. :class:`OpenVinoSession` applies exactly those, so the numbers measured at
compile time are the numbers a session gets.

Precision policy: OpenVINO's CPU plugin quietly ignores an ``INFERENCE_PRECISION_HINT`` the CPU
cannot honour (bf16 on a CPU without AVX512_BF16/AMX runs f32), and on CPUs that *do* have AMX it
runs bf16 by default unless told otherwise. Both would make figures silently wrong, so the hint is
always set explicitly and read back from the compiled model; a mismatch raises
:class:`~edgeformer.errors.BackendUnavailableError` (no silent fallback), as does a device that is
not present. openvino is imported lazily: importing edgeformer never imports it.

Example::

    with edgeformer.Session("build/l1-openvino-bf16", backend="openvino", threads=2) as s:
        logits = s.run({"input": x})["logits"]
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendUnavailableError, ConfigError, InvalidInputError, ModelFileError, did_you_mean
from ..manifest import RuntimeSettings
from ..scratch import scratch_dir
from .base import Backend, BackendSession, SessionOptions, TensorInfo
from .child import run_in_child
from .unsupported import describe, openvino_unsupported

if TYPE_CHECKING:
    from ..artifact import Artifact

log = logging.getLogger(__name__)

INSTALL = "pip install 'edgeformer[openvino]'"
# edgeformer precision -> OpenVINO inference precision. int8 layers run int8 whatever the hint; the hint
# sets the layers the quantizer left in float, kept f32 so int8 fidelity is not mixed with bf16 error.
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32", "mixed": "f32"}
# which OPTIMIZATION_CAPABILITIES entry a device must list to honour an inference precision
_CAPABILITY = {"bf16": "BF16", "f16": "FP16", "f32": "FP32"}
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
# SessionOptions.extra keys this backend understands (overrides of the manifest's runtime settings)
_EXTRA_KEYS: dict[str, type] = {"inference_precision": str, "performance_hint": str, "num_streams": int}


def available() -> str | None:
    """``None`` when the openvino package can be imported here, else what to install."""
    if importlib.util.find_spec("openvino") is None:
        return f"the openvino package is not installed: {INSTALL}"
    return None


def import_openvino() -> Any:
    """The ``openvino`` module, or :class:`BackendUnavailableError` naming the extra."""
    try:
        import openvino
    except ImportError as e:
        raise BackendUnavailableError(f"OpenVINO is not installed: {INSTALL}") from e
    return openvino


def device_facts(core: Any, device: str) -> dict[str, Any]:
    """What decides how a model runs on ``device``: its name and optimization capabilities (bf16, int8, ...)."""
    import openvino

    require_device(core, device)
    return {
        "openvino": openvino.__version__.split("-")[0],
        "device": device,
        "device_name": str(core.get_property(device, "FULL_DEVICE_NAME")),
        "optimization_capabilities": [str(c) for c in core.get_property(device, "OPTIMIZATION_CAPABILITIES")],
    }


def require_device(core: Any, device: str) -> None:
    """Raise :class:`BackendUnavailableError` unless ``device`` (``"CPU"``, ``"GPU.0"``, ``"NPU"``) is present."""
    if not isinstance(device, str) or not device:
        raise ConfigError(f"an OpenVINO device is a name such as 'CPU', 'GPU' or 'NPU', got {device!r}.")
    if device.split(":")[0] in ("AUTO", "MULTI", "HETERO", "BATCH"):
        raise ConfigError(
            f"device {device!r} lets OpenVINO choose or split devices at run time, so the figures would not say "
            "what ran; name one device (CPU, GPU, NPU)."
        )
    if device == "CPU":  # asking the CPU plugin alone is instant; listing devices loads every plugin
        try:
            core.get_property("CPU", "FULL_DEVICE_NAME")
            return
        except RuntimeError:
            pass
    present = [str(d) for d in core.available_devices]
    # "GPU" means OpenVINO's default GPU ("GPU.0"); "GPU.1" must be present as such
    if device in present or ("." not in device and any(d.split(".")[0] == device for d in present)):
        return
    hint = did_you_mean(device, present) or ""
    raise BackendUnavailableError(
        f"OpenVINO device {device!r} is not present here (available: {', '.join(present) or 'none'}){hint}; "
        "GPU needs an Intel GPU with its OpenCL runtime, NPU an Intel NPU with its driver. "
        "edgeformer never falls back to another device."
    )


def precision_problem(core: Any, device: str, precision: str) -> str | None:
    """Why ``device`` cannot run inference precision ``precision`` (``"bf16"``...), or ``None`` if it can."""
    need = _CAPABILITY.get(precision)
    if need is None:
        return f"unknown OpenVINO inference precision {precision!r} (known: {', '.join(_CAPABILITY)})"
    caps = [str(c) for c in core.get_property(device, "OPTIMIZATION_CAPABILITIES")]
    if need in caps:
        return None
    name = core.get_property(device, "FULL_DEVICE_NAME")
    why = " (CPUs need AVX512_BF16 or AMX)" if precision == "bf16" and device.startswith("CPU") else ""
    return (
        f"{device} ({name}) cannot run {precision} inference{why}: its OPTIMIZATION_CAPABILITIES are "
        f"{', '.join(caps)}, and OpenVINO would silently run f32 instead"
    )


def compile_properties(
    *, threads: int | None, precision: str, performance_hint: str, num_streams: int | None
) -> dict[str, Any]:
    """edgeformer's settings as OpenVINO compile properties: the one place that knows their names."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be a positive int, got {threads!r}.")
    if performance_hint not in PERFORMANCE_HINTS:
        raise ConfigError(
            f"performance_hint {performance_hint!r} is not one of {', '.join(PERFORMANCE_HINTS)}"
            f"{did_you_mean(str(performance_hint), PERFORMANCE_HINTS)}."
        )
    if num_streams is not None and (
        isinstance(num_streams, bool) or not isinstance(num_streams, int) or num_streams < 1
    ):
        raise ConfigError(f"num_streams must be a positive int, got {num_streams!r}.")
    props: dict[str, Any] = {"PERFORMANCE_HINT": performance_hint, "INFERENCE_PRECISION_HINT": precision}
    if threads is not None:
        props["INFERENCE_NUM_THREADS"] = threads
    if num_streams is not None:
        props["NUM_STREAMS"] = num_streams
    return props


class OpenVinoBackend(Backend):
    """Opens ``openvino`` IR artifacts with the OpenVINO runtime."""

    name = "openvino"
    formats = ("openvino",)

    def available(self) -> str | None:
        return available()

    def open(self, artifact: Artifact, options: SessionOptions) -> OpenVinoSession:
        return OpenVinoSession(artifact, options)


class OpenVinoSession(BackendSession):
    """A compiled OpenVINO model with one infer request, reused for every run."""

    def __init__(self, artifact: Artifact, options: SessionOptions) -> None:
        ov = import_openvino()
        self.path = artifact.model_path
        settings = _settings(artifact, options)
        device = settings["device"]
        core = ov.Core()
        require_device(core, device)
        problem = precision_problem(core, device, settings["inference_precision"])
        if problem:
            raise BackendUnavailableError(
                f"{artifact.path}: {problem}. Run it on a device that can, or use the fp32 artifact "
                "(`edgeformer compile ... --format openvino --precision fp32`)."
            )
        props = compile_properties(
            threads=options.threads,
            precision=settings["inference_precision"],
            performance_hint=settings["performance_hint"],
            num_streams=settings["num_streams"],
        )
        try:
            model = core.read_model(str(self.path))
            self._compiled = core.compile_model(model, device, props)
        except RuntimeError as e:
            nodes = openvino_unsupported(self.path, device) if self.path.suffix == ".onnx" else []
            if nodes:  # OpenVINO lists op types only, and our first line cuts even that
                raise ModelFileError(
                    f"{self.path}: OpenVINO {ov.__version__.split('-')[0]} cannot run {describe(nodes)} on {device}; "
                    "run it on onnxruntime (--backend ort), or re-export the model without them."
                ) from e
            raise ModelFileError(
                f"{self.path}: OpenVINO {ov.__version__.split('-')[0]} cannot load this IR on {device} "
                f"({_first_line(e)}); recompile it with `edgeformer compile --format openvino`."
            ) from e
        _check_running(self._compiled, device, settings["inference_precision"], artifact)
        self.provider = device
        self.inference_precision = settings["inference_precision"]
        self._request = self._compiled.create_infer_request()
        known_in = {t.name: t for t in artifact.manifest.inputs}
        known_out = {t.name: t for t in artifact.manifest.outputs}
        self.inputs = [_tensor_info(p, known_in) for p in self._compiled.inputs]
        self.outputs = [_tensor_info(p, known_out) for p in self._compiled.outputs]
        log.debug("opened %s on %s with %s", self.path, device, props)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = self._request
        if request is None:
            raise ConfigError("this OpenVINO session is closed; open a new one.")
        try:
            request.infer({name: value for name, value in feeds.items()})
        except RuntimeError as e:
            shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in feeds.items())
            raise InvalidInputError(
                f"OpenVINO failed running {self.path.name} on {shapes}: {_first_line(e)}; if the feeds match the "
                "declared inputs, a dynamic dim is outside what the model supports."
            ) from e
        # the request reuses its output buffers on the next run: hand out copies
        return {o.name: np.array(request.get_output_tensor(i).data, copy=True) for i, o in enumerate(self.outputs)}

    def close(self) -> None:
        self._request = None
        self._compiled = None


def _settings(artifact: Artifact, options: SessionOptions) -> dict[str, Any]:
    """Device and run settings: the manifest's (from compile), overridden by the session options."""
    recorded = artifact.manifest.runtime or RuntimeSettings()
    settings = {
        "device": recorded.device or "CPU",
        "inference_precision": recorded.inference_precision
        or INFERENCE_PRECISION.get(artifact.manifest.precision, "f32"),
        "performance_hint": recorded.performance_hint or "LATENCY",
        "num_streams": recorded.num_streams if recorded.num_streams is not None else 1,
    }
    if options.providers:
        if len(options.providers) != 1:
            raise ConfigError(
                f"OpenVINO runs one device per session, got {list(options.providers)}; name one (e.g. 'CPU')."
            )
        settings["device"] = options.providers[0]
    if options.enable_profiling:
        raise ConfigError("per-op profiling reads ONNX Runtime's trace; profile the ONNX artifact with backend 'ort'.")
    for key, value in options.extra:
        if key not in _EXTRA_KEYS:
            raise ConfigError(
                f"unknown OpenVINO session option {key!r}{did_you_mean(key, _EXTRA_KEYS)}; "
                f"known: {', '.join(_EXTRA_KEYS)}."
            )
        if not isinstance(value, _EXTRA_KEYS[key]) or isinstance(value, bool):
            raise ConfigError(f"OpenVINO session option {key!r} must be {_EXTRA_KEYS[key].__name__}, got {value!r}.")
        settings[key] = value
    return settings


def _check_running(compiled: Any, device: str, precision: str, artifact: Artifact) -> None:
    """Read back what OpenVINO actually compiled; refuse a device or precision it swapped."""
    running = [str(d) for d in compiled.get_property("EXECUTION_DEVICES")]
    if running and running[0].split(".")[0] != device.split(".")[0]:
        raise BackendUnavailableError(
            f"requested OpenVINO device {device} is not the one running ({', '.join(running)}); "
            "edgeformer never falls back to another device."
        )
    got = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    if got != precision:
        raise BackendUnavailableError(
            f"{artifact.path}: OpenVINO compiled for {got} inference although {precision} was requested on {device}; "
            "this device cannot honour it. Use an artifact of another precision."
        )


def _tensor_info(port: Any, known: Mapping[str, Any]) -> TensorInfo:
    names = port.get_names()
    name = next((n for n in sorted(names) if n in known), None) or port.get_any_name()
    recorded = tuple(known[name].shape) if name in known else ()
    dims: list[int | str | None] = []
    for axis, d in enumerate(port.get_partial_shape()):
        if d.is_static:
            dims.append(d.get_length())
        else:  # OpenVINO keeps no dim names: take the manifest's ("batch"), so feeds are checked the same way
            symbol = recorded[axis] if axis < len(recorded) and isinstance(recorded[axis], str) else None
            dims.append(symbol if symbol not in (None, "?") else None)
    return TensorInfo(name=name, shape=tuple(dims), dtype=np.dtype(port.get_element_type().to_dtype()).name)


def _first_line(e: BaseException) -> str:
    """OpenVINO's message without its C++ source locations ("Exception from src/...")."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith("Exception from") and "failed at src/" not in ln]
    return (useful or lines or [type(e).__name__])[0]


__all__ = [
    "INFERENCE_PRECISION",
    "INSTALL",
    "PERFORMANCE_HINTS",
    "OpenVinoBackend",
    "OpenVinoSession",
    "available",
    "compile_properties",
    "device_facts",
    "import_openvino",
    "precision_problem",
    "require_device",
]


_PROBE = r"""
import sys
import numpy as np
import openvino as ov
xml, device, hint, npz = sys.argv[1:5]
model = ov.Core().compile_model(xml, device, {"INFERENCE_PRECISION_HINT": hint})
request = model.create_infer_request()
data = np.load(npz)
for sample in sorted({k.split("/", 1)[0] for k in data.files}):
    request.infer({k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(sample + "/")})
"""


def probe_in_subprocess(
    xml: Path, device: str, hint: str, feeds: Mapping[str, Mapping[str, np.ndarray]], timeout: float = 300.0
) -> None:
    """Run the IR on ``feeds`` once in a child process first: OpenVINO can crash natively on a graph it compiled
    (seen: NNCF int8 SHViT on an AMX CPU, SIGSEGV in every run), and that must fail a step, not kill the caller.

    Raises:
        BackendUnavailableError: the child crashed or hung; the message names the workaround.
    """
    with scratch_dir("ovprobe") as tmp:
        npz = Path(tmp) / "feeds.npz"
        np.savez(npz, **{f"{i}/{name}": x for i, sample in enumerate(feeds.values()) for name, x in sample.items()})
        _, failure = run_in_child(_PROBE, [str(xml), device, hint, str(npz)], timeout)
    if failure is None:
        return
    if failure.kind == "timeout":
        raise BackendUnavailableError(f"OpenVINO did not finish running {xml} within {failure.detail}.")
    if failure.kind == "signal":
        raise BackendUnavailableError(
            f"OpenVINO crashed running the compiled IR on {device} ({failure.detail}), a runtime bug on this CPU; "
            "nothing was written. Use edgeformer's own int8 (--no-nncf), or keep oneDNN off AMX for this process: "
            "ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI."
        )
    raise BackendUnavailableError(f"OpenVINO failed running {xml}: {failure.detail}.")
