"""Subpackages that are also the public function of the same name.

``edgeformer.export``, ``edgeformer.compile`` and ``edgeformer.bench`` are both a subpackage (where the code
lives) and the function users call (``edgeformer.export("efficientformer_l1", out=...)``). Python sets a
submodule as an attribute of its parent package once it is imported, so after ``import edgeformer.export.onnx``
the name ``edgeformer.export`` is the package whatever ``edgeformer/__init__.py`` says. Making the package
callable keeps both spellings working in any import order.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


def make_callable(module_name: str, fn: Callable[..., Any]) -> None:
    """Let ``module_name``'s module object be called as ``fn`` (with ``fn``'s docstring as its ``__call__``'s)."""

    class _CallablePackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

    _CallablePackage.__call__.__doc__ = fn.__doc__
    sys.modules[module_name].__class__ = _CallablePackage
