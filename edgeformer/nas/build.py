"""``build_table``: measure every block a search space can produce, then a few whole models for the correction.

Resumable: entries are merged into the table file as each batch is timed, and a rerun measures only what is
missing. Two builds extending one file at once merge under a lock and lose nothing (they may time a block
twice; the later timing wins). ``shard=(i, n)`` times only every n-th block and whole model from the i-th: n
builds on n agents of one label split one table between them (``build_fleet_tables``), and the correction is
fitted once all have merged (:func:`fit_table`).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import AgentUnreachableError, BackendUnavailableError, ConfigError, LatencyTableError
from ..scratch import scratch_dir
from .artifacts import BACKENDS, PRECISIONS, backend_unavailable, export_arch, export_module
from .blocks import build_model, segment_modules, segments
from .complexity import arch_complexity
from .fit import fit_correction
from .space import SearchSpace
from .table import Entry, LatencyTable, Whole, arch_dict, arch_id, open_for_build, update
from .timing import Timing, TimingConfig, make_timer

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]  # (done, total, what)
# a child build's exit code back to the error the executor understands (5: the agent died, so another of its label
# may take the work)
_CHILD_ERRORS: dict[int, type[Exception]] = {5: AgentUnreachableError, 2: ConfigError}


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
    token: str | None = None,
    whole_models: int = 8,
    seed: int = 0,
    timing: TimingConfig | None = None,
    progress: Progress | None = None,
    shard: tuple[int, int] = (0, 1),
) -> LatencyTable:
    """Build (or extend) the latency table of ``space`` on ``backend``/``precision`` at ``out``.

    Args:
        space: a :class:`SearchSpace` or a model name.
        device: ``None``/``"local"``: this machine; ``agent://HOST:PORT``: a device running ``edgeformer agent serve``
            (models are exported here and timed there; ``token`` or ``$EDGEFORMER_AGENT_TOKEN``).
        whole_models: whole sub-networks timed for the correction (smallest, largest, seeded samples).
        timing: rounds and calls per round; ``threads`` is taken from ``threads``.
        progress: called as ``progress(done, total, what)`` after each timed batch.
        shard: ``(i, n)``: time only the blocks and whole models at positions i, i + n, ... of the space's fixed
            order, and leave the correction to :func:`fit_table` (run it once every shard is in); ``(0, 1)``: all.

    Returns:
        The table as written, with its correction fitted (for one shard of several: without it).
    """
    space = SearchSpace.of(space) if isinstance(space, str) else space
    if backend not in BACKENDS:
        raise ConfigError(f"latency tables are built on {', '.join(BACKENDS)}, not {backend!r}.")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}.")
    index, count = shard
    if not 0 <= index < count:
        raise ConfigError(f"shard must be I/N with 0 <= I < N, got {index}/{count}.")
    timing = replace(timing or TimingConfig(), threads=threads)
    path = Path(out)
    if device in (None, "local") and (why := backend_unavailable(backend)):
        raise BackendUnavailableError(f"cannot build a {backend} latency table here: {why}")
    timer = make_timer(device, backend, threads, precision, timing, token)
    dev = timer.device
    keys = table_keys(space)
    fresh = LatencyTable(
        model=space.model, zoo_model=space.zoo_model, width_step=space.width_step, device=dev, keys_total=len(keys)
    )
    table = open_for_build(path, fresh)
    mine = list(keys)[index::count]
    todo = [k for k in mine if k not in table.entries]
    archs = calibration_archs(space, whole_models, seed)[index::count]
    done_whole = {arch_id(w.arch) for w in table.whole if w.purpose == "calibration"}
    whole_todo = [a for a in archs if arch_id(arch_dict(a)) not in done_whole]
    total = len(mine) + len(archs)
    done = total - len(todo) - len(whole_todo)
    if progress:
        progress(done, total, f"{len(todo)} blocks and {len(whole_todo)} whole models to time")
    with scratch_dir("latency") as tmp:
        work = Path(tmp)
        for start in range(0, len(todo), timing.batch_size):
            batch = todo[start : start + timing.batch_size]
            folders = _export_blocks(space, batch, keys, work, precision, backend)
            timings = timer.time(folders)
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
            timings = timer.time(folders)
            wholes = tuple(_whole(space, a, t, "calibration") for a, t in zip(batch, timings, strict=True))
            table = update(path, lambda t, w=wholes: replace(t, whole=t.whole + w))
            done += len(batch)
            if progress:
                progress(done, total, "whole models")
    return fit_table(path, space) if count == 1 else table


def fit_table(path: str | Path, space: SearchSpace) -> LatencyTable:
    """Fit the correction of the table at ``path`` on its whole models and write it back (under the lock)."""

    def fitted(t: LatencyTable) -> LatencyTable:
        if not t.complete:
            missing = t.keys_total - len(t.entries)
            raise LatencyTableError(f"{path} lacks {missing} of {t.keys_total} blocks; build it again to finish it.")
        return replace(t, correction=fit_correction(t, space))

    return update(Path(path), fitted)


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


def _whole(space: SearchSpace, arch: Any, t: Timing, purpose: str, drift: float = 1.0) -> Whole:
    params, macs = arch_complexity(space, arch)
    return Whole(
        drift=drift, arch=arch_dict(arch), p50_ms=t.p50_ms, noise=t.noise, params=params, macs=macs, purpose=purpose
    )


def _build_on(agent: Any, item: tuple[str, int, int, dict[str, Any]]) -> str:
    """One shard of a label's table on one of its agents, built by an ``edgeformer latency build --device --shard``
    child process (module level: the Ray executor pickles it). A process per agent, not a thread: torch.export
    keeps global tracing state, and two exports in one process at once fail."""
    label, index, count, kw = item
    out = Path(kw["out_dir"]) / f"{label}.json"
    t: TimingConfig = kw["timing"]
    cmd = [
        sys.executable,
        "-m",
        "edgeformer.cli.app",
        "latency",
        "build",
        kw["model"],
        "--out",
        str(out),
        "--device",
        agent.url,
        "--backend",
        kw["backend"],
        "--precision",
        kw["precision"],
        "--threads",
        str(kw["threads"]),
        "--width-step",
        str(kw["width_step"]),
        "--whole",
        str(kw["whole_models"]),
        "--rounds",
        str(t.rounds),
        "--seed",
        str(kw["seed"]),
        "--shard",
        f"{index}/{count}",
        "--json",
    ]
    env = {**os.environ}
    if agent.token:
        env["EDGEFORMER_AGENT_TOKEN"] = agent.token  # never on the command line, where `ps` shows it
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[0]
        raise _CHILD_ERRORS.get(proc.returncode, LatencyTableError)(f"{label} ({agent.url}): {first}")
    return str(out)


def build_fleet_tables(
    space: SearchSpace,
    fleet: Any,
    executor: Any,
    *,
    out_dir: str | Path,
    backend: str = "ort",
    precision: str = "fp32",
    threads: int = 2,
    whole_models: int = 8,
    seed: int = 0,
    timing: TimingConfig | None = None,
) -> dict[str, str]:
    """One table per label of ``fleet`` (``out_dir/<label>.json``), built in parallel by ``executor``: the labels
    side by side, and each label's table split into one shard per agent of the label (agents of one label are
    the same kind of device). An agent that dies is replaced by another of its label, and its shard resumes
    from what was merged; the correction is fitted once a label's shards are all in."""
    labels = list(fleet.labels)
    kw = {
        "model": space.model,
        "width_step": space.width_step,
        "backend": backend,
        "precision": precision,
        "threads": threads,
        "whole_models": whole_models,
        "seed": seed,
        "out_dir": str(out_dir),
        "timing": timing or TimingConfig(threads=threads),
    }
    shards = {label: len(fleet.with_label(label)) for label in labels}
    items = [(label, i, n, dict(kw)) for label, n in shards.items() for i in range(n)]
    executor.map(_build_on, items, device_for=lambda item: item[0])
    paths = {label: Path(out_dir) / f"{label}.json" for label in labels}
    for path in paths.values():
        fit_table(path, space)
    return {label: str(path) for label, path in paths.items()}
