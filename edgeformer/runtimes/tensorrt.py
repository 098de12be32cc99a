"""TensorRT backend: run a serialized engine (``format="tensorrt"``) on an NVIDIA GPU.

Engines are not portable: a plan only runs under the TensorRT version and on the GPU model it was built
for. ``edgeformer compile --format tensorrt`` records both (plus compute capability, driver and CUDA
versions) in the manifest, and :class:`TensorRtSession` refuses a mismatch *before* handing the plan to
TensorRT, whose own failure is a terse deserialization error (or, across GPU models, a silent slowdown).
The refusal is :class:`~edgeformer.errors.BackendUnavailableError` (exit 5), not ``ModelFileError``: the
artifact is intact (its hashes verify) and runs where it was built; it is *this machine* that cannot
serve it, and the fix is to rebuild here, not to repair the input.

Engines are executable code (compiled CUDA tactics): load only engines you built. The manifest's sha256
detects a plan changed after its build, not a malicious builder.

CUDA memory, copies and streams go through ``cuda-python`` (``cuda.bindings.runtime``, or the older
``cuda.cudart``), which the ``tensorrt`` extra installs; torch is not needed on the device. Both
``tensorrt`` and ``cuda`` are imported lazily, so importing edgeformer never imports them.

Example::

    with edgeformer.Session("build/l1-trt", backend="tensorrt") as s:
        logits = s.run({"pixels": x})["logits"]
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendUnavailableError, ConfigError, InputMismatchError, InvalidInputError, ModelFileError
from ..modelfile import sniff
from .base import Backend, BackendSession, SessionOptions, TensorInfo
from .feeds import FeedProblem, mismatch_error

if TYPE_CHECKING:
    from ..artifact import Artifact

log = logging.getLogger(__name__)

MIN_MAJOR = 10  # name-based I/O (set_tensor_address / execute_async_v3) and the APIs below are TensorRT 10's
INSTALL = "pip install 'edgeformer[tensorrt]'"
NO_TENSORRT = (
    f"the tensorrt package is not installed: {INSTALL} (NVIDIA's TensorRT wheels and cuda-python; the TensorRT "
    "library wheel downloads from NVIDIA's servers, which must be reachable from this machine)"
)
NO_CUDA_PYTHON = f"cuda-python is not installed (edgeformer moves TensorRT's buffers with it): {INSTALL}"
REBUILD = "rebuild with `edgeformer compile PARENT_ONNX_ARTIFACT --format tensorrt` on this machine"
# the facts that decide whether a plan can be deserialized here; all three must match the build machine
ENGINE_FACTS = {"tensorrt": "TensorRT", "gpu": "GPU", "compute_capability": "compute capability"}


# --- availability ----------------------------------------------------------------------------------
def available() -> str | None:
    """``None`` when TensorRT can build and run engines here, else every reason why not."""
    # the same extra installs tensorrt and cuda-python: name cuda-python only once tensorrt is there
    reasons = [r for r in (gpu_problem(), _probe_tensorrt() or _probe_cuda_python()) if r]
    if not reasons:
        reasons = [r for r in (_probe_cuda_device(),) if r]  # initializes the driver: only when all else is there
    return "; ".join(reasons) or None


def gpu_reason(*, platform: str, device_nodes: bool, nvidia_smi: str | None, libcuda: bool) -> str | None:
    """Why this machine has no usable NVIDIA GPU, from facts probed by the caller (``None``: it has one)."""
    if platform == "darwin":
        return "TensorRT needs an NVIDIA GPU, which macOS does not support; use --format coreml there"
    if platform.startswith("linux") and not device_nodes:
        missing = ["no /dev/nvidia0"]
        if nvidia_smi is None:
            missing.append("nvidia-smi missing")
        if not libcuda:
            missing.append("libcuda not loadable")
        return f"TensorRT needs an NVIDIA GPU with a CUDA driver; none found ({', '.join(missing)})"
    if not libcuda:
        return (
            "TensorRT needs the NVIDIA driver's CUDA library (libcuda / nvcuda.dll), which cannot be loaded; "
            "install the NVIDIA driver"
        )
    return None


def describe_import_failure(error: BaseException) -> str:
    """The reason for an installed ``tensorrt`` that fails to import (typically its native libraries missing)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    lib = re.search(r"(lib[\w.+-]+\.so[\w.]*|nv[\w]+\.dll)", text)
    if lib or "shared object" in text or "DLL load failed" in text:
        what = lib.group(1) if lib else "a TensorRT library"
        return (
            f"the tensorrt Python bindings are installed but cannot load {what}: the TensorRT libraries are missing. "
            f"Install the full TensorRT ({INSTALL} where NVIDIA's library wheel can be downloaded, or NVIDIA's "
            "tar/deb packages) and put its lib folder on the library path"
        )
    return f"tensorrt is installed but fails to import ({text}): reinstall it with {INSTALL}"


def gpu_problem() -> str | None:
    """Why this machine has no usable NVIDIA GPU (no device node, nvidia-smi or libcuda), ``None`` when it has one."""
    dev = Path("/dev")
    # WSL2 exposes the GPU as /dev/dxg, never /dev/nvidia0
    nodes = (dev / "nvidia0").exists() or (dev / "dxg").exists() or any(dev.glob("nvidia[0-9]*"))
    return gpu_reason(
        platform=sys.platform, device_nodes=nodes, nvidia_smi=shutil.which("nvidia-smi"), libcuda=_libcuda()
    )


def _libcuda() -> bool:
    names = ("nvcuda.dll",) if sys.platform == "win32" else ("libcuda.so.1", "libcuda.so", "libcuda.dylib")
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def _probe_tensorrt() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return NO_TENSORRT
    try:
        trt = import_tensorrt()
    except BackendUnavailableError as e:
        return str(e)
    try:
        major = trt_major(trt.__version__)
    except BackendUnavailableError as e:
        return str(e)
    if major < MIN_MAJOR:
        return f"edgeformer needs TensorRT >= {MIN_MAJOR}, this is {trt.__version__}: {INSTALL}"
    return None


def _probe_cuda_python() -> str | None:
    try:
        cudart()
    except BackendUnavailableError as e:
        return str(e)
    return None


def _probe_cuda_device() -> str | None:
    rt = cudart()
    err, count = rt.cudaGetDeviceCount()
    if _code(err) != 0:
        name = _error_name(rt, err)
        return f"CUDA finds no usable GPU ({name}); check the driver with nvidia-smi, and CUDA_VISIBLE_DEVICES"
    return None if count > 0 else "CUDA reports 0 GPUs; check CUDA_VISIBLE_DEVICES"


# --- lazy imports and versions ---------------------------------------------------------------------
def import_tensorrt() -> Any:
    """``import tensorrt``, or :class:`BackendUnavailableError` with the precise reason."""
    try:
        import tensorrt
    except ModuleNotFoundError as e:
        if e.name == "tensorrt":
            raise BackendUnavailableError(NO_TENSORRT) from e
        raise BackendUnavailableError(describe_import_failure(e)) from e
    except (ImportError, OSError) as e:  # bindings present, libnvinfer / libnvonnxparser absent
        raise BackendUnavailableError(describe_import_failure(e)) from e
    return tensorrt


def cudart() -> Any:
    """The CUDA runtime bindings of cuda-python (``cuda.bindings.runtime`` from 12.6 on, ``cuda.cudart`` before)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime  # cuda-python < 12.6; removed in 13
        except ImportError as e:
            raise BackendUnavailableError(NO_CUDA_PYTHON) from e
    return runtime


def trt_major(version: str) -> int:
    """The major version of a TensorRT version string (``"10.8.0.43"`` -> 10)."""
    match = re.match(r"\s*(\d+)\.", str(version))
    if not match:
        raise BackendUnavailableError(f"cannot read the TensorRT version {version!r}; reinstall it with {INSTALL}")
    return int(match.group(1))


def cuda_call(rt: Any, result: tuple[Any, ...], what: str) -> Any:
    """Unpack a cuda-python ``(error, *values)`` result, raising on error."""
    err, *values = result
    if _code(err) != 0:
        name = _error_name(rt, err)
        hint = "; lower --max-batch or free GPU memory" if "Memory" in name else ""
        raise BackendUnavailableError(f"CUDA {what} failed: {name}{hint}")
    return values[0] if len(values) == 1 else tuple(values)


def _code(err: Any) -> int:
    return int(getattr(err, "value", err))  # cudaError_t is an IntEnum in some cuda-python releases, an Enum in others


def _error_name(rt: Any, err: Any) -> str:
    name = rt.cudaGetErrorName(err)[1]
    return name.decode() if isinstance(name, bytes) else str(name)


def device_facts(trt: Any, device: int = 0) -> dict[str, Any]:
    """TensorRT version, GPU name, compute capability, driver and CUDA versions of ``device``."""
    rt = cudart()
    count = cuda_call(rt, rt.cudaGetDeviceCount(), "device count")
    if not 0 <= device < count:
        raise BackendUnavailableError(f"GPU {device} does not exist here ({count} GPU(s): cuda:0..cuda:{count - 1}).")
    props = cuda_call(rt, rt.cudaGetDeviceProperties(device), "device properties")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {
        "tensorrt": trt.__version__,
        "gpu": name.split("\x00")[0].strip(),
        "compute_capability": f"{props.major}.{props.minor}",
        "cuda_driver": _cuda_version(cuda_call(rt, rt.cudaDriverGetVersion(), "driver version")),
        "cuda_runtime": _cuda_version(cuda_call(rt, rt.cudaRuntimeGetVersion(), "runtime version")),
        "driver": _nvidia_driver(device),
        "device_index": device,
    }


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"  # CUDA encodes 12.4 as 12040


def _nvidia_driver(device: int) -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    cmd = [exe, f"--id={device}", "--query-gpu=driver_version", "--format=csv,noheader"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def engine_mismatches(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Why an engine built with ``recorded`` facts cannot run with ``current`` ones (empty: it can)."""
    problems = []
    for key, label in ENGINE_FACTS.items():
        was, now = recorded.get(key), current.get(key)
        if was is None:
            problems.append(f"the manifest does not record the {label} it was built for")
        elif str(was) != str(now):
            problems.append(f"built for {label} {was}, this machine has {now}")
    return problems


def check_engine_compatible(recorded: Mapping[str, Any], current: Mapping[str, Any], where: str) -> None:
    """Refuse an engine built for another GPU or TensorRT version, before TensorRT sees it."""
    problems = engine_mismatches(recorded, current)
    if problems:
        raise BackendUnavailableError(
            f"{where}: this TensorRT engine cannot run here: {'; '.join(problems)}. Engines only run on the GPU "
            f"model and TensorRT version they were built with: {REBUILD}."
        )


_LOGGER: Any = None


def trt_logger(trt: Any) -> Any:
    """One process-wide TensorRT logger forwarding to :mod:`logging` (TensorRT warns when loggers differ)."""
    global _LOGGER
    if _LOGGER is None:
        levels = {
            trt.ILogger.Severity.INTERNAL_ERROR: logging.ERROR,
            trt.ILogger.Severity.ERROR: logging.ERROR,
            trt.ILogger.Severity.WARNING: logging.WARNING,
            trt.ILogger.Severity.INFO: logging.DEBUG,  # build progress chatter; users see our own summary
            trt.ILogger.Severity.VERBOSE: logging.DEBUG,
        }

        class _Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity: Any, msg: str) -> None:
                level = levels.get(severity, logging.DEBUG)
                if level >= logging.ERROR:
                    self.errors = [*self.errors[-9:], msg]  # the last few explain a failed build or load
                log.log(level, "TensorRT: %s", msg)

        _LOGGER = _Logger()
    return _LOGGER


# --- backend and session ---------------------------------------------------------------------------
class TensorRtBackend(Backend):
    """Opens ``tensorrt`` artifacts (serialized engines written by ``edgeformer compile --format tensorrt``)."""

    name = "tensorrt"
    formats = ("tensorrt",)

    def available(self) -> str | None:
        return available()

    def open(self, artifact: Artifact, options: SessionOptions) -> TensorRtSession:
        return TensorRtSession(artifact, options)


class _Buffer:
    """Device memory plus a pinned host staging area of the same size (pinned: async copies, no extra copy)."""

    def __init__(self, rt: Any, nbytes: int) -> None:
        self.rt, self.nbytes = rt, max(nbytes, 1)
        self.device = cuda_call(rt, rt.cudaMalloc(self.nbytes), f"allocating {self.nbytes} bytes of GPU memory")
        try:
            self.host = cuda_call(rt, rt.cudaMallocHost(self.nbytes), f"allocating {self.nbytes} pinned bytes")
        except BackendUnavailableError:
            rt.cudaFree(self.device)
            raise
        self._bytes = np.ctypeslib.as_array((ctypes.c_ubyte * self.nbytes).from_address(int(self.host)))

    def view(self, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return self._bytes[:n].view(dtype).reshape(shape)

    def free(self) -> None:
        self.rt.cudaFree(self.device)
        self.rt.cudaFreeHost(self.host)


class TensorRtSession(BackendSession):
    """One deserialized engine, an execution context, a CUDA stream and reusable buffers.

    ``run`` takes feeds already checked by :func:`~edgeformer.runtimes.feeds.check_feeds` (as
    :class:`edgeformer.Session` and the profiler do) and adds the one check only the engine can make: every
    shape must lie inside the engine's optimization profile.
    """

    def __init__(self, artifact: Artifact, options: SessionOptions) -> None:
        self._trt = trt = import_tensorrt()
        self.path = artifact.model_path
        self._device = _requested_device(options)
        if options.enable_profiling:
            raise ConfigError("per-op profiling is not available on the TensorRT backend; use trtexec --dumpProfile.")
        if options.extra:
            raise ConfigError(f"the TensorRT backend takes no extra session options, got {dict(options.extra)}.")
        self.rt = rt = cudart()
        cuda_call(rt, rt.cudaSetDevice(self._device), f"selecting GPU {self._device}")
        check_engine_compatible(artifact.manifest.extra, device_facts(trt, self._device), str(artifact.path))

        kind = sniff(self.path)
        # "unknown" passes: the hashes already vouch for the file, and a future plan header may not start "ftrt"
        if kind not in ("tensorrt", "unknown"):
            raise ModelFileError(f"{self.path}: the manifest says TensorRT engine, the file is {kind}; {REBUILD}.")
        logger = trt_logger(trt)
        self._runtime = trt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise ModelFileError(
                f"{self.path}: TensorRT {trt.__version__} could not deserialize the engine "
                f"({'; '.join(logger.errors[-2:]) or 'no reason given'}); {REBUILD}."
            )
        self._context = self._engine.create_execution_context()
        self._stream = cuda_call(rt, rt.cudaStreamCreate(), "creating a stream")
        self._buffers: dict[str, _Buffer] = {}
        specs = {t.name: t for t in (*artifact.manifest.inputs, *artifact.manifest.outputs)}
        self.inputs, self.outputs = [], []
        self._dtypes: dict[str, np.dtype] = {}
        self._ranges: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            self._dtypes[name] = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            info = _tensor_info(name, tuple(self._engine.get_tensor_shape(name)), self._dtypes[name], specs.get(name))
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(info)
                if any(not isinstance(d, int) for d in info.shape):  # dynamic: profile 0 bounds every dim
                    lo, _, hi = self._engine.get_tensor_profile_shape(name, 0)
                    self._ranges[name] = (tuple(lo), tuple(hi))
            else:
                self.outputs.append(info)
        self.provider = f"cuda:{self._device}"
        log.debug("opened %s on %s (inputs %s)", self.path, self.provider, self.inputs)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        rt, ctx, stream = self.rt, self._context, self._stream
        self._check_ranges(feeds)
        h2d, d2h = rt.cudaMemcpyKind.cudaMemcpyHostToDevice, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, x in feeds.items():
            if not ctx.set_input_shape(name, x.shape):
                raise InputMismatchError(f"TensorRT refused shape {x.shape} for input {name!r}; {REBUILD} for it.")
            buf = self._buffer(name, x.nbytes)
            np.copyto(buf.view(x.dtype, x.shape), x)
            cuda_call(rt, rt.cudaMemcpyAsync(buf.device, buf.host, x.nbytes, h2d, stream), "copying inputs")
            ctx.set_tensor_address(name, int(buf.device))
        shapes = {}
        for out in self.outputs:
            shape = tuple(ctx.get_tensor_shape(out.name))
            if any(d < 0 for d in shape):
                raise ModelFileError(
                    f"{self.path}: output {out.name!r} has a data-dependent shape {shape}, which "
                    "this backend does not support; use backend='ort'."
                )
            shapes[out.name] = shape
            nbytes = int(np.prod(shape, dtype=np.int64)) * self._dtypes[out.name].itemsize
            ctx.set_tensor_address(out.name, int(self._buffer(out.name, nbytes).device))
        if not ctx.execute_async_v3(int(stream)):
            errors = "; ".join(trt_logger(self._trt).errors[-2:]) or "no reason given"
            raise InvalidInputError(f"TensorRT failed to run {self.path.name}: {errors}.")
        for name, shape in shapes.items():
            buf = self._buffers[name]
            nbytes = int(np.prod(shape, dtype=np.int64)) * self._dtypes[name].itemsize
            cuda_call(rt, rt.cudaMemcpyAsync(buf.host, buf.device, nbytes, d2h, stream), "copying outputs")
        cuda_call(rt, rt.cudaStreamSynchronize(stream), "running the engine")
        return {name: self._buffers[name].view(self._dtypes[name], shape).copy() for name, shape in shapes.items()}

    def _check_ranges(self, feeds: Mapping[str, np.ndarray]) -> None:
        problems = []
        for name, (lo, hi) in self._ranges.items():
            x = feeds.get(name)
            if x is None or x.ndim != len(lo):
                continue  # check_feeds reports missing names and wrong ranks
            bad = [a for a, (d, mn, mx) in enumerate(zip(x.shape, lo, hi, strict=True)) if not mn <= d <= mx]
            if bad:
                problems.append(
                    FeedProblem(
                        name,
                        f"{lo}..{hi}",
                        str(tuple(x.shape)),
                        f"dim {bad[0]} outside the engine's profile; {REBUILD} with "
                        "--min-batch/--max-batch covering it",
                    )
                )
        if problems:
            raise mismatch_error(problems)

    def _buffer(self, name: str, nbytes: int) -> _Buffer:
        buf = self._buffers.get(name)
        if buf is None or buf.nbytes < nbytes:  # grow only: steady-state runs reuse the same memory
            if buf is not None:
                buf.free()
            buf = self._buffers[name] = _Buffer(self.rt, nbytes)
        return buf

    def close(self) -> None:
        if getattr(self, "_engine", None) is None:
            return
        for buf in self._buffers.values():
            buf.free()
        self._buffers.clear()
        self.rt.cudaStreamDestroy(self._stream)
        # the context must go before its engine, the engine before the runtime
        self._context = self._engine = self._runtime = None

    def __del__(self) -> None:  # a forgotten close() must not leak GPU memory for the life of the process
        with contextlib.suppress(Exception):  # at interpreter exit the CUDA bindings may already be gone
            self.close()


def _tensor_info(name: str, dims: tuple[int, ...], dtype: np.dtype, spec: Any) -> TensorInfo:
    """Engine dims with the manifest's symbol names (``"batch"``) where the engine says -1."""
    named = tuple(spec.shape) if spec is not None and len(spec.shape) == len(dims) else ()
    shape = tuple(
        d if d >= 0 else (named[a] if named and isinstance(named[a], str) else ("batch" if a == 0 else None))
        for a, d in enumerate(dims)
    )
    return TensorInfo(name=name, shape=shape, dtype=dtype.name)


def _requested_device(options: SessionOptions) -> int:
    if options.threads is not None:
        log.debug("threads=%s does not apply to the TensorRT backend (the GPU runs the model)", options.threads)
    if not options.providers:
        return 0
    first = options.providers[0]
    match = re.fullmatch(r"cuda(?::(\d+))?", str(first))
    if not match:
        raise ConfigError(f"the TensorRT backend runs on 'cuda' or 'cuda:N' (a GPU index), got provider {first!r}.")
    return int(match.group(1) or 0)


__all__ = [
    "ENGINE_FACTS",
    "NO_TENSORRT",
    "TensorRtBackend",
    "TensorRtSession",
    "available",
    "check_engine_compatible",
    "cudart",
    "describe_import_failure",
    "device_facts",
    "engine_mismatches",
    "gpu_problem",
    "gpu_reason",
    "import_tensorrt",
    "trt_major",
]
