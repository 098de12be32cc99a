"""Compile: one artifact in, a target-specific artifact out (TensorRT engine, CoreML, OpenVINO IR, ORT-optimized).

:data:`TARGETS` is the single source of truth: the dispatcher validates against it, the CLI builds its
help text from it (:func:`targets_help`), and bench asks it what can run here (:func:`targets_available`).
Each row names the target's compile function and config class (imported lazily, so importing edgeformer
never imports a vendor SDK), its precisions, the pip extra that installs it and the hardware it needs.

Order of checks, so that each failure is reported as what it is: target, precision and options
(exit 2), the input artifact (exit 3), the output path (exit 2), then whether the target can run here
(exit 5), and only then the target's own work.

Example::

    import edgeformer
    ir = edgeformer.compile("build/l1", target="openvino", precision="bf16")        # build/l1-openvino-bf16
    ort = edgeformer.compile("build/l1", target="ort", save_ort_format=True, out="build/l1-mobile")
"""

from .targets import (
    DEFAULT_PRECISION,
    TARGETS,
    Target,
    build_config,
    compile,
    default_out,
    get_target,
    target_unavailable,
    targets_available,
    targets_help,
)

__all__ = [
    "DEFAULT_PRECISION",
    "TARGETS",
    "Target",
    "build_config",
    "compile",
    "default_out",
    "get_target",
    "target_unavailable",
    "targets_available",
    "targets_help",
]

from ..callable_package import make_callable

make_callable(__name__, compile)
