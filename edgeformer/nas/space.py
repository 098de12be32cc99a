"""The search space of a zoo variant: every sub-network :func:`~edgeformer.models.slice_weights` can cut out of it.

Example::

    space = SearchSpace.of("efficientformer_l1")
    arch = space.sample(random.Random(0))       # an EfficientFormerArch, frozen and hashable
    model = create_model("efficientformer_l1", **arch.to_dict())
    assert space.contains(space.smallest()) and space.largest() == space.parent
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..errors import ConfigError, InvalidArchError
from ..models import get_spec, list_models
from ..models.reference import list_references, read_reference_meta, reference_arch
from .families import Adapter, Genome, adapter_for

# Kernels run fastest on channel counts that are multiples of the SIMD/tensor-core width; odd widths from
# unstructured pruning are a known way to lose the speed-up. 16 suits AVX-512, NEON and TensorRT alike.
DEFAULT_WIDTH_STEP = 16
WIDTH_FRACTIONS = (1.0, 0.875, 0.75, 0.625)  # of the parent's width, rounded to the step; bounded on purpose
RATIO_FRACTIONS = (1.0, 0.75, 0.5)  # of each block's parent MLP ratio
PARTIAL_FRACTIONS = (1.0, 0.75, 0.5)  # of SHViT's per-stage partial dim


def _rounded_choices(parent: int, fractions: tuple[float, ...], step: int) -> tuple[int, ...]:
    """The parent's value first, then the fractions rounded to ``step`` (never above the parent, never below step)."""
    out = [parent]
    for f in fractions[1:]:
        v = max(step, round(parent * f / step) * step)
        if v < parent and v not in out:
            out.append(v)
    return tuple(out)


@dataclass(frozen=True)
class SearchSpace:
    """Choices per stage and per parent block; every combination is a valid, weight-inheritable sub-network.

    Attributes:
        model: the zoo variant or reference model the space belongs to.
        zoo_model: the zoo variant whose builder makes its members (``model`` itself, or a reference's base).
        family: its zoo family.
        parent: the parent's architecture record (the largest member).
        width_step: channel multiple of every narrowed width.
        widths: per stage, the width choices, the parent's first.
        depths: per stage, the depth choices (blocks are kept from the front of the stage).
        ratios: per stage and parent block, the MLP ratio choices.
        mixers: per stage and parent block, the mixer choices ("attn", "pool", "none").
        partial: SHViT: per stage, the partial-dim choices; ``None`` elsewhere.
    """

    model: str
    family: str
    zoo_model: str  # the zoo spec the family arch builds with (a reference model's base variant)
    parent: Any
    width_step: int
    widths: tuple[tuple[int, ...], ...]
    depths: tuple[tuple[int, ...], ...]
    ratios: tuple[tuple[tuple[float, ...], ...], ...]
    mixers: tuple[tuple[tuple[str, ...], ...], ...]
    partial: tuple[tuple[int, ...], ...] | None = None
    input_shape: tuple[int, ...] = ()  # one example input, batch 1 (image NCHW, or the waveform)

    @classmethod
    def of(cls, model: str, *, width_step: int = DEFAULT_WIDTH_STEP) -> SearchSpace:
        """The space of a zoo variant (``"shvit_s4"``) or a trained reference model (``"digits_shvit"``)."""
        if width_step not in (8, 16, 32):
            raise ConfigError(f"width_step must be 8, 16 or 32 (a kernel-friendly multiple), got {width_step}.")
        parent, spec_name, in_spec = _parent_arch(model)
        family = get_spec(spec_name).family
        adapter = adapter_for(family)
        g = adapter.to_genome(parent)
        ratios = tuple(
            tuple(
                tuple(sorted({round(r * f * 4) / 4 for f in RATIO_FRACTIONS if r * f >= 0.5}, reverse=True)) for r in st
            )
            for st in g.ratios
        )
        partial = None
        if adapter.has_partial and g.partial is not None:
            partial = tuple(_rounded_choices(p, PARTIAL_FRACTIONS, min(width_step, p)) for p in g.partial)
        min_depth = adapter.min_depth
        return cls(
            model=model,
            family=family,
            zoo_model=spec_name,
            parent=parent,
            width_step=width_step,
            widths=tuple(_rounded_choices(w, WIDTH_FRACTIONS, width_step) for w in g.widths),
            depths=tuple(tuple(range(d, max(min_depth, math.ceil(d / 2)) - 1, -1)) for d in g.depths),
            ratios=ratios,
            mixers=tuple(tuple(adapter.mixer_options(k) for k in st) for st in g.mixers),
            partial=partial,
            input_shape=tuple(in_spec.shape(1)),
        )

    @cached_property
    def adapter(self) -> Adapter:
        return adapter_for(self.family)

    @property
    def num_stages(self) -> int:
        return len(self.widths)

    # --- members ---------------------------------------------------------------------------------
    def to_arch(self, g: Genome) -> Any:
        """The family arch of genome ``g``; raises :class:`InvalidArchError` if ``g`` is outside the space."""
        problems = self.problems(g)
        if problems:
            raise InvalidArchError(problems, arch_name=f"member of the {self.model} search space")
        arch = self.adapter.to_arch(self.parent, g)
        arch.validate()
        return arch

    def genome(self, arch: Any) -> Genome:
        return self.adapter.to_genome(arch)

    def contains(self, arch: Any) -> bool:
        try:
            g = self.genome(arch)
        except (AttributeError, TypeError):
            return False
        return not self.problems(g) and self.adapter.to_arch(self.parent, g) == arch

    def problems(self, g: Genome) -> list[str]:
        """Why ``g`` is not a member (empty when it is)."""
        out: list[str] = []
        n = self.num_stages
        if not (len(g.widths) == len(g.depths) == len(g.ratios) == len(g.mixers) == n):
            return [f"needs {n} stages in every field"]
        for s in range(n):
            if g.widths[s] not in self.widths[s]:
                out.append(f"stage {s}: width {g.widths[s]} is not one of {self.widths[s]}")
            if g.depths[s] not in self.depths[s]:
                out.append(f"stage {s}: depth {g.depths[s]} is not one of {self.depths[s]}")
                continue
            if len(g.ratios[s]) != g.depths[s] or len(g.mixers[s]) != g.depths[s]:
                out.append(f"stage {s}: needs one ratio and one mixer per kept block ({g.depths[s]})")
                continue
            for b in range(g.depths[s]):
                if g.ratios[s][b] not in self.ratios[s][b]:
                    out.append(f"stage {s} block {b}: MLP ratio {g.ratios[s][b]} is not one of {self.ratios[s][b]}")
                if g.mixers[s][b] not in self.mixers[s][b]:
                    out.append(f"stage {s} block {b}: mixer {g.mixers[s][b]!r} is not one of {self.mixers[s][b]}")
        if self.partial is not None:
            if g.partial is None or len(g.partial) != n:
                out.append(f"partial: needs {n} per-stage partial dims")
            else:
                for s in range(n):
                    if g.partial[s] not in self.partial[s] or g.partial[s] > g.widths[s]:
                        out.append(f"stage {s}: partial dim {g.partial[s]} is not one of {self.partial[s]} (<= width)")
        return out

    def largest(self) -> Any:
        return self.parent

    def smallest(self) -> Any:
        """Narrowest widths, shallowest depths, smallest ratios, cheapest mixers (attention off where allowed)."""
        depths = tuple(min(d) for d in self.depths)
        g = Genome(
            widths=tuple(min(w) for w in self.widths),
            depths=depths,
            ratios=tuple(tuple(min(r) for r in st[:d]) for st, d in zip(self.ratios, depths, strict=True)),
            mixers=tuple(tuple(m[-1] for m in st[:d]) for st, d in zip(self.mixers, depths, strict=True)),
            partial=self._fit_partial(tuple(min(p) for p in self.partial), tuple(min(w) for w in self.widths))
            if self.partial
            else None,
        )
        return self.to_arch(g)

    def sample(self, rng: random.Random) -> Any:
        """A uniformly drawn member (each choice uniform and independent); seeded by ``rng``."""
        widths = tuple(rng.choice(w) for w in self.widths)
        depths = tuple(rng.choice(d) for d in self.depths)
        g = Genome(
            widths=widths,
            depths=depths,
            ratios=tuple(tuple(rng.choice(r) for r in st[:d]) for st, d in zip(self.ratios, depths, strict=True)),
            mixers=tuple(tuple(rng.choice(m) for m in st[:d]) for st, d in zip(self.mixers, depths, strict=True)),
            partial=self._fit_partial(tuple(rng.choice(p) for p in self.partial), widths) if self.partial else None,
        )
        return self.to_arch(g)

    def _fit_partial(self, partial: tuple[int, ...], widths: tuple[int, ...]) -> tuple[int, ...]:
        assert self.partial is not None
        return tuple(
            p if p <= w else max(c for c in choices if c <= w) if any(c <= w for c in choices) else p
            for p, w, choices in zip(partial, widths, self.partial, strict=True)
        )

    @property
    def size(self) -> int:
        """Number of members (exact count of the product of choices)."""
        total = 1
        for s in range(self.num_stages):
            per_depth = 0
            for d in self.depths[s]:
                n = 1
                for b in range(d):
                    n *= len(self.ratios[s][b]) * len(self.mixers[s][b])
                per_depth += n
            total *= per_depth * len(self.widths[s]) * (len(self.partial[s]) if self.partial else 1)
        return total

    # --- covering the space's blocks -------------------------------------------------------------
    def witnesses(self) -> Iterator[Any]:
        """Architectures (not necessarily members) that together contain every block the space can produce.

        Blocks depend on their stage's width (and partial dim), their own ratio and mixer, and, for the
        downsample, on the widths of two adjacent stages. So: every (ratio, mixer) pair a stage's blocks can
        take goes into one deep stage; width patterns cover every pair of adjacent widths; partial dims are
        covered per stage. The latency table measures each distinct block once, whichever witness held it.
        """
        combos = []
        for s in range(self.num_stages):
            pairs = sorted(
                {(r, m) for rs, ms in zip(self.ratios[s], self.mixers[s], strict=True) for r in rs for m in ms}
            )
            combos.append(pairs)
        k = max(len(w) for w in self.widths)
        patterns = set()
        for i, j in itertools.product(range(k), repeat=2):
            for a, b in ((i, j), (j, i)):
                patterns.add(
                    tuple(
                        self.widths[s][(a if s % 2 == 0 else b) % len(self.widths[s])] for s in range(self.num_stages)
                    )
                )
        partials: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        if self.partial:
            for wi in range(k):
                widths = tuple(w[wi % len(w)] for w in self.widths)
                for pi in range(max(len(p) for p in self.partial)):
                    part = tuple(min(p[pi % len(p)], w) for p, w in zip(self.partial, widths, strict=True))
                    partials.append((widths, part))
        else:
            partials = [(w, None) for w in sorted(patterns)]  # type: ignore[misc]
        seen = set()
        for widths, part in [
            (w, self.partial and self._fit_partial(tuple(p[0] for p in self.partial), w)) for w in sorted(patterns)
        ] + partials:
            key = (widths, part)
            if key in seen:
                continue
            seen.add(key)
            g = Genome(
                widths=widths,
                depths=tuple(len(c) for c in combos),
                ratios=tuple(tuple(r for r, _ in c) for c in combos),
                mixers=tuple(tuple(m for _, m in c) for c in combos),
                partial=part or None,
            )
            arch = self.adapter.to_arch(self.parent, g)
            arch.validate()
            yield arch


def _parent_arch(model: str) -> tuple[Any, str, Any]:
    """The architecture, zoo spec name and input spec of a zoo variant or a reference model."""
    if model in list_references():
        meta = read_reference_meta(model)
        return reference_arch(meta), meta.model, meta.input
    if model in list_models():
        spec = get_spec(model)
        return spec.arch, model, spec.input
    get_spec(model)  # raises UnknownModelError with suggestions
    raise AssertionError("unreachable")
