"""The compile target table and the dispatcher that validates against it."""

from __future__ import annotations

import dataclasses
import importlib
import logging
from pathlib import Path
from typing import Any, NamedTuple

from ..artifact import MANIFEST_NAME, Artifact, check_output_path, input_paths
from ..errors import BackendUnavailableError, ConfigError, did_you_mean
from ..runtimes.isolation import probe_before_loading
from ..steps import USE_DEFAULT_CACHE

log = logging.getLogger(__name__)


class Target(NamedTuple):
    """One compile target: ``entry`` and ``config`` are ``"module:attr"``; ``extra`` is the pip extra (or None)."""

    entry: str
    precisions: tuple[str, ...]
    extra: str | None
    needs: str
    config: str


TARGETS: dict[str, Target] = {
    "tensorrt": Target(
        "edgeformer.compile.tensorrt:compile_tensorrt",
        ("fp32", "fp16", "int8"),
        "tensorrt",
        "NVIDIA GPU + CUDA driver (Linux/Windows)",
        "edgeformer.compile.tensorrt:TensorRtConfig",
    ),
    "coreml": Target(
        "edgeformer.compile.coreml:compile_coreml",
        ("fp32", "fp16", "int8"),
        "coreml",
        "any OS to convert; macOS to predict (Apple silicon for the Neural Engine)",
        "edgeformer.compile.coreml:CoreMlConfig",
    ),
    "openvino": Target(
        "edgeformer.compile.openvino:compile_openvino",
        ("fp32", "bf16", "int8"),
        "openvino",
        "x86-64 or ARM CPU (bf16: AVX512_BF16 or AMX), Intel GPU/NPU",
        "edgeformer.compile.openvino:OpenVinoConfig",
    ),
    "ort": Target(
        "edgeformer.compile.ort_optimize:compile_ort",
        ("fp32", "fp16", "int8"),
        None,
        "any CPU ONNX Runtime runs on; the optimized model runs on the same execution provider",
        "edgeformer.compile.ort_optimize:OrtOptimizeConfig",
    ),
}
DEFAULT_PRECISION = "fp32"


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_target(name: str) -> Target:
    """The :class:`Target` called ``name``; unknown names raise :class:`ConfigError` with close matches."""
    name = str(getattr(name, "value", name)).lower()  # accept the CLI's str Enum as well as a plain string
    if name not in TARGETS:
        raise ConfigError(
            f"unknown compile target {name!r}{did_you_mean(name, TARGETS)}; known: {', '.join(TARGETS)} (--format)."
        )
    return TARGETS[name]


def target_unavailable(name: str) -> str | None:
    """Why target ``name`` cannot run here (missing extra, hardware, OS), or ``None`` when it can."""
    target = get_target(name)
    module = target.entry.partition(":")[0]
    try:
        probe = importlib.import_module(module).available
    except ImportError as e:
        # the module itself is absent, or a hard import inside it failed: name what to install
        install = f"pip install 'edgeformer[{target.extra}]'" if target.extra else "reinstall edgeformer"
        return f"{module} cannot be imported ({e}); {install}"
    reason = probe()
    if reason and target.extra and target.extra not in reason:
        reason += f" (extra: pip install 'edgeformer[{target.extra}]'; needs {target.needs})"
    return reason


def targets_available() -> dict[str, str | None]:
    """Every target with ``None`` when it can compile here, else the reason (for bench and ``--help``)."""
    return {name: target_unavailable(name) for name in TARGETS}


def targets_help() -> str:
    """One line per target: precisions, what it needs and how to install it (the CLI's ``--format`` help)."""
    lines = []
    for name, t in TARGETS.items():
        install = f"; pip install 'edgeformer[{t.extra}]'" if t.extra else ""
        lines.append(f"{name}: {', '.join(t.precisions)} (needs {t.needs}{install})")
    return "\n".join(lines)


def build_config(name: str, precision: str | None = None, config: Any = None, **options: Any) -> Any:
    """The target's config dataclass from ``precision`` and keyword options, or ``config`` checked.

    Raises:
        ConfigError: unknown target or option (with close matches; nothing is dropped), a precision the
            target does not support (listing those it does), a config of another target's type, or a
            config given together with options.
    """
    target = get_target(name)
    try:
        cls = _resolve(target.config)
    except ImportError as e:  # the target's module is missing or one of its hard imports is
        raise BackendUnavailableError(f"--format {name} cannot run here: {target_unavailable(name)}") from e
    if precision is not None:
        precision = str(getattr(precision, "value", precision)).lower()  # the CLI's str Enum, or a plain string
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    if config is not None:
        if not isinstance(config, cls):
            raise ConfigError(f"--format {name} takes config={cls.__name__}(...), got {type(config).__name__}.")
        if options:
            raise ConfigError(
                f"give the {name} options either in config= or as keywords, not both (got {', '.join(options)})."
            )
        if precision is not None and precision != config.precision:
            raise ConfigError(f"precision {precision!r} differs from config.precision {config.precision!r}; give one.")
        precision = config.precision
    precision = precision or DEFAULT_PRECISION
    if precision not in target.precisions:
        raise ConfigError(
            f"--format {name} does not support --precision {precision}; it supports {', '.join(target.precisions)}."
        )
    if config is not None:
        return config
    unknown = [k for k in options if k not in fields]
    if unknown:
        hints = "; ".join(f"{k!r}{did_you_mean(k, fields - {'precision'})}" for k in unknown)
        raise ConfigError(
            f"unknown {name} option(s) {hints}; {name} takes {', '.join(sorted(fields - {'precision'}))}."
        )
    try:
        return cls(precision=precision, **options)
    except TypeError as e:  # a dataclass rejects what __post_init__ never sees (e.g. unhashable values)
        raise ConfigError(f"invalid {name} options: {e}.") from e


def default_out(source: Path, target: str, precision: str) -> Path:
    """``<artifact>-<target>-<precision>`` beside ``source`` (an artifact folder, or a bare model file's stem)."""
    name = source.name if source.is_dir() else source.stem
    return source.parent / f"{name}-{target}-{precision}"


def compile(
    artifact_or_path: str | Path | Artifact,
    *,
    target: str,
    precision: str | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    config: Any = None,
    cache: Any = USE_DEFAULT_CACHE,
    **target_options: Any,
) -> Artifact:
    """Compile an artifact for ``target`` and write the new artifact at ``out``.

    Args:
        artifact_or_path: an artifact folder, a bare ``.onnx`` file, or an :class:`Artifact`.
        target: a key of :data:`TARGETS` (``"tensorrt"``, ``"coreml"``, ``"openvino"``, ``"ort"``).
        precision: one of the target's precisions; default ``"fp32"`` (or ``config.precision``).
        out: the artifact folder to write; default ``<artifact>-<target>-<precision>`` beside the input.
        overwrite: replace ``out`` if it exists.
        config: the target's config dataclass (``OpenVinoConfig``, ...) instead of keyword options.
        cache: the step cache (:class:`~edgeformer.cache.StepCache`); the default is the user's
            (``EDGEFORMER_CACHE_DIR``, off with ``EDGEFORMER_NO_CACHE=1``), ``None`` turns it off (``--no-cache``).
            A compile is keyed by the input artifact's sha256, the target, the config and the tool versions.
        **target_options: fields of the target's config (``nncf=True``, ``save_ort_format=True``, ...).

    Returns:
        The written :class:`~edgeformer.artifact.Artifact`.

    Raises:
        ConfigError: unknown target/option, unsupported precision, or ``out`` exists (exit 2).
        BackendUnavailableError: the target cannot run here; the message says why (exit 5).
        ModelFileError: the ONNX parent crashes or hangs onnxruntime, found in a child process (exit 3).
    """
    name = str(getattr(target, "value", target)).lower()
    t = get_target(name)
    cfg = build_config(name, precision, config, **target_options)
    if isinstance(artifact_or_path, Artifact):
        artifact = artifact_or_path
        source = artifact.path if (artifact.path / MANIFEST_NAME).is_file() else artifact.model_path
    else:
        source = Path(artifact_or_path)
        artifact = Artifact.load(source)
    dest = Path(out) if out is not None else default_out(source, name, cfg.precision)
    check_output_path(dest, input_paths(artifact), overwrite)
    reason = target_unavailable(name)
    if reason:
        raise BackendUnavailableError(f"--format {name} cannot run here: {reason}")
    if artifact.format == "onnx":
        # the target's checks load the parent in this process (fidelity on onnxruntime): a model that crashes or
        # hangs the runtime must fail here, in a child. An op onnxruntime lacks is left to the target to report.
        probe_before_loading(artifact, "ort", refusal_ok=True)
    log.info("compiling %s for %s (%s) into %s", artifact.model_path, name, cfg.precision, dest)
    return _resolve(t.entry)(artifact, cfg, dest, overwrite, cache=cache)


__all__ = [
    "DEFAULT_PRECISION",
    "TARGETS",
    "Target",
    "build_config",
    "compile",
    "default_out",
    "get_target",
    "input_paths",  # lives in edgeformer.artifact; re-exported for existing imports
    "target_unavailable",
    "targets_available",
    "targets_help",
]
