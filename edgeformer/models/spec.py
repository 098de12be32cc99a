"""ModelSpec: the single place a variant's name and settings live.

Input specs live in :mod:`edgeformer.inputs` (torch-free); they are re-exported here for the families.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError, InvalidArchError
from ..inputs import InputSpec


@dataclass(frozen=True, kw_only=True)
class ExportHints:
    """Per-architecture export settings, declared as data (optimum's lesson)."""

    opset: int = 18
    min_opset: int = 17
    atol: float = 1e-4  # max abs error relative to the output scale (max |torch output|)
    min_cosine: float = 0.99999
    dynamic_batch: bool = True
    dynamo: bool = True  # torch.export-based exporter; False = TorchScript exporter


def to_tuples(value: Any) -> Any:
    """Lists (from JSON or the CLI) become tuples, recursively, so that a frozen arch stays hashable."""
    if isinstance(value, list | tuple):
        return tuple(to_tuples(v) for v in value)
    return value


def is_int(v: Any) -> bool:
    """An int that is not a bool (``True`` is an int to Python, never a width to us)."""
    return isinstance(v, int) and not isinstance(v, bool)


class ArchBase:
    """Mixin for a family's frozen architecture dataclass.

    Subclasses implement :meth:`problems` returning one ``"field: what is wrong"`` string per
    offending field; :meth:`validate` raises :class:`InvalidArchError` listing all of them.
    """

    def problems(self) -> list[str]:
        raise NotImplementedError

    def validate(self) -> None:
        problems = self.problems()
        if problems:
            raise InvalidArchError(problems, arch_name=type(self).__name__)

    def replace(self, **overrides: Any):
        """A copy with ``overrides`` applied; unknown field names raise, never silently dropped."""
        names = {f.name for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(
                f"unknown architecture override(s) {', '.join(unknown)} for {type(self).__name__}; "
                f"valid fields: {', '.join(sorted(names))}."
            )
        return dataclasses.replace(self, **overrides)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One registered variant.

    ``params_m``/``macs_g`` are the published figures at ``input.resolution``; ``counts_distillation_head``
    says whether the paper's parameter count includes the distillation head.
    """

    name: str
    family: str
    task: Literal["image-classification", "audio-classification"]
    build: Callable[[Any], Any]  # arch -> nn.Module
    arch: ArchBase
    input: InputSpec
    num_classes: int
    export: ExportHints = field(default_factory=ExportHints)
    remap: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None  # official/timm keys -> ours
    labels: str | None = None  # "imagenet" or a label-set name known to edgeformer.data.labels
    paper: str = ""
    repo: str = ""
    license: str = ""
    params_m: float | None = None
    macs_g: float | None = None
    counts_distillation_head: bool = False
    notes: str = ""
