"""``edgeformer doctor``: this machine, and what edgeformer can build and run on it, with the fix for what it cannot.

Every "cannot" comes from the code that refuses the work, never from a second opinion: a compile target's reason
is :func:`~edgeformer.compile.target_unavailable` (what ``edgeformer compile`` exits 5 with), a backend's is its
``available()`` (what ``Session`` refuses with), a precision's is
:func:`~edgeformer.profiling.precision_unavailable` (what bench prints in its skipped rows), and a missing
authoring extra is :func:`~edgeformer.export.formats.missing_extra` (what ``export``/``quantize`` exit 5 with).

Torch-free, like the device side: package versions are read from their metadata, nothing of the authoring stack
is imported, so ``edgeformer doctor`` answers on a base install too.

Example::

    report = diagnose()
    [(c.format, c.precision) for c in report.matrix if c.ok]  # what builds and runs here
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

from .compile import TARGETS, Target, target_unavailable
from .errors import BackendUnavailableError
from .export.formats import EXPORT_EXTRA_MODULES, missing_extra
from .profiling import DeviceCard, device_card, fp16_arithmetic, precision_unavailable
from .records import Record
from .runtimes import FORMAT_BACKENDS, get_backend
from .runtimes.openvino import import_openvino
from .runtimes.tensorrt import gpu_problem

# distribution names per extra, as pyproject.toml lists them (tests/test_doctor.py keeps the two in step)
PACKAGES: dict[str, tuple[str, ...]] = {
    "base": (
        *("numpy", "onnx", "onnxruntime", "pillow", "typer", "rich", "psutil", "starlette", "uvicorn"),
        *(("tomli",) if sys.version_info < (3, 11) else ()),  # tomllib is in the standard library from 3.11
    ),
    "export": ("torch", "onnxscript", "onnxslim", "safetensors", "matplotlib", "sympy"),
    "openvino": ("openvino", "nncf"),
    "coreml": ("coremltools",),
    "tensorrt": ("tensorrt", "cuda-python"),
    "apps": ("scikit-learn", "sounddevice"),
    "ray": ("ray",),
}
# (name shown, cpuinfo flags any of which means yes, what it changes); the ISA names are device.py's
_X86_FEATURES = (
    ("AVX2", ("avx2",), "fp32 and int8 kernels on every x86 runtime"),
    ("AVX-512", ("avx512f",), "twice AVX2's vector width"),
    ("AVX-512 VNNI", ("avx512_vnni",), "int8 dot products: what makes INT8 faster than FP32"),
    ("AVX-VNNI", ("avx_vnni",), "int8 dot products on AVX2-width vectors"),
    ("AMX", ("amx_tile",), "int8/bf16 matrix tiles (OpenVINO, ORT int8)"),
    ("BF16", ("avx512_bf16", "amx_bf16"), "OpenVINO bf16 inference precision"),
)
_ARM_FEATURES = (
    ("NEON", ("neon",), "fp32 SIMD"),
    ("dotprod", ("asimddp",), "int8 dot products"),
    ("i8mm", ("i8mm",), "int8 matrix multiply"),
    ("SVE", ("sve",), "scalable vectors"),
)
_INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
# the way out when a precision cannot pay off on this CPU (the reason itself comes from precision_unavailable)
_PRECISION_FIX = {
    ("ort", "fp16"): "use fp32 or int8 on this CPU; fp16 pays off with AVX512-FP16 (Intel Sapphire Rapids+), "
    "ARMv8.2 FP16, or on an NVIDIA GPU (--format tensorrt --precision fp16)",
    ("openvino", "bf16"): "use fp32 or int8 on this CPU; bf16 needs AVX512_BF16 or AMX (Intel Cooper Lake, "
    "Sapphire Rapids and later; AMD Zen 4 and later)",
}
_EXPORT_FORMATS = {"onnx": ("fp32", "int8")}  # written by export (fp32) and quantize (int8), no compile target


@dataclass(frozen=True, kw_only=True)
class Feature(Record):
    """One CPU feature that decides which kernels run."""

    name: str
    present: bool
    effect: str


@dataclass(frozen=True, kw_only=True)
class Component(Record):
    """A compile target or a backend: ``reason`` is ``None`` when it works here, else why not and ``fix``."""

    name: str
    reason: str | None = None
    fix: str | None = None
    detail: str = ""  # what it offers here: precisions, devices, execution providers

    DERIVED: ClassVar[tuple[str, ...]] = ("ok",)

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass(frozen=True, kw_only=True)
class Capability(Record):
    """One artifact format at one precision: can it be made here (``make``) and run here on ``backend`` (``run``)?

    ``make`` and ``run`` are ``None`` when it can, else the reason; ``fix`` says what to do about either.
    """

    format: str
    precision: str
    backend: str
    make: str | None = None
    run: str | None = None
    fix: str | None = None
    note: str | None = None  # runs, with a caveat worth knowing

    DERIVED: ClassVar[tuple[str, ...]] = ("ok",)

    @property
    def ok(self) -> bool:
        return self.make is None and self.run is None


@dataclass(frozen=True, kw_only=True)
class DoctorReport(Record):
    """Everything ``edgeformer doctor`` found; ``to_dict()`` is its ``--json``."""

    edgeformer: str | None
    python: str
    platform: str
    packages: dict[str, dict[str, str | None]]  # extra -> distribution -> version (None: not installed)
    cpu: DeviceCard
    features: tuple[Feature, ...]
    gpus: tuple[str, ...]  # one line per NVIDIA GPU nvidia-smi lists
    gpu_problem: str | None
    targets: tuple[Component, ...]
    backends: tuple[Component, ...]
    matrix: tuple[Capability, ...]


def diagnose() -> DoctorReport:
    """Inspect this machine: versions, CPU features, GPUs, and every format x precision with what stops it."""
    card = device_card(backend="ort")
    backends = tuple(_backend(name) for name in dict.fromkeys(FORMAT_BACKENDS.values()))
    targets = tuple(_target(name) for name in TARGETS)
    return DoctorReport(
        edgeformer=_version("edgeformer"),
        python=f"{sys.version.split()[0]} ({sys.executable})",
        platform=platform.platform(terse=True) + f" {platform.machine()}",
        packages={extra: {d: _version(d) for d in dists} for extra, dists in PACKAGES.items()},
        cpu=card,
        features=_features(card),
        gpus=_nvidia_gpus(),
        gpu_problem=gpu_problem(),
        targets=targets,
        backends=backends,
        matrix=_matrix({t.name: t for t in targets}, {b.name: b for b in backends}, card),
    )


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _features(card: DeviceCard) -> tuple[Feature, ...]:
    arm = card.machine.lower() in ("arm64", "aarch64")
    found = [
        Feature(name=n, present=any(f in card.isa for f in flags), effect=e)
        for n, flags, e in (_ARM_FEATURES if arm else _X86_FEATURES)
    ]
    fp16 = Feature(name="FP16 arithmetic", present=fp16_arithmetic(card), effect="fp16 compute on the CPU")
    return (*found, fp16)


def _nvidia_gpus() -> tuple[str, ...]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    query = ("--query-gpu=name,memory.total,driver_version", "--format=csv,noheader")
    try:
        done = subprocess.run([exe, *query], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(line.strip() for line in done.stdout.splitlines() if line.strip()) if done.returncode == 0 else ()


def _fix(target: Target | None) -> str | None:
    """What makes a target (or the backend of the same name) work: its extra when a package of it is missing,
    and the hardware or OS it needs, both from :data:`~edgeformer.compile.TARGETS`."""
    if target is None:
        return None
    missing = target.extra is not None and any(_version(d) is None for d in PACKAGES.get(target.extra, ()))
    return "; ".join([*([f"pip install 'edgeformer[{target.extra}]'"] if missing else []), f"needs {target.needs}"])


def _target(name: str) -> Component:
    t = TARGETS[name]
    reason = target_unavailable(name)
    return Component(name=name, reason=reason, fix=_fix(t) if reason else None, detail=", ".join(t.precisions))


def _backend(name: str) -> Component:
    try:
        impl = get_backend(name)
        reason, detail = impl.available(), "opens " + ", ".join(impl.formats)
    except BackendUnavailableError as e:
        reason, detail = str(e), ""
    if reason is None:
        detail += _devices(name)
    return Component(name=name, reason=reason, fix=_fix(TARGETS.get(name)) if reason else None, detail=detail)


def _devices(backend: str) -> str:
    """Where the backend can run: ORT's execution providers, OpenVINO's devices."""
    if backend == "ort":
        import onnxruntime

        return f"; providers: {', '.join(onnxruntime.get_available_providers())}"
    if backend == "openvino":
        return f"; devices: {', '.join(import_openvino().Core().available_devices)}"
    return ""


def _authoring_reason(what: str) -> str | None:
    """Why ``what`` (an authoring command) cannot run here: the exit-5 message of a missing ``export`` extra."""
    for module in sorted(EXPORT_EXTRA_MODULES):
        if importlib.util.find_spec(module) is None:
            err = missing_extra(ModuleNotFoundError(name=module), what)
            return str(err) if err is not None else None
    return None


def _matrix(targets: dict[str, Component], backends: dict[str, Component], card: DeviceCard) -> tuple[Capability, ...]:
    rows = []
    formats = {**_EXPORT_FORMATS, **{name: t.precisions for name, t in TARGETS.items()}}
    int8_note = None
    if not any(f in card.isa for f in _INT8_DOT):
        int8_note = (
            "runs, but this CPU has no int8 dot-product instructions (VNNI, AMX, dotprod): expect little speed-up"
        )
    for fmt in ("onnx", "ort", "openvino", "tensorrt", "coreml"):
        backend = FORMAT_BACKENDS[fmt]
        for precision in formats[fmt]:
            if fmt in targets:
                make, make_fix = targets[fmt].reason, targets[fmt].fix
            else:
                make = _authoring_reason("`edgeformer export`" if precision == "fp32" else "`edgeformer quantize`")
                make_fix = "pip install 'edgeformer[export]'" if make else None
            run, run_fix = backends[backend].reason, backends[backend].fix
            if run is None:
                run = precision_unavailable(backend, precision)
                run_fix = _PRECISION_FIX.get((backend, precision)) if run else None
            fix = "; ".join(dict.fromkeys(f for f in (make_fix, run_fix) if f)) or None
            note = int8_note if precision == "int8" and backend in ("ort", "openvino") and run is None else None
            rows.append(
                Capability(format=fmt, precision=precision, backend=backend, make=make, run=run, fix=fix, note=note)
            )
    return tuple(rows)


__all__ = ["PACKAGES", "Capability", "Component", "DoctorReport", "Feature", "diagnose"]
