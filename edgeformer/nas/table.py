"""The latency table file: per-block timings of one search space on one device, backend and precision.

JSON with a schema version, written atomically under an exclusive lock so that two builds extending the same
table at once lose no entry (each merge re-reads the file inside the lock). A file that does not parse is
renamed aside (quarantined) with a warning and the build starts over; reading one for predictions is an error.
Torch-free: tables travel to and from edge devices.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from ..artifact import write_text_atomic
from ..errors import ConfigError, EdgeformerError, LatencyTableError
from ..records import Record
from .keys import BlockKey

log = logging.getLogger(__name__)

SCHEMA = 1


@dataclass(frozen=True, kw_only=True)
class TableDevice(Record):
    """Where and how a table was measured; a table answers only for an equal fingerprint.

    ``device_id`` hashes the CPU model, core count, ISA and backend (:class:`~edgeformer.profiling.DeviceCard`);
    ``runtime`` is the backend with its version, ``options`` the session options that change timings (ORT's
    spinning is off for tables: on a shared CPU, spinning workers steal time from the measured ones).
    """

    device_id: str
    label: str
    host: str  # "local" or the agent URL the table was measured through
    backend: str
    runtime: str
    threads: int
    precision: str
    options: tuple[str, ...] = ()

    MATCHED: ClassVar[tuple[str, ...]] = ("device_id", "backend", "runtime", "threads", "precision", "options")

    def mismatch(self, other: TableDevice) -> list[str]:
        """The matched fields that differ, as ``"field: ours != theirs"``."""
        return [
            f"{f}: {getattr(self, f)!r} != {getattr(other, f)!r}"
            for f in self.MATCHED
            if getattr(self, f) != getattr(other, f)
        ]

    def summary(self) -> str:
        return f"{self.label} ({self.device_id}) · {self.runtime} · {self.precision} · {self.threads} threads"


@dataclass(frozen=True, kw_only=True)
class Entry(Record):
    """One block's timing: the best of interleaved rounds' p50s, and the spread (std/mean) of those p50s."""

    key: BlockKey
    p50_ms: float
    noise: float  # std/mean of the round p50s
    rounds: int
    runs: int  # calls per round
    witness: str  # the segment path it was cut from, for the record
    measured: float  # unix time


@dataclass(frozen=True, kw_only=True)
class Whole(Record):
    """One whole model timed during the build, for the correction (or, with ``purpose="validation"``, a check)."""

    arch: dict[str, Any]
    p50_ms: float
    noise: float
    params: int
    macs: int
    purpose: str = "calibration"
    # validation timings: the build-time p50 of an anchor model over its p50 in this batch (machine drift between
    # the build and now; the normalized latency is p50_ms * drift)
    drift: float = 1.0


@dataclass(frozen=True, kw_only=True)
class Correction(Record):
    """``measured ≈ Σ blocks + Σ coef_i · feature_i``: what isolated block timings miss (fusion, per-call overhead).

    ``features`` name the columns (``"const"``, ``"sum"``, ``"count:<kind>"``); ``fitted_on`` says what it saw.
    """

    features: tuple[str, ...]
    coef: tuple[float, ...]
    fitted_on: str
    residual_rms_ms: float


@dataclass(frozen=True, kw_only=True)
class LatencyTable(Record):
    schema: int = SCHEMA
    model: str
    zoo_model: str
    width_step: int
    device: TableDevice
    entries: dict[str, Entry] = field(default_factory=dict)
    whole: tuple[Whole, ...] = ()
    correction: Correction | None = None
    keys_total: int = 0  # distinct blocks the space can produce; == len(entries) once complete

    @property
    def complete(self) -> bool:
        return self.keys_total > 0 and len(self.entries) >= self.keys_total

    def with_entries(self, entries: dict[str, Entry]) -> LatencyTable:
        return replace(self, entries={**self.entries, **entries})


def arch_dict(arch: Any) -> dict[str, Any]:
    """An arch record as its JSON form (lists, not tuples), so that a table equals itself after a round trip."""
    return json.loads(json.dumps(arch.to_dict()))


def arch_id(d: dict[str, Any]) -> str:
    """Canonical text of an arch dict: identity for "already measured" checks."""
    return json.dumps(d, sort_keys=True)


# --- file I/O ------------------------------------------------------------------------------------------
def read_table(path: str | Path) -> LatencyTable:
    """Parse a table file strictly; a torn or foreign file is a :class:`LatencyTableError` saying to rebuild."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LatencyTableError(
            f"{path}: no latency table here; build one with `edgeformer latency build MODEL --out {path}`."
        ) from None
    except UnicodeDecodeError as e:
        raise LatencyTableError(f"{path}: corrupt latency table (not UTF-8 text); rebuild it.") from e
    try:
        raw = json.loads(text)
    # ValueError: also an int past Python's 4300 digits; RecursionError: arrays nested thousands deep
    except (ValueError, RecursionError) as e:
        raise LatencyTableError(
            f"{path}: corrupt latency table ({e}); rebuild it with `edgeformer latency build`."
        ) from e
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        got = raw.get("schema") if isinstance(raw, dict) else type(raw).__name__
        raise LatencyTableError(f"{path}: not a latency table of schema {SCHEMA} (schema {got!r}); rebuild it.")
    try:
        return LatencyTable.from_dict(raw, where=str(path))
    except ConfigError as e:
        raise LatencyTableError(f"{path}: corrupt latency table: {e}") from e


def write_table(path: Path, table: LatencyTable) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, table.to_json() + "\n")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (a sidecar ``.lock`` file, so the atomic rename never races it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def quarantine(path: Path, why: str) -> Path:
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(aside)
    log.warning("%s: %s; moved it to %s and starting a new table", path, why, aside.name)
    return aside


def open_for_build(path: Path, fresh: LatencyTable) -> LatencyTable:
    """The table at ``path`` to extend, or ``fresh``; a corrupt file is quarantined, another device's refused."""
    with locked(path):
        if not path.exists():
            write_table(path, fresh)
            return fresh
        try:
            current = read_table(path)
        except LatencyTableError as e:
            quarantine(path, str(e).split(": ", 1)[-1])
            write_table(path, fresh)
            return fresh
        check_same(current, fresh.device, path)
        if (current.model, current.width_step) != (fresh.model, fresh.width_step):
            raise LatencyTableError(
                f"{path} is the table of {current.model} (width step {current.width_step}), not "
                f"{fresh.model} (width step {fresh.width_step}); pass another --out."
            )
        return replace(current, keys_total=fresh.keys_total)


def check_same(table: LatencyTable, device: TableDevice, path: Path | str) -> None:
    diff = table.device.mismatch(device)
    if diff:
        raise LatencyTableError(
            f"{path} was measured on {table.device.summary()}, not on {device.summary()} ({'; '.join(diff)}); "
            "build a table on this device (`edgeformer latency build`) or pass the matching one."
        )


def update(path: Path, change: Callable[[LatencyTable], LatencyTable]) -> LatencyTable:
    """Re-read ``path`` under the lock, apply ``change`` and write it back atomically; returns what was written."""
    with locked(path):
        try:
            current = read_table(path)
        except EdgeformerError:
            raise LatencyTableError(f"{path} changed under the build and no longer parses; rebuild it.") from None
        new = change(current)
        write_table(path, new)
        return new
