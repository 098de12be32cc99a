"""ONNX Runtime backend: the one place where edgeformer's SessionOptions become ORT options.

Provider policy: edgeformer runs exactly the execution provider that was asked for. ORT itself quietly
drops a provider it cannot initialise (a CUDA build without the CUDA libraries) and runs on CPU;
latency figures taken that way would be silently wrong, so a session whose first running provider is
not the first requested one raises :class:`~edgeformer.errors.BackendUnavailableError` instead.
Without a request the CPU provider is used, so results do not depend on which ORT wheel is installed.

Example::

    session = OrtBackend().open(artifact, SessionOptions(threads=1))
    logits = session.run({"pixels": x})["logits"]
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendUnavailableError, ConfigError, InvalidInputError, ModelFileError, did_you_mean
from ..modelfile import require_onnx, sniff
from .base import Backend, BackendSession, SessionOptions, TensorInfo
from .child import PROBE_TIMEOUT_ENV, probe_timeout, run_in_child
from .unsupported import describe, ort_unsupported

if TYPE_CHECKING:
    from ..artifact import Artifact

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
_INSTALL_HINT = {
    "CUDAExecutionProvider": "it needs an NVIDIA GPU and `pip install onnxruntime-gpu` instead of onnxruntime",
    "TensorrtExecutionProvider": "it needs an NVIDIA GPU, TensorRT and `pip install onnxruntime-gpu`",
    "OpenVINOExecutionProvider": "it needs `pip install onnxruntime-openvino`; or use backend='openvino'",
    "CoreMLExecutionProvider": "it needs macOS; or use backend='coreml'",
    "DmlExecutionProvider": "it needs Windows and `pip install onnxruntime-directml`",
}
# ORT reports element types as "tensor(float)"; numpy names are what feeds are checked against
_ORT_DTYPES = {
    "float": "float32",
    "float16": "float16",
    "double": "float64",
    "bfloat16": "bfloat16",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "bool": "bool",
}
# SessionOptions.extra keys this backend understands, with their types; anything else is refused
_EXTRA_KEYS: dict[str, type] = {"optimized_model_filepath": str, "log_severity_level": int, "allow_spinning": bool}


def _ort():
    try:
        import onnxruntime
    except ImportError as e:
        raise BackendUnavailableError("the ORT backend needs onnxruntime: pip install onnxruntime") from e
    return onnxruntime


def _native_errors() -> tuple[type[BaseException], ...]:
    from onnxruntime.capi import onnxruntime_pybind11_state as c

    names = (
        "Fail",
        "InvalidArgument",
        "InvalidGraph",
        "InvalidProtobuf",
        "NoSuchFile",
        "NotImplemented",
        "RuntimeException",
        "EPFail",
        "NoModel",
        "NotFound",
    )
    return tuple(getattr(c, n) for n in names if hasattr(c, n))


class OrtBackend(Backend):
    """Opens ``onnx`` and ORT-optimized ``ort`` artifacts with ONNX Runtime."""

    name = "ort"
    formats = ("onnx", "ort")

    def available(self) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed: pip install onnxruntime"
        return None

    def open(self, artifact: Artifact, options: SessionOptions) -> OrtSession:
        return OrtSession(artifact, options)


class OrtSession(BackendSession):
    """An ``onnxruntime.InferenceSession`` with edgeformer's provider and error policy."""

    def __init__(self, artifact: Artifact, options: SessionOptions) -> None:
        ort = _ort()
        self.path = artifact.model_path
        _sniff(self.path)
        requested = _requested_providers(ort, options.providers)
        self._profiling = options.enable_profiling
        try:
            self._sess = ort.InferenceSession(
                str(self.path), sess_options=ort_options(ort, options), providers=list(requested)
            )
        except _native_errors() as e:
            nodes = ort_unsupported(self.path, e)
            if nodes:  # onnxruntime names the op or the node, rarely both: the graph gives the other
                raise ModelFileError(
                    f"{self.path}: onnxruntime {ort.__version__} cannot run {describe(nodes)} ({_first_line(e)}); "
                    "run it on a backend that has the op (--backend openvino), or re-export the model without it."
                ) from e
            raise ModelFileError(
                f"{self.path}: onnxruntime {ort.__version__} cannot load this model ({_first_line(e)}); re-export "
                "it, or upgrade onnxruntime if the model needs a newer one."
            ) from e
        running = self._sess.get_providers()
        if not running or running[0] != requested[0]:
            raise BackendUnavailableError(
                f"requested execution provider {requested[0]} is not the one running (onnxruntime runs "
                f"{', '.join(running) or 'nothing'}); {_INSTALL_HINT.get(requested[0], 'check its installation')}."
            )
        self.provider = running[0]
        self.inputs = [_tensor_info(a) for a in self._sess.get_inputs()]
        self.outputs = [_tensor_info(a) for a in self._sess.get_outputs()]
        self._output_names = [o.name for o in self.outputs]
        log.debug("opened %s on %s (inputs %s)", self.path, self.provider, self.inputs)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = self._sess.run(self._output_names, dict(feeds))
        except _native_errors() as e:
            shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in feeds.items())
            raise InvalidInputError(
                f"onnxruntime failed running {self.path.name} on {shapes}: {_first_line(e)}; if the feeds match the "
                "declared inputs, a dynamic dim is outside what the model supports (e.g. another resolution than "
                "it was exported for)."
            ) from e
        return dict(zip(self._output_names, values, strict=True))

    def end_profiling(self) -> str | None:
        """Stop profiling and return the path of ORT's JSON trace (``None`` if profiling was off)."""
        if not self._profiling:
            return None
        self._profiling = False
        return self._sess.end_profiling()

    def close(self) -> None:
        # ORT frees native memory when the InferenceSession is collected; drop our reference now
        self._sess = None


def _requested_providers(ort: Any, providers: tuple[str, ...] | None) -> tuple[str, ...]:
    requested = tuple(providers) if providers else (CPU,)
    available = ort.get_available_providers()
    for p in requested:
        if not isinstance(p, str):
            raise ConfigError(f"execution providers are given by name (e.g. {CPU!r}), got {p!r}.")
        if p not in available:
            hint = _INSTALL_HINT.get(p) or f"check the name{did_you_mean(p, available) or ''}"
            raise BackendUnavailableError(
                f"execution provider {p} is not available in this onnxruntime (available: {', '.join(available)}); "
                f"{hint}. edgeformer never falls back to another provider."
            )
    return requested


def ort_options(ort: Any, options: SessionOptions) -> Any:
    """Map backend-neutral :class:`SessionOptions` to ``onnxruntime.SessionOptions`` (the only such mapping)."""
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if options.graph_optimization not in levels:
        raise ConfigError(
            f"graph_optimization {options.graph_optimization!r} is not one of {', '.join(levels)}"
            f"{did_you_mean(options.graph_optimization, levels)}."
        )
    so = ort.SessionOptions()
    so.graph_optimization_level = levels[options.graph_optimization]
    # sequential execution: parallel node scheduling adds run-to-run jitter to latency figures
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if options.threads is not None:
        if not isinstance(options.threads, int) or options.threads < 1:
            raise ConfigError(f"threads must be a positive int, got {options.threads!r}.")
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
    if options.enable_profiling:
        so.enable_profiling = True
        if options.profile_dir:
            Path(options.profile_dir).mkdir(parents=True, exist_ok=True)
            so.profile_file_prefix = str(Path(options.profile_dir) / "ort_profile")
    for key, value in options.extra:
        if key not in _EXTRA_KEYS:
            raise ConfigError(
                f"unknown ORT session option {key!r}{did_you_mean(key, _EXTRA_KEYS)}; known: {', '.join(_EXTRA_KEYS)}."
            )
        if not isinstance(value, _EXTRA_KEYS[key]):
            raise ConfigError(f"ORT session option {key!r} must be {_EXTRA_KEYS[key].__name__}, got {value!r}.")
        if key == "allow_spinning":
            # worker threads busy-wait between ops by default; on a shared or oversubscribed CPU that spinning
            # steals the cores the other worker needs and latency collapses (measured here: 2 threads slower than 1)
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if value else "0")
        else:
            setattr(so, key, value)
    return so


def _tensor_info(arg: Any) -> TensorInfo:
    kind = arg.type.removeprefix("tensor(").removesuffix(")")
    return TensorInfo(name=arg.name, shape=tuple(arg.shape), dtype=_ORT_DTYPES.get(kind, kind))


def _sniff(path: Path) -> None:
    """Name a wrong-type file (a PNG, a torch checkpoint) by its content before ORT reports a protobuf error."""

    if sniff(path) not in ("onnx", "ort"):  # a header read, no parse: cheap enough for every open
        require_onnx(path)  # raises ModelFileError saying what the file is and which command takes it


def _first_line(e: BaseException) -> str:
    """ORT's message without its status prefix and C++ source location, which only add noise for users."""
    text = str(e).strip().splitlines()
    line = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text[0] if text else type(e).__name__)
    return re.sub(r"/onnxruntime_src/\S+:\d+ .*\) ", "", line)


# --- crash isolation --------------------------------------------------------------------------------
_PROBE = r"""
import json, sys
import numpy as np
import onnxruntime as ort
types = {"float": np.float32, "float16": np.float16, "double": np.float64, "int64": np.int64,
         "int32": np.int32, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}
sess = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
feeds = {}
for i in sess.get_inputs():
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
    feeds[i.name] = np.zeros(shape, types.get(i.type[7:-1], np.float32))
outs = sess.run(None, feeds)
print(json.dumps({"outputs": [list(o.shape) for o in outs]}))
"""


def probe_in_subprocess(path: str | Path, timeout: float | None = None, *, refusal_ok: bool = False) -> dict[str, Any]:
    """Load ``path`` and run it once on zeros in a child process, so a native crash cannot kill the caller.

    Used before profiling or checking a model of unknown origin. Dynamic dims are set to 1.

    Args:
        path: an ONNX (or ``.ort``) model file.
        timeout: seconds before the child is killed and the model reported as hanging (default:
            ``$EDGEFORMER_PROBE_TIMEOUT``, else 300).
        refusal_ok: return ``{}`` when onnxruntime merely refuses the model (an op it lacks, which another
            backend may have): only a crash or a hang is an error then.

    Returns:
        ``{"outputs": [shape, ...]}`` as the child reported it.

    Raises:
        ModelFileError: the child crashed (signal), hung, or onnxruntime refused the model.
    """
    return _run_probe(Path(path), _PROBE, probe_timeout() if timeout is None else timeout, refusal_ok=refusal_ok)


def _run_probe(path: Path, script: str, timeout: float, *, refusal_ok: bool = False) -> dict[str, Any]:
    stdout, failure = run_in_child(script, [str(path)], timeout, own_group=True)
    if failure is not None and failure.kind == "timeout":
        raise ModelFileError(
            f"{path}: onnxruntime did not finish loading and running the model on zeros within {timeout:g} s "
            f"(run in a child process, now killed); the model hangs the runtime, or is far too large for this "
            f"machine ({PROBE_TIMEOUT_ENV} sets the limit)."
        )
    if failure is not None and failure.kind == "signal":
        raise ModelFileError(
            f"onnxruntime crashed loading {path} ({failure.detail}); the file is malformed or triggers a runtime "
            "bug. Do not load it in-process; re-export it or report it to onnxruntime."
        )
    if failure is not None and refusal_ok:
        return {}
    if failure is not None and (nodes := ort_unsupported(path, failure.detail)):
        raise ModelFileError(
            f"{path}: onnxruntime cannot run {describe(nodes)}; run it on a backend that has the op "
            "(--backend openvino), or re-export the model without it."
        )
    if failure is not None:
        raise ModelFileError(
            f"{path}: onnxruntime refused the model: {failure.detail}; re-export it or check it with onnx.checker."
        )
    try:
        return json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: the probe process printed no result; output: {stdout[-500:]!r}") from e
