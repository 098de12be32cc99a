"""edgeformer: take mobile vision and audio transformers to the edge.

The public API is curated here and imported lazily, so that ``import edgeformer`` (and the runtime:
``Session``, ``load``) needs only numpy + onnxruntime on an edge device, never torch.

Example::

    import edgeformer
    art = edgeformer.export("efficientformer_l1", out="build/l1")
    print(edgeformer.profile(art).latency.p50_ms)
    print(edgeformer.load(art).predict("cat.jpg")[0])
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_model": "edgeformer.models:create_model",
    "list_models": "edgeformer.models:list_models",
    "get_spec": "edgeformer.models:get_spec",
    "slice_weights": "edgeformer.models:slice_weights",
    "export": "edgeformer.export:",
    "quantize": "edgeformer.quant:quantize",
    "QuantConfig": "edgeformer.quant.config:QuantConfig",
    "compile": "edgeformer.compile:",
    "profile": "edgeformer.profiling:profile",
    "ProfileConfig": "edgeformer.profiling:ProfileConfig",
    "bench": "edgeformer.bench:",
    "Session": "edgeformer.runtimes:Session",
    "load": "edgeformer.runtimes:load",
    "Artifact": "edgeformer.artifact:Artifact",
}

from .errors import (  # noqa: E402 - errors are torch-free and always needed
    BackendUnavailableError,
    ConfigError,
    EdgeformerError,
    InvalidArchError,
    InvalidInputError,
    ParityError,
    UnknownModelError,
    WeightsError,
)


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'edgeformer' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = importlib.import_module(module)
    # export, compile and bench are callable subpackages (see callable_package): the package is the function
    value = value if module == f"edgeformer.{name}" else getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    *_LAZY,
    "BackendUnavailableError",
    "ConfigError",
    "EdgeformerError",
    "InvalidArchError",
    "InvalidInputError",
    "ParityError",
    "UnknownModelError",
    "WeightsError",
]
