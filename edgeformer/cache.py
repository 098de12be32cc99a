"""A content-addressed cache of step outputs (artifact folders), bounded in size and shared by processes.

A step's output is a function of its input, config and tool versions, so :func:`step_key` hashes those and a
later run with the same key copies the cached folder instead of rebuilding it. Layout under ``root``::

    entries/<key[:2]>/<key>/index.json  size and sha256 of every file; its mtime is the last use (LRU)
    entries/<key[:2]>/<key>/files/      the step's output folder, byte for byte
    tmp/  entries being written or deleted      quarantine/  corrupt entries      lock  see _locked

An entry is built in ``tmp/``, its index written last, fsynced, and renamed into ``entries/``: readers (who take
no lock) see a whole entry or none, and entries never change once in. A corrupt entry is quarantined with a
warning and reads as a miss; a cache that cannot be written never fails the step. ``EDGEFORMER_NO_CACHE=1``
makes :meth:`StepCache.default` return None (what ``--no-cache`` does).

Example::

    cache = StepCache.default()
    key = step_key(step="quantize", input_sha=src.sha, config=cfg, tools=tool_versions())
    if cache is None or not cache.copy_out(key, tmp_dir):
        build(tmp_dir)
        if cache is not None:
            cache.put(key, tmp_dir)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from .errors import ConfigError

if os.name == "nt":
    import msvcrt
else:
    import fcntl

log = logging.getLogger(__name__)

KEY_VERSION = 1  # bump when the key's parts or the entry layout change: old entries then simply miss
DEFAULT_MAX_BYTES = 5 * 2**30
_INDEX, _FILES = "index.json", "files"
_KEY = re.compile(r"[0-9a-f]{64}")
_STALE_TMP_S = 24 * 3600  # a temp folder this old belongs to a killed writer: no put takes a day
_QUARANTINE_KEEP = 5  # enough for a post-mortem without letting a flaky disk fill the cache with copies


def step_key(*, step: str, input_sha: str, config: Mapping[str, Any], tools: Mapping[str, str]) -> str:
    """sha256 of the canonical JSON of a step run's parts; ``config`` and ``tools`` come JSON-ready."""
    parts = {"v": KEY_VERSION, "step": step, "input_sha": input_sha, "config": config, "tools": tools}
    # sorted keys and fixed separators make the text, hence the key, independent of dict order and json defaults
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CacheStats(NamedTuple):
    entries: int
    bytes: int


class StepCache:
    """Step outputs under ``root``, evicted least-recently-used first to stay within ``max_bytes``."""

    def __init__(self, root: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ConfigError(f"cache bound must be >= 0 bytes, got {max_bytes}.")
        self.root, self.max_bytes = Path(root), max_bytes

    @classmethod
    def default(cls) -> StepCache | None:
        """The user's cache, or None if ``EDGEFORMER_NO_CACHE`` is set to anything but ``""``/0/false/no/off.

        ``EDGEFORMER_CACHE_DIR`` sets the folder (default ``$XDG_CACHE_HOME/edgeformer/steps``, else
        ``~/.cache/edgeformer/steps``) and ``EDGEFORMER_CACHE_MAX_BYTES`` the bound (default 5 GiB).
        """
        if os.environ.get("EDGEFORMER_NO_CACHE", "").strip().lower() not in {"", "0", "false", "no", "off"}:
            return None
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        xdg = xdg if os.path.isabs(xdg) else str(Path.home() / ".cache")  # the XDG spec: ignore a relative one
        root = os.environ.get("EDGEFORMER_CACHE_DIR") or os.path.join(xdg, "edgeformer", "steps")
        raw = os.environ.get("EDGEFORMER_CACHE_MAX_BYTES", "").strip()
        if raw and not raw.isdigit():
            raise ConfigError(f"EDGEFORMER_CACHE_MAX_BYTES={raw!r}: set a whole number of bytes (5368709120 = 5 GiB).")
        return cls(Path(root).expanduser(), int(raw) if raw else DEFAULT_MAX_BYTES)

    def get(self, key: str, *, verify: bool = True) -> Path | None:
        """The cached folder for ``key``, or None on a miss or a corrupt entry (then quarantined).

        Sizes are always checked, sha256 too with ``verify``. Another process may evict the folder once it is
        returned: :meth:`copy_out` is the race-free way to use an entry.
        """
        found = self._verified(key, verify=verify)
        return found[0] / _FILES if found and _touch(found[0]) else None

    def copy_out(self, key: str, dest: str | Path) -> bool:
        """Copy the entry's files into ``dest``; False on a miss, leaving none of them in ``dest``."""
        found = self._verified(key, verify=False)
        if found is None:
            return False
        entry, files = found
        written: list[Path] = []
        try:
            for rel, meta in files.items():
                written.append(Path(dest) / rel)
                # hashed as copied rather than by get(verify=True): one read of a multi-GB engine instead of two,
                # and it checks the very bytes the caller gets, even if the entry changed since a check
                if _stream(entry / _FILES / rel, written[-1]) != meta:
                    self._quarantine(entry, f"{rel} does not match its index")
                    break
            else:
                _touch(entry)
                return True
        except OSError as e:
            if entry.is_dir():  # else it was evicted while we copied: a plain miss
                log.warning("could not copy cached step output %s to %s (%s); rebuilding", key[:12], dest, e)
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        return False

    def put(self, key: str, src_dir: str | Path) -> Path | None:
        """Cache a copy of ``src_dir`` under ``key``; return the cached folder, or None if not cached.

        A folder larger than ``max_bytes`` is not cached (logged). A key already cached, by this or another
        process, keeps its entry: same inputs, same output. Write failures (disk full, permissions) are logged
        and return None: the step's own result is unaffected.
        """
        entry, src_dir = self._entry(key), Path(src_dir)
        if not src_dir.is_dir():
            raise NotADirectoryError(f"{src_dir}: put() caches a step's output folder, and this is not one.")
        rels = sorted(p.relative_to(src_dir) for p in src_dir.rglob("*") if p.is_file())
        if (size := sum((src_dir / r).stat().st_size for r in rels)) > self.max_bytes:
            log.warning(
                "not caching step output %s: %d bytes is over the bound of %d (EDGEFORMER_CACHE_MAX_BYTES)",
                key[:12],
                size,
                self.max_bytes,
            )
            return None
        if self._verified(key, verify=False) and _touch(entry):
            return entry / _FILES
        tmp: Path | None = None
        try:
            (self.root / "tmp").mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f"put-{key[:12]}-", dir=self.root / "tmp"))
            (tmp / _FILES).mkdir()
            files = {r.as_posix(): _stream(src_dir / r, tmp / _FILES / r, sync=True) for r in rels}
            # written last and after every file's fsync: an index on disk vouches for data already on disk
            with (tmp / _INDEX).open("w", encoding="utf-8") as f:
                json.dump({"schema": 1, "key": key, "files": files}, f, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            with self._locked():
                if not entry.exists():  # else another process published it while we copied: keep theirs
                    entry.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(tmp, entry)
                    tmp = None
                    _fsync_dir(entry.parent)
                _touch(entry)
                self._evict(keep=entry)
        except OSError as e:
            log.warning(
                "could not cache step output %s in %s (%s); the step's result is unaffected", key[:12], self.root, e
            )
            return None
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        return entry / _FILES

    def stats(self) -> CacheStats:
        """Number of entries and their bytes on disk (index files included)."""
        entries = self._entries()
        return CacheStats(entries=len(entries), bytes=sum(_du(e) for e in entries))

    def clear(self) -> None:
        """Delete every entry and the quarantine; puts in flight still complete."""
        with self._locked():
            for entry in self._entries():
                self._remove(entry)
            shutil.rmtree(self.root / "quarantine", ignore_errors=True)

    def _entry(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY.fullmatch(key):  # the key becomes a path: no "../" smuggled in
            raise ValueError(f"cache key must be 64 lowercase hex characters from step_key(), got {key!r}")
        return self.root / "entries" / key[:2] / key

    def _entries(self) -> list[Path]:
        return [e for e in (self.root / "entries").glob("??/*") if _KEY.fullmatch(e.name)]

    def _verified(self, key: str, *, verify: bool) -> tuple[Path, dict[str, dict[str, Any]]] | None:
        """The entry and its index's file table if the entry is whole; a corrupt one is quarantined."""
        entry = self._entry(key)
        if not entry.is_dir():
            return None
        try:
            index = json.loads((entry / _INDEX).read_text(encoding="utf-8"))
            ok = isinstance(index, dict) and index.get("schema") == 1 and index.get("key") == key
            files = index["files"] if ok else None
            problem = _problem(entry / _FILES, files, verify)
        except (OSError, ValueError, KeyError) as e:  # ValueError covers bad JSON and bad UTF-8
            problem = f"unreadable index ({type(e).__name__}: {e})"
        if problem is None:
            return entry, files
        if entry.is_dir():  # else it was evicted while we read it: a plain miss
            self._quarantine(entry, problem)
        return None

    def _quarantine(self, entry: Path, problem: str) -> None:
        dest = self.root / "quarantine" / f"{time.time_ns()}-{entry.name}"
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.rename(entry, dest)
            log.warning("step cache entry %s is corrupt (%s); moved it to %s and rebuilding", entry, problem, dest)
        except FileNotFoundError:  # another reader quarantined it first
            pass
        except OSError as e:
            log.warning("step cache entry %s is corrupt (%s) but could not be moved (%s); delete it", entry, problem, e)

    def _evict(self, keep: Path) -> None:
        """Remove least-recently-used entries until the cache fits, and old leftovers; the caller holds the lock."""
        sized = [(_last_use(e), e.name, _du(e), e) for e in self._entries()]
        total = sum(size for _, _, size, _ in sized)
        for _, _, size, entry in sorted(sized, key=lambda t: t[:2]):
            if total <= self.max_bytes:
                break
            if entry != keep:
                self._remove(entry)
                total -= size
        for stale in (self.root / "tmp").glob("*"):
            with contextlib.suppress(OSError):
                if time.time() - stale.stat().st_mtime > _STALE_TMP_S:
                    shutil.rmtree(stale, ignore_errors=True)
        for old in sorted((self.root / "quarantine").glob("*"), reverse=True)[_QUARANTINE_KEEP:]:
            shutil.rmtree(old, ignore_errors=True)

    def _remove(self, entry: Path) -> None:
        # renamed out first, so a reader sees the entry whole or gone, never half-deleted (which reads as corrupt)
        trash = self.root / "tmp" / f"del-{os.getpid()}-{time.time_ns()}"
        with contextlib.suppress(FileNotFoundError):
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.rename(entry, trash)
            shutil.rmtree(trash, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize publishing, eviction and clear across processes and threads (each open is its own lock)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "a+b") as f:
            if os.name == "nt":  # LK_LOCK retries for ~10 s, then raises OSError, which put() logs as not cached
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)
            else:  # flock: whole file, released by the kernel if the process dies holding it
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                if os.name == "nt":
                    f.seek(0)
                    msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
                # flock is released when f closes


def _problem(files_dir: Path, files: Any, verify: bool) -> str | None:
    """Why an entry's files do not match its index file table, or None."""
    if not isinstance(files, dict) or not all(
        isinstance(m, dict) and isinstance(m.get("size"), int) and isinstance(m.get("sha256"), str)
        for m in files.values()
    ):
        return "index has the wrong schema or key"
    for rel in files:  # the names become paths in copy_out's destination: nothing may point outside it
        if not rel or rel.startswith("/") or "\\" in rel or ".." in PurePosixPath(rel).parts:
            return f"index names {rel!r}, outside the entry"
    for rel, meta in files.items():  # sizes first: a truncated file is caught without hashing gigabytes
        path = files_dir / rel
        if not path.is_file():
            return f"{rel} is missing"
        if path.stat().st_size != meta["size"]:
            return f"{rel} has {path.stat().st_size} bytes, the index says {meta['size']}"
    for rel, meta in files.items() if verify else ():
        if _stream(files_dir / rel)["sha256"] != meta["sha256"]:
            return f"{rel} does not match its sha256"
    return None


def _stream(src: Path, dst: Path | None = None, *, sync: bool = False) -> dict[str, Any]:
    """Hash ``src``, copying it to ``dst`` on the way; return its index record."""
    h, size = hashlib.sha256(), 0
    if dst is not None:
        dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fi, open(dst, "wb") if dst is not None else contextlib.nullcontext() as fo:
        while block := fi.read(1 << 20):
            h.update(block)
            size += len(block)
            if fo is not None:
                fo.write(block)
        if fo is not None and sync:
            fo.flush()
            os.fsync(fo.fileno())
    return {"sha256": h.hexdigest(), "size": size}


def _touch(entry: Path) -> bool:
    """Record a use for LRU; False if the entry was evicted meanwhile."""
    ns = time.time_ns()  # explicit: the kernel stamps files from a per-jiffy clock, so a burst of puts would tie
    try:
        os.utime(entry / _INDEX, ns=(ns, ns))
        return True
    except OSError:
        return False


def _last_use(entry: Path) -> int:
    try:
        return (entry / _INDEX).stat().st_mtime_ns
    except OSError:  # no index: corrupt or half-removed, so the first to go
        return 0


def _du(path: Path) -> int:
    total = 0
    for folder, _, names in os.walk(path):  # os.walk skips folders that vanish under a concurrent eviction
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems (and Windows) refuse fsync on folders; rename stays atomic
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
