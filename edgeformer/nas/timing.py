"""Interleaved timing of many small artifacts on one backend: how latency tables are measured.

On a shared 2-core machine, load comes and goes over seconds; timing blocks one after another would charge that
drift to whichever block ran then. So a batch of sessions stays open and is timed in rounds (A B C … A B C …),
each round a short fixed number of calls per model. A model's latency is its *best* round p50 and its noise the
std/mean of the round p50s: another process can only add time to a call, never remove it, so on a shared machine
the quietest round is the closest estimate of what the device does undisturbed (with the median of rounds, blocks
and whole models timed minutes apart under other jobs' load disagreed by up to 2x). ORT's spinning is off (workers
sleep between ops) so that idle workers of one session do not steal the cores from the one being timed; the
table's fingerprint records it.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..agent import AgentClient, resolve_token
from ..artifact import Artifact
from ..errors import ConfigError
from ..profiling import ProfileConfig, build_feeds, device_card, measure, open_session
from ..profiling.side_by_side import session_options  # the one ORT setting of every interleaved timing
from ..runtimes.feeds import check_feeds
from .table import TableDevice


@dataclass(frozen=True, kw_only=True)
class TimingConfig:
    """Rounds of ``runs`` calls per model after ``warmup`` calls; ``threads`` intra-op threads."""

    threads: int = 2
    rounds: int = 5
    runs: int = 10
    warmup: int = 3
    batch_size: int = 8  # sessions open at once


@dataclass(frozen=True)
class Timing:
    p50_ms: float
    noise: float
    rounds: int
    runs: int


def option_labels(backend: str) -> tuple[str, ...]:
    return ("allow_spinning=0",) if backend == "ort" else ()


def local_device(backend: str, threads: int, precision: str) -> TableDevice:
    card = device_card(backend=backend, threads=threads)
    return TableDevice(
        device_id=card.device_id,
        label=f"{card.cpu_model} · {card.physical_cores} cores",
        host="local",
        backend=backend,
        runtime=card.runtime,
        threads=threads,
        precision=precision,
        options=option_labels(backend),
    )


def time_artifacts(paths: Sequence[Path], backend: str, cfg: TimingConfig) -> list[Timing]:
    """Time every artifact in ``paths`` interleaved (batches of ``cfg.batch_size`` sessions open at once)."""
    out: list[Timing] = []
    for start in range(0, len(paths), cfg.batch_size):
        out += _time_batch(paths[start : start + cfg.batch_size], backend, cfg)
    return out


def _time_batch(paths: Sequence[Path], backend: str, cfg: TimingConfig) -> list[Timing]:
    sessions, feeds = [], []
    try:
        for p in paths:
            art = Artifact.load(p)
            s = open_session(art, backend=backend, options=session_options(backend, cfg.threads))
            sessions.append(s)
            feeds.append(check_feeds(s.inputs, build_feeds(art.manifest.inputs, batch=1)))
        round_cfg = ProfileConfig(warmup=0, runs=cfg.runs, threads=cfg.threads, max_rel_spread=10.0)
        for s, f in zip(sessions, feeds, strict=True):
            for _ in range(cfg.warmup):
                s.run(f)
        p50s: list[list[float]] = [[] for _ in sessions]
        for _ in range(cfg.rounds):
            for i, (s, f) in enumerate(zip(sessions, feeds, strict=True)):
                p50s[i].append(measure(lambda s=s, f=f: s.run(f), round_cfg).p50_ms)
    finally:
        for s in sessions:
            s.close()
    return [_summary(values, cfg) for values in p50s]


class LocalTimer:
    """Times artifacts on this machine (:func:`time_artifacts`); ``device`` is this machine's fingerprint."""

    def __init__(self, backend: str, threads: int, precision: str, cfg: TimingConfig) -> None:
        self.backend, self.cfg = backend, cfg
        self.device = local_device(backend, threads, precision)

    def time(self, paths: Sequence[Path]) -> list[Timing]:
        return time_artifacts(paths, self.backend, self.cfg)


class AgentTimer:
    """Times artifacts on a device through ``edgeformer agent`` (:class:`~edgeformer.agent.AgentClient`).

    Each model is profiled once per round, models taking turns, and keeps its best round, as locally. The agent's
    sessions keep the runtime's default spinning (its profile jobs run as ``edgeformer profile`` does); the
    fingerprint says so, so a remote table never answers for a local one or the other way round.
    """

    def __init__(self, client: Any, backend: str, threads: int, precision: str, cfg: TimingConfig) -> None:
        self.client, self.backend, self.cfg = client, backend, cfg
        info = client.info()
        card = info.device
        runtime = card.runtime if card.backend == backend else f"{backend} {info.versions.get(backend, '?')}"
        self.device = TableDevice(
            device_id=dataclasses.replace(card, backend=backend).device_id,
            label=f"{card.cpu_model} · {card.physical_cores} cores",
            host=client.device,
            backend=backend,
            runtime=runtime,
            threads=threads,
            precision=precision,
            options=("allow_spinning=default",),
        )

    def time(self, paths: Sequence[Path]) -> list[Timing]:
        cfg = self.cfg
        per: list[list[float]] = [[] for _ in paths]
        for r in range(cfg.rounds):
            order = range(len(paths)) if r % 2 == 0 else reversed(range(len(paths)))
            pc = ProfileConfig(warmup=cfg.warmup, runs=cfg.runs, threads=cfg.threads, max_rel_spread=10.0)
            for i in order:
                per[i].append(self.client.profile(paths[i], pc, backend=self.backend).latency.p50_ms)
        return [_summary(v, cfg) for v in per]


def _summary(values: list[float], cfg: TimingConfig) -> Timing:
    mean = statistics.fmean(values)
    noise = statistics.pstdev(values) / mean if mean > 0 and len(values) > 1 else 0.0
    return Timing(p50_ms=min(values), noise=noise, rounds=cfg.rounds, runs=cfg.runs)


def make_timer(
    device: str | None, backend: str, threads: int, precision: str, cfg: TimingConfig, token: str | None = None
) -> LocalTimer | AgentTimer:
    """``None``/``"local"``: this machine; ``agent://HOST:PORT``: that device's agent (token: ``token`` or
    ``$EDGEFORMER_AGENT_TOKEN``)."""
    if device in (None, "local"):
        return LocalTimer(backend, threads, precision, cfg)
    if not str(device).startswith("agent://"):
        raise ConfigError(f"device {device!r}: use 'local' or agent://HOST:PORT (an `edgeformer agent serve`).")
    return AgentTimer(AgentClient(device, resolve_token(token)), backend, threads, precision, cfg)
