"""TensorRT's timing cache, shared by builds and processes (``TensorRtConfig.timing_cache``).

:func:`attach_timing_cache` loads the file into a builder config before the build; :func:`save_timing_cache`
merges what the build measured with what is on disk by then, under a lock file, and replaces the file
atomically. A corrupt cache, or one from another GPU or TensorRT version, is moved aside with a warning
(:func:`quarantine`) and the build starts from an empty one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path.lock`` so two builds merge their caches instead of losing one."""
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a+b") as f:
        try:
            import fcntl
        except ImportError:  # Windows: no flock; the atomic replace still prevents a torn file
            yield
            return
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder and rename, so readers never see a torn file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def quarantine(path: Path, reason: str) -> Path:
    """Move a corrupt cache aside (kept for inspection), warn, and return where it went."""
    dest = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    os.replace(path, dest)
    log.warning("timing cache %s is unusable (%s); moved it to %s and starting a new one", path, reason, dest)
    return dest


def _cache_from(trt_config: Any, path: Path | None) -> Any:
    """An ITimingCache from ``path`` (empty if missing); a corrupt or foreign one is quarantined."""
    data = path.read_bytes() if path is not None and path.is_file() else b""
    try:
        cache = trt_config.create_timing_cache(data)
    except (RuntimeError, TypeError, ValueError) as e:  # the bindings raise on bytes they cannot parse
        cache, why = None, str(e)
    else:
        why = "TensorRT could not read it"
    if cache is None and data:
        assert path is not None
        quarantine(path, why)
        cache = trt_config.create_timing_cache(b"")
    return cache


def attach_timing_cache(trt_config: Any, path: Path) -> None:
    """Load ``path`` into the builder config ``trt_config`` before a build (an empty cache if it is missing)."""
    with _locked(path):
        cache = _cache_from(trt_config, path)
        if not trt_config.set_timing_cache(cache, False):  # a cache from another GPU or TensorRT version
            quarantine(path, "built on another GPU or TensorRT version")
            trt_config.set_timing_cache(trt_config.create_timing_cache(b""), False)


def save_timing_cache(trt_config: Any, path: Path) -> None:
    """Merge the cache the build filled with what is on disk now, and replace ``path`` atomically."""
    cache = trt_config.get_timing_cache()  # the one the build filled
    with _locked(path):
        on_disk = _cache_from(trt_config, path)  # another build may have saved since ours started
        if on_disk is not None:
            cache.combine(on_disk, False)
        write_bytes_atomic(path, bytes(cache.serialize()))


__all__ = ["attach_timing_cache", "quarantine", "save_timing_cache", "write_bytes_atomic"]
