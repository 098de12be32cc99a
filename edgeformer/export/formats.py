"""The export format table and :func:`export`, the one entry point that dispatches on it."""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BackendUnavailableError, ConfigError, EdgeformerError, did_you_mean
from ..models.reference import list_references, read_reference_meta
from ..steps import USE_DEFAULT_CACHE, export_input_sha

if TYPE_CHECKING:
    from ..artifact import Artifact


@dataclass(frozen=True, kw_only=True)
class ExportFormat:
    """One export target: ``target`` is ``"module:function"`` with the signature of :func:`export`."""

    name: str
    target: str
    config: str  # "module:Class" of the format's config, built by build_config from the CLI's options


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat(
            name="onnx", target="edgeformer.export.onnx:export_onnx", config="edgeformer.export.onnx:OnnxExportConfig"
        ),
        ExportFormat(
            name="coreml",
            target="edgeformer.export.coreml:export_coreml",
            config="edgeformer.export.coreml:CoreMlConfig",
        ),
    )
}


# the import names of the `export` extra's packages (pyproject.toml) and onnxscript's onnx_ir: the authoring stack
# a device install lacks
EXPORT_EXTRA_MODULES = frozenset({"torch", "onnxscript", "onnx_ir", "onnxslim", "safetensors", "matplotlib", "sympy"})


def missing_extra(e: ModuleNotFoundError, what: str) -> BackendUnavailableError | None:
    """The exit-5 error for ``what`` when ``e`` is a package of the ``export`` extra, else ``None`` (a real bug).

    Example::

        except ModuleNotFoundError as e:
            err = missing_extra(e, "onnx export")
            if err is None:
                raise
            raise err from e
    """
    top = (e.name or "").partition(".")[0]
    if top not in EXPORT_EXTRA_MODULES:
        return None
    return BackendUnavailableError(
        f"{what} needs the 'export' extra ({top} is not installed): pip install 'edgeformer[export]'"
    )


def source_sha(
    model: Any,
    *,
    checkpoint: str | Path | None,
    arch_overrides: dict[str, Any],
    example_inputs: Any = None,
    input_spec: Any = None,
) -> str | None:
    """An export's ``StepSpec.input_sha`` (:func:`~edgeformer.steps.export_input_sha`), with the weights file of a
    trained reference model named by ``model``; ``None`` (never cached) for a module, or for a name given example
    inputs or an input spec, which the export refuses."""
    if example_inputs is not None or input_spec is not None:
        return None
    weights = None
    if isinstance(model, str) and model in list_references():
        try:
            weights = read_reference_meta(model).weights_sha256
        except EdgeformerError:  # a broken sidecar: not cached, and the export reports it
            return None
    return export_input_sha(model, checkpoint, arch_overrides, weights=weights)


def get_format(fmt: str) -> ExportFormat:
    """The :class:`ExportFormat` named ``fmt``; unknown names raise with close matches."""
    fmt = str(getattr(fmt, "value", fmt)).lower()  # accept the CLI's str Enum as well as a plain string
    if fmt not in FORMATS:
        raise ConfigError(
            f"unknown export format {fmt!r}{did_you_mean(fmt, FORMATS)}; known: {', '.join(FORMATS)} (--format)."
        )
    return FORMATS[fmt]


def build_config(fmt: str, **options: Any) -> Any:
    """The config of export format ``fmt`` from keyword options (compile's pattern: nothing silently dropped).

    Raises:
        ConfigError: an unknown format, or an option the format does not take (named, with close matches).
    """
    spec = get_format(fmt)
    module, _, attr = spec.config.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in options if k not in fields]
    if unknown:
        hints = "; ".join(f"--{k.replace('_', '-')}{did_you_mean(k, fields)}" for k in unknown)
        raise ConfigError(
            f"{hints} does not apply to --format {spec.name}; it takes {', '.join(sorted(fields))} "
            f"(precision and compute units of a CoreML package: `edgeformer compile --format coreml`)."
            if spec.name == "coreml"
            else f"{hints} does not apply to --format {spec.name}; it takes {', '.join(sorted(fields))}."
        )
    return cls(**options)


def export(
    model: Any,
    *,
    fmt: str = "onnx",
    out: str | Path,
    example_inputs: tuple[Any, ...] | None = None,
    input_spec: Any = None,
    config: Any = None,
    checkpoint: str | Path | None = None,
    overwrite: bool = False,
    cache: Any = USE_DEFAULT_CACHE,
    **arch_overrides: Any,
) -> Artifact:
    """Export a zoo model (by name) or an ``nn.Module`` to ``fmt`` and write the artifact folder ``out``.

    Args:
        model: a zoo name (``"efficientformer_l1"``) or a torch ``nn.Module``.
        fmt: a key of :data:`FORMATS` (``"onnx"``).
        out: the artifact folder to write (atomically); it must not exist unless ``overwrite``.
        example_inputs: a tuple of tensors, required for an ``nn.Module``; zoo models make their own.
        input_spec: for an ``nn.Module``, its ``ImageInput``/``AudioInput`` (recorded as preprocessing).
        config: the format's config (``OnnxExportConfig`` for ONNX); ``None`` uses the model's hints.
        checkpoint: weights for a zoo model (official, timm or safetensors).
        overwrite: replace ``out`` if it exists.
        cache: the step cache (:class:`~edgeformer.cache.StepCache`); the default is the user's
            (``EDGEFORMER_CACHE_DIR``, off with ``EDGEFORMER_NO_CACHE=1``), ``None`` turns it off (``--no-cache``).
            A zoo export is keyed by name, checkpoint sha256, overrides and config; your own module is never cached.
        **arch_overrides: architecture fields of a zoo model (``num_classes=10``, ``depths=...``).

    Returns:
        The written :class:`~edgeformer.artifact.Artifact`.

    Raises:
        ConfigError: unknown format, bad config or overrides; ``OutputExistsError`` for an existing ``out``.
        ParityError: the exported model's outputs differ from torch beyond tolerance.
        BackendUnavailableError: the ``export`` extra (torch, ...) is not installed.
    """
    spec = get_format(fmt)
    module, _, attr = spec.target.partition(":")
    try:  # the exporters import torch (lazily, or deep inside): on a device install that is the export extra
        fn = getattr(importlib.import_module(module), attr)
        return fn(
            model,
            out=Path(out),
            example_inputs=example_inputs,
            input_spec=input_spec,
            config=config,
            checkpoint=checkpoint,
            overwrite=overwrite,
            cache=cache,
            **arch_overrides,
        )
    except ModuleNotFoundError as e:
        err = missing_extra(e, f"{spec.name} export")
        if err is None:
            raise
        raise err from e
