"""``build_table``: measure every block a search space can produce, then a few whole models for the correction.

Resumable: entries are merged into the table file as each batch is timed, and a rerun measures only what is
missing. Two builds extending one file at once merge under a lock and lose nothing (they may time a block
twice; the later timing wins).
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .artifacts import BACKENDS, PRECISIONS, export_arch, export_module
from .blocks import build_model, segment_modules, segments
from .complexity import arch_complexity
from .fit import fit_correction
from .space import SearchSpace
from .table import Entry, LatencyTable, Whole, arch_dict, arch_id, open_for_build, update
from .timing import Timing, TimingConfig, local_device, time_artifacts

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]  # (done, total, what)


def table_keys(space: SearchSpace) -> dict[str, tuple[Any, str]]:
    """Every distinct block of ``space``: key id -> (a witness arch holding it, the segment path in it)."""
    found: dict[str, tuple[Any, str]] = {}
    for arch in space.witnesses():
        for seg in segments(space.zoo_model, arch, space.input_shape):
            found.setdefault(seg.key.id, (arch, seg.path))
    return found


def calibration_archs(space: SearchSpace, n: int, seed: int) -> list[Any]:
    """The whole models the correction is fitted on: smallest, largest, then seeded samples (distinct)."""
    archs = [space.smallest(), space.largest()]
    rng = random.Random(f"calibration-{seed}")
    for _ in range(50 * n):
        if len(archs) >= n:
            break
        a = space.sample(rng)
        if a not in archs:
            archs.append(a)
    return archs[:n]


def build_table(
    space: SearchSpace | str,
    backend: str = "ort",
    precision: str = "fp32",
    threads: int = 2,
    device: str | None = None,
    *,
    out: str | Path,
    whole_models: int = 8,
    seed: int = 0,
    timing: TimingConfig | None = None,
    progress: Progress | None = None,
) -> LatencyTable:
    """Build (or extend) the latency table of ``space`` on ``backend``/``precision`` at ``out``.

    Args:
        space: a :class:`SearchSpace` or a model name.
        device: ``None``/``"local"``: this machine. Remote devices go through ``edgeformer agent``.
        whole_models: whole sub-networks timed for the correction (smallest, largest, seeded samples).
        timing: rounds and calls per round; ``threads`` is taken from ``threads``.
        progress: called as ``progress(done, total, what)`` after each timed batch.

    Returns:
        The table as written, with its correction fitted.
    """
    space = SearchSpace.of(space) if isinstance(space, str) else space
    if backend not in BACKENDS:
        raise ConfigError(f"latency tables are built on {', '.join(BACKENDS)}, not {backend!r}.")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}.")
    if device not in (None, "local"):
        raise ConfigError(f"device {device!r}: only this machine ('local') is supported by this build.")
    timing = replace(timing or TimingConfig(), threads=threads)
    path = Path(out)
    dev = local_device(backend, threads, precision)
    keys = table_keys(space)
    fresh = LatencyTable(
        model=space.model, zoo_model=space.zoo_model, width_step=space.width_step, device=dev, keys_total=len(keys)
    )
    table = open_for_build(path, fresh)
    todo = [k for k in keys if k not in table.entries]
    archs = calibration_archs(space, whole_models, seed)
    done_whole = {arch_id(w.arch) for w in table.whole if w.purpose == "calibration"}
    whole_todo = [a for a in archs if arch_id(arch_dict(a)) not in done_whole]
    total = len(keys) + len(archs)
    done = total - len(todo) - len(whole_todo)
    if progress:
        progress(done, total, f"{len(todo)} blocks and {len(whole_todo)} whole models to time")
    with tempfile.TemporaryDirectory(prefix="edgeformer-latency-") as tmp:
        work = Path(tmp)
        for start in range(0, len(todo), timing.batch_size):
            batch = todo[start : start + timing.batch_size]
            folders = _export_blocks(space, batch, keys, work, precision, backend)
            timings = time_artifacts(folders, backend, timing)
            entries = {k: _entry(keys, k, t, space) for k, t in zip(batch, timings, strict=True)}
            table = update(path, lambda t, e=entries: t.with_entries(e))
            for f in folders:
                shutil.rmtree(f.parent, ignore_errors=True)
            done += len(batch)
            if progress:
                progress(done, total, f"blocks ({batch[-1].split('#')[0]})")
        for start in range(0, len(whole_todo), timing.batch_size):
            batch = whole_todo[start : start + timing.batch_size]
            folders = [
                export_arch(
                    a,
                    space.input_shape,
                    work / f"whole{start + i}",
                    zoo_model=space.zoo_model,
                    precision=precision,
                    backend=backend,
                )
                for i, a in enumerate(batch)
            ]
            timings = time_artifacts(folders, backend, timing)
            wholes = tuple(_whole(space, a, t, "calibration") for a, t in zip(batch, timings, strict=True))
            table = update(path, lambda t, w=wholes: replace(t, whole=t.whole + w))
            done += len(batch)
            if progress:
                progress(done, total, "whole models")
    correction = fit_correction(table, space)
    return update(path, lambda t: replace(t, correction=correction))


def _export_blocks(
    space: SearchSpace, batch: list[str], keys: dict[str, tuple[Any, str]], work: Path, precision: str, backend: str
) -> list[Path]:
    folders, built = [], {}
    for i, key_id in enumerate(batch):
        arch, seg_path = keys[key_id]
        if arch not in built:
            built = {arch: dict(segment_modules(build_model(space.zoo_model, arch).fuse()))}
        module = built[arch][seg_path]
        shape = next(
            s.key.input_shape for s in segments(space.zoo_model, arch, space.input_shape) if s.path == seg_path
        )
        folders.append(
            export_module(
                module, shape, work / f"b{i}", zoo_model=space.zoo_model, precision=precision, backend=backend
            )
        )
    return folders


def _entry(keys: dict[str, tuple[Any, str]], key_id: str, t: Timing, space: SearchSpace) -> Entry:
    arch, seg_path = keys[key_id]
    key = next(s.key for s in segments(space.zoo_model, arch, space.input_shape) if s.path == seg_path)
    return Entry(
        key=key, p50_ms=t.p50_ms, noise=t.noise, rounds=t.rounds, runs=t.runs, witness=seg_path, measured=time.time()
    )


def _whole(space: SearchSpace, arch: Any, t: Timing, purpose: str) -> Whole:
    params, macs = arch_complexity(space, arch)
    return Whole(arch=arch_dict(arch), p50_ms=t.p50_ms, noise=t.noise, params=params, macs=macs, purpose=purpose)
