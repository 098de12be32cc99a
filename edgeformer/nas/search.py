"""Searching a space for the most accurate sub-network under a predicted-latency budget.

Greedy (the default, EfficientFormer's recipe): from the parent, apply the action that loses the least accuracy per
millisecond it saves, until the prediction meets the budget. One trajectory serves every budget: a budget's answer is
the first point on it at or under that budget. Evolution (for comparison): a seeded population mutated within the
space, infeasible members repaired by greedy steps on latency alone, fittest by validation accuracy.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import SearchInfeasibleError
from ..records import Record
from .families import Genome
from .families.base import ATTN
from .model import LatencyModel
from .space import SearchSpace


@dataclass(frozen=True, kw_only=True)
class Step(Record):
    """One greedy step: what was cut, what it saved (predicted) and cost (validation top-1, points)."""

    action: str
    predicted_ms: float
    saved_ms: float
    accuracy: float
    lost: float


def _replace_stage(t: tuple, s: int, value: Any) -> tuple:
    return (*t[:s], value, *t[s + 1 :])


def actions(space: SearchSpace, g: Genome) -> Iterator[tuple[str, Genome]]:
    """Every one-step slimming of ``g`` that stays in the space (a smaller choice of one thing)."""
    for s in range(space.num_stages):
        d = g.depths[s]
        smaller = [c for c in space.depths[s] if c < d]
        if smaller:
            nd = max(smaller)
            yield (
                f"stage {s}: drop blocks {nd}..{d - 1}",
                dataclasses.replace(
                    g,
                    depths=_replace_stage(g.depths, s, nd),
                    ratios=_replace_stage(g.ratios, s, g.ratios[s][:nd]),
                    mixers=_replace_stage(g.mixers, s, g.mixers[s][:nd]),
                ),
            )
        narrower = [w for w in space.widths[s] if w < g.widths[s]]
        if narrower:
            w = max(narrower)
            partial = g.partial
            if partial is not None and partial[s] > w:
                fits = [p for p in space.partial[s] if p <= w]  # type: ignore[index]
                if not fits:
                    continue
                partial = _replace_stage(partial, s, max(fits))
            yield (
                f"stage {s}: width {g.widths[s]} -> {w}",
                dataclasses.replace(g, widths=_replace_stage(g.widths, s, w), partial=partial),
            )
        if g.partial is not None and space.partial is not None and any(m == ATTN for m in g.mixers[s]):
            lower = [p for p in space.partial[s] if p < g.partial[s]]
            if lower:
                yield (
                    f"stage {s}: attention width {g.partial[s]} -> {max(lower)}",
                    dataclasses.replace(g, partial=_replace_stage(g.partial, s, max(lower))),
                )
        for b in range(d):
            if g.mixers[s][b] == ATTN and len(space.mixers[s][b]) > 1:
                mixers = _replace_stage(g.mixers, s, _replace_stage(g.mixers[s], b, space.mixers[s][b][-1]))
                yield (f"stage {s} block {b}: attention off", dataclasses.replace(g, mixers=mixers))
            lower_r = [r for r in space.ratios[s][b] if r < g.ratios[s][b]]
            if lower_r:
                ratios = _replace_stage(g.ratios, s, _replace_stage(g.ratios[s], b, max(lower_r)))
                yield (
                    f"stage {s} block {b}: MLP ratio {g.ratios[s][b]:g} -> {max(lower_r):g}",
                    dataclasses.replace(g, ratios=ratios),
                )


def check_feasible(space: SearchSpace, lm: LatencyModel, budget_ms: float) -> float:
    """The smallest reachable predicted latency; raises when ``budget_ms`` is below it."""
    floor = lm.predict_ms(space.smallest())
    if budget_ms < floor:
        raise SearchInfeasibleError(
            f"no sub-network of {space.model} meets {budget_ms:g} ms on {lm.table.device.summary()}: the smallest "
            f"reachable predicted latency is {floor:.3f} ms; raise the budget or start from a smaller model."
        )
    return floor


def greedy(
    space: SearchSpace,
    lm: LatencyModel,
    accuracy: Callable[[Any], float],
    min_budget_ms: float,
    *,
    max_steps: int = 200,
    progress: Callable[[int, str], None] | None = None,
) -> tuple[list[tuple[Any, float, float]], list[Step]]:
    """The greedy trajectory from the parent down to ``min_budget_ms`` (``[(arch, predicted_ms, accuracy)]``), steps."""
    check_feasible(space, lm, min_budget_ms)
    g = space.genome(space.parent)
    arch = space.parent
    ms, acc = lm.predict_ms(arch), accuracy(arch)
    path, steps = [(arch, ms, acc)], []
    for i in range(max_steps):
        if ms <= min_budget_ms:
            break
        best = stuck = None
        for name, cand in actions(space, g):
            if space.problems(cand):
                continue
            a = space.to_arch(cand)
            cms = lm.predict_ms(a)
            saved = ms - cms
            if saved <= 1e-6:
                # every action shrinks the genome, so taking one that saves nothing cannot cycle; keep the least bad
                # in case no action saves (a measured table is not monotone everywhere)
                if stuck is None or cms < stuck[4]:
                    stuck = (0.0, name, cand, a, cms, None)
                continue
            cacc = accuracy(a)
            score = (acc - cacc) / saved  # points lost per millisecond saved; lower is better
            if best is None or score < best[0]:
                best = (score, name, cand, a, cms, cacc)
        if best is None and stuck is not None:
            best = (*stuck[:5], accuracy(stuck[3]))
        if best is None:
            break
        _, name, g, arch, cms, cacc = best
        steps.append(Step(action=name, predicted_ms=cms, saved_ms=ms - cms, accuracy=cacc, lost=acc - cacc))
        ms, acc = cms, cacc
        path.append((arch, ms, acc))
        if progress:
            progress(i + 1, f"{name} -> {ms:.2f} ms, {acc:.1f}%")
    return path, steps


def pick(path: list[tuple[Any, float, float]], budget_ms: float) -> tuple[Any, float, float]:
    """The first trajectory point at or under ``budget_ms`` (the least slimmed one that fits; the trajectory reaches
    the smallest member, which :func:`check_feasible` put under every budget)."""
    return next(p for p in path if p[1] <= budget_ms)


def _shrink(space: SearchSpace, lm: LatencyModel, g: Genome, budget_ms: float, rng: random.Random) -> Genome | None:
    """Random one-step slimmings until the prediction meets the budget (repairs an infeasible member)."""
    for _ in range(200):
        if lm.predict_ms(space.to_arch(g)) <= budget_ms:
            return g
        options = [c for _, c in actions(space, g) if not space.problems(c)]
        if not options:
            return None
        g = rng.choice(options)
    return None


def _mix(src: Genome, other: Genome, choices: tuple, s: int, field: str, rng: random.Random, rate: float) -> tuple:
    """Stage ``s``'s per-block ``field`` for ``src``'s depth: each block from ``other`` at ``rate`` where it has the
    block, else from ``src``, else the parent's choice (a block ``src`` gained from ``other``'s depth)."""
    mine, theirs = getattr(src, field)[s], getattr(other, field)[s]
    return tuple(
        theirs[b] if b < len(theirs) and rng.random() < rate else mine[b] if b < len(mine) else choices[b][0]
        for b in range(src.depths[s])
    )


def _mutate(space: SearchSpace, g: Genome, rng: random.Random, rate: float = 0.3) -> Genome:
    other = space.genome(space.sample(rng))
    widths = tuple(o if rng.random() < rate else w for w, o in zip(g.widths, other.widths, strict=True))
    depths, ratios, mixers = [], [], []
    for s in range(space.num_stages):
        src = other if rng.random() < rate else g
        depths.append(src.depths[s])
        ratios.append(_mix(g if src is g else other, other, space.ratios[s], s, "ratios", rng, rate))
        mixers.append(_mix(g if src is g else other, other, space.mixers[s], s, "mixers", rng, rate))
    partial = None
    if g.partial is not None and other.partial is not None:
        partial = tuple(
            min(o if rng.random() < rate else p, w) for p, o, w in zip(g.partial, other.partial, widths, strict=True)
        )
        partial = tuple(
            p if p in space.partial[s] else max(c for c in space.partial[s] if c <= w)  # type: ignore[index]
            for s, (p, w) in enumerate(zip(partial, widths, strict=True))
        )
    return Genome(widths=widths, depths=tuple(depths), ratios=tuple(ratios), mixers=tuple(mixers), partial=partial)


def evolution(
    space: SearchSpace,
    lm: LatencyModel,
    accuracy: Callable[[Any], float],
    budget_ms: float,
    *,
    population: int = 16,
    generations: int = 8,
    seed: int = 0,
    seeds: list[Any] | None = None,
    progress: Callable[[int, str], None] | None = None,
) -> tuple[Any, float, float]:
    """The fittest member with predicted latency <= ``budget_ms`` after ``generations`` of mutation and selection."""
    check_feasible(space, lm, budget_ms)
    rng = random.Random(f"evolution-{seed}-{budget_ms}")
    pop: list[Genome] = [space.genome(a) for a in (seeds or [])]
    while len(pop) < population:
        g = _shrink(space, lm, space.genome(space.sample(rng)), budget_ms, rng)
        if g is not None:
            pop.append(g)
    pop = [g for g in (_shrink(space, lm, g, budget_ms, rng) for g in pop) if g is not None]
    for gen in range(generations):
        scored = sorted(pop, key=lambda g: -accuracy(space.to_arch(g)))
        parents = scored[: max(2, population // 4)]
        children = []
        while len(children) < population - len(parents):
            child = _shrink(space, lm, _mutate(space, rng.choice(parents), rng), budget_ms, rng)
            if child is not None and not space.problems(child):
                children.append(child)
        pop = parents + children
        if progress:
            best = space.to_arch(parents[0])
            progress(gen + 1, f"generation {gen + 1}: best {accuracy(best):.1f}% at {lm.predict_ms(best):.2f} ms")
    best = max(pop, key=lambda g: accuracy(space.to_arch(g)))
    arch = space.to_arch(best)
    return arch, lm.predict_ms(arch), accuracy(arch)


def uniform(space: SearchSpace, fraction: float) -> Any:
    """The parent with every stage's width (and SHViT's attention width) scaled by ``fraction``, in width steps."""
    g = space.genome(space.parent)
    step = space.width_step
    widths = tuple(min(w, max(step, round(w * fraction / step) * step)) for w in g.widths)
    partial = None
    if g.partial is not None:
        partial = tuple(min(w, max(8, round(p * fraction / 8) * 8)) for p, w in zip(g.partial, widths, strict=True))
    arch = space.adapter.to_arch(space.parent, dataclasses.replace(g, widths=widths, partial=partial))
    arch.validate()
    return arch
