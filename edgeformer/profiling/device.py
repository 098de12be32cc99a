"""Device fingerprint: what a latency figure was measured on.

A :class:`DeviceCard` records the CPU, the ISA extensions that decide which kernels a runtime can
use (AVX2 vs AVX-512 vs VNNI/AMX for int8; NEON dot-product on ARM), the OS, and the versions of the
runtime libraries. Its :attr:`~DeviceCard.device_id` keys latency tables: a table measured on one
device id never answers for another.

Torch-free on purpose: an edge device profiles with numpy + onnxruntime only, so library versions
are read from package metadata and torch is never imported.

Example::

    card = device_card(backend="ort", threads=2)
    card.device_id  # "3f9c2a71d0be"
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..manifest import tool_versions
from ..records import Record
from ..runtimes import openvino as ov_runtime  # imports openvino itself only when asked

# Flags that change which kernels run: int8 dot products (VNNI, AMX, ARM dotprod/i8mm) are what makes
# quantized models fast, AVX-512 vs AVX2 roughly doubles fp32 GEMM width.
_ISA_OF_INTEREST = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "asimdhp",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "neon",
    "asimddp",
    "i8mm",
    "sve",
)
# Spellings that differ between kernels/tools; normalised so the device id does not change with them.
_ISA_ALIASES = {"avx512vnni": "avx512_vnni", "avxvnni": "avx_vnni", "asimd": "neon", "dotprod": "asimddp"}
_LIBRARIES = ("onnxruntime", "onnx", "numpy", "torch", "openvino", "coremltools", "tensorrt")
_BACKEND_PACKAGE = {"ort": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt", "coreml": "coremltools"}


@dataclass(frozen=True, kw_only=True)
class DeviceCard(Record):
    """The machine and software a measurement was taken on.

    ``physical_cores`` counts distinct (socket, core) pairs from ``/proc/cpuinfo``; ``usable_cpus``
    is the CPU affinity of this process (a container may see fewer CPUs than the host has).
    ``threads`` is the thread count requested for the runtime (``None``: the runtime's default).
    """

    cpu_model: str
    machine: str
    physical_cores: int
    logical_cores: int
    usable_cpus: int
    isa: tuple[str, ...]
    os: str
    kernel: str
    python: str
    backend: str
    runtime: str
    providers: tuple[str, ...] = ()
    libraries: dict[str, str] = field(default_factory=dict)
    threads: int | None = None

    DERIVED: ClassVar[tuple[str, ...]] = ("device_id",)

    @property
    def device_id(self) -> str:
        """Short stable hash of CPU model, core count, ISA flags and backend (not threads or versions).

        Library upgrades and thread counts are recorded alongside measurements but do not change the
        id: a latency table keys threads separately, and the hardware is what the id names.
        """
        key = {
            "cpu": self.cpu_model,
            "cores": self.physical_cores,
            "isa": sorted(self.isa),
            "backend": self.backend,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        isa = "/".join(self.isa) if self.isa else "no SIMD flags read"
        threads = self.threads if self.threads is not None else "default"
        return f"{self.cpu_model} · {self.physical_cores} cores · {isa} · {self.runtime} · threads {threads}"


def device_card(backend: str = "ort", threads: int | None = None) -> DeviceCard:
    """Fingerprint this machine for measurements made with ``backend`` and ``threads``.

    Args:
        backend: runtime name (``"ort"``, ``"openvino"``, ``"tensorrt"``, ``"coreml"``, ``"torch"``).
        threads: the thread count the runtime is configured with, ``None`` for its default.

    Returns:
        A :class:`DeviceCard`; reading it never imports torch.
    """
    info = _read_cpuinfo()
    cpu_model = info.get("model") or platform.processor() or platform.machine() or "unknown CPU"
    logical = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        usable = logical
    libraries = tool_versions(_LIBRARIES)
    package = _BACKEND_PACKAGE.get(backend, backend)
    runtime = f"{package} {libraries[package]}" if package in libraries else backend
    return DeviceCard(
        cpu_model=cpu_model,
        machine=platform.machine(),
        physical_cores=info.get("physical_cores") or logical,
        logical_cores=logical,
        usable_cpus=usable,
        isa=_isa_flags(info.get("flags", set()), platform.machine()),
        os=platform.platform(terse=True),
        kernel=platform.release(),
        python=sys.version.split()[0],
        backend=backend,
        runtime=runtime,
        providers=_providers(backend),
        libraries=libraries,
        threads=threads,
    )


def _read_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """Model name, flags and physical core count from a Linux ``/proc/cpuinfo`` (empty dict elsewhere)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    return parse_cpuinfo(text)


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """Parse ``/proc/cpuinfo`` text (x86 or ARM layout) into ``model``, ``flags``, ``physical_cores``."""
    model = ""
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    physical_id = "0"
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value
        elif key in ("flags", "features"):  # x86 says "flags", ARM says "Features"
            flags.update(value.split())
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            cores.add((physical_id, value))
    out: dict[str, Any] = {"flags": flags}
    if model:
        out["model"] = model
    if cores:
        out["physical_cores"] = len(cores)
    return out


def _isa_flags(flags: set[str], machine: str) -> tuple[str, ...]:
    found = {_ISA_ALIASES.get(f, f) for f in flags}
    if machine.lower() in ("arm64", "aarch64") and not flags:
        found.add("neon")  # NEON is mandatory on AArch64; macOS has no /proc/cpuinfo to say so
    return tuple(f for f in _ISA_OF_INTEREST if f in found)


def _providers(backend: str) -> tuple[str, ...]:
    if backend != "ort":
        return ()
    try:
        import onnxruntime as ort
    except ImportError:
        return ()
    return tuple(ort.get_available_providers())


# FP16 arithmetic in the CPU's vector units: x86 AVX512-FP16 (Sapphire Rapids+), ARMv8.2 FP16 (asimdhp).
# f16c (x86 conversions only) does not count: it converts, it does not compute.
_FP16_ARITHMETIC = ("avx512_fp16", "asimdhp")


def fp16_arithmetic(card: DeviceCard | None = None) -> bool:
    """Whether this CPU computes in FP16 (rather than converting every FP16 tensor to FP32 and back)."""
    return any(f in _FP16_ARITHMETIC for f in (card or device_card()).isa)


def fp16_pays_off() -> str | None:
    """Why FP16 on ORT's CPU provider cannot pay off here, or ``None``: without FP16 arithmetic it wraps most
    ops in casts to FP32 and back, so a timing would measure the casts, not FP16 (it runs slower than FP32)."""
    if fp16_arithmetic():
        return None
    return "this CPU has no FP16 arithmetic (AVX512-FP16, ARMv8.2 FP16); FP16 would only add casts to FP32"


def precision_unavailable(backend: str, precision: str) -> str | None:
    """Why ``precision`` cannot run (or cannot pay off) on ``backend`` on this machine's CPU, or ``None``.

    The one answer for bench's skipped rows and ``edgeformer doctor``: ORT FP16 needs FP16 arithmetic
    (:func:`fp16_pays_off`); OpenVINO bf16 needs a CPU that lists BF16 among its optimization capabilities
    (AVX512_BF16 or AMX), else its plugin would silently run f32. Whether the backend itself is installed is
    the backend's ``available()``; this returns ``None`` when it is not, as there is nothing to ask.
    """
    if backend == "ort" and precision == "fp16":
        return fp16_pays_off()
    if backend == "openvino" and precision in ("bf16", "fp16"):
        if ov_runtime.available():
            return None
        core = ov_runtime.import_openvino().Core()
        return ov_runtime.precision_problem(core, "CPU", ov_runtime.INFERENCE_PRECISION[precision])
    return None
