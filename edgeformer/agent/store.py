"""The agent's model store: files kept by sha256, bounded in size, least recently used evicted first.

Layout under the store folder::

    blobs/<sha256>     complete files only: each is written in tmp/, fsynced, checked against its sha256 and
                       renamed into place, so a reader never sees half a file
    tmp/               uploads in flight; emptied at start-up (what a killed agent left there is not a model)
    jobs/<id>/         a job's folder of hard links into blobs/, named as the job asks; removed after the job

Limits: one upload at most ``max_upload_bytes``; all blobs at most ``cap_bytes``, which an upload makes room for
by evicting the least recently used blobs that no queued or running job holds (pins). Use order survives a
restart (it is the blobs' mtime). A blob is hashed again the first time a job uses it after start-up, so a file
damaged on disk is dropped and asked for again instead of being profiled.

Example::

    store = ModelStore(root, cap_bytes=4 << 30, max_upload_bytes=512 << 20)
    with store.upload() as up:
        up.write(chunk)
        stored = up.commit(expected_sha)
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..artifact import _fsync_dir  # the artifact writer's: a filesystem may refuse to fsync a folder
from ..errors import ConfigError
from ..manifest import sha256_file
from .wire import Stored, StoreInfo, is_sha256, name_problem

log = logging.getLogger(__name__)


class StoreError(Exception):
    """An upload the store refuses; ``status`` is the HTTP status the agent answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ModelStore:
    """Content-addressed files with a size cap, LRU eviction and pins; safe to share between threads."""

    def __init__(self, root: str | Path, *, cap_bytes: int, max_upload_bytes: int) -> None:
        self.root = Path(root)
        self.cap_bytes, self.max_upload_bytes = cap_bytes, max_upload_bytes
        self.blobs, self.tmp, self.jobs = self.root / "blobs", self.root / "tmp", self.root / "jobs"
        self._lock = threading.Lock()
        self._sizes: OrderedDict[str, int] = OrderedDict()  # least recently used first
        self._pins: Counter[str] = Counter()
        self._verified: set[str] = set()
        self._recover()

    def _recover(self) -> None:
        """Start-up: drop what a killed agent left half done, then index the blobs by last use."""
        for folder in (self.blobs, self.tmp, self.jobs):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock_exclusively(self.root / "lock")
        for leftover in (*self.tmp.iterdir(), *self.jobs.iterdir()):
            _remove(leftover)
        found = []
        for f in self.blobs.iterdir():
            if not (is_sha256(f.name) and f.is_file() and not f.is_symlink()):
                log.warning("store: removing %s, which is not a stored model", f)
                _remove(f)
                continue
            st = f.stat()
            found.append((st.st_mtime_ns, f.name, st.st_size))
        for _, sha, size in sorted(found):
            self._sizes[sha] = size
        # a cap lowered since the last run applies now
        self._evict_for(0)

    def close(self) -> None:
        """Let another store open this folder (the agent's process holds it until it ends)."""
        self._lock_file.close()

    # --- reading -----------------------------------------------------------------------------------
    def get(self, sha: str) -> Stored | None:
        with self._lock:
            size = self._sizes.get(sha)
        return None if size is None else Stored(sha=sha, size=size)

    def info(self) -> StoreInfo:
        with self._lock:
            return StoreInfo(
                models=len(self._sizes),
                bytes=sum(self._sizes.values()),
                cap_bytes=self.cap_bytes,
                max_upload_bytes=self.max_upload_bytes,
            )

    # --- writing -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def upload(self) -> Iterator[Upload]:
        """An upload in tmp/; whatever happens before :meth:`Upload.commit`, nothing is left behind."""
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="up-")
        up = Upload(self, os.fdopen(fd, "wb"), Path(name))
        try:
            yield up
        finally:
            up.close()
            Path(name).unlink(missing_ok=True)

    def _commit(self, tmp: Path, sha: str, size: int) -> Stored:
        with self._lock:
            if sha in self._sizes:  # an identical upload won the race: keep the one there
                self._touch(sha)
                return Stored(sha=sha, size=size, created=False)
            self._evict_for(size)
            os.replace(tmp, self.blobs / sha)
            _fsync_dir(self.blobs)
            self._sizes[sha] = size
            self._verified.add(sha)  # hashed while it was written
        return Stored(sha=sha, size=size, created=True)

    def _evict_for(self, size: int) -> None:
        """Evict least recently used, unpinned blobs until ``size`` more bytes fit under the cap (lock held)."""
        if size > self.cap_bytes:
            raise StoreError(413, f"{size} bytes is more than the whole store holds ({self.cap_bytes} bytes)")
        total = sum(self._sizes.values())
        for sha in list(self._sizes):
            if total + size <= self.cap_bytes:
                break
            if self._pins[sha]:
                continue
            log.info("store: evicting %s (%d bytes, least recently used)", sha[:12], self._sizes[sha])
            total -= self._sizes.pop(sha)
            self._verified.discard(sha)
            (self.blobs / sha).unlink(missing_ok=True)
        if total + size > self.cap_bytes:
            raise StoreError(
                507,
                f"the store is full: {total} of {self.cap_bytes} bytes are held by queued or running jobs; "
                "retry when they are done, or start the agent with a larger --store-cap-mb",
            )

    def _touch(self, sha: str) -> None:
        self._sizes.move_to_end(sha)
        with contextlib.suppress(OSError):
            os.utime(self.blobs / sha)

    # --- jobs --------------------------------------------------------------------------------------
    def pin(self, shas: Iterable[str]) -> list[str]:
        """Pin every sha for a job; returns those the store does not hold (or holds damaged), pinning nothing then.

        A blob not yet hashed since start-up is hashed here; one that does not match its name is dropped.
        """
        shas = sorted(set(shas))
        for sha in shas:
            self._check(sha)
        with self._lock:
            missing = [s for s in shas if s not in self._sizes]
            if missing:
                return missing
            for sha in shas:
                self._pins[sha] += 1
                self._touch(sha)
        return []

    def unpin(self, shas: Iterable[str]) -> None:
        with self._lock:
            for sha in set(shas):
                self._pins[sha] -= 1
                if self._pins[sha] <= 0:
                    del self._pins[sha]

    def _check(self, sha: str) -> None:
        with self._lock:
            if sha not in self._sizes or sha in self._verified:
                return
        path = self.blobs / sha
        good = path.is_file() and sha256_file(path) == sha
        with self._lock:
            if good:
                self._verified.add(sha)
            elif sha in self._sizes and not self._pins[sha]:
                log.warning("store: %s does not match its sha256 (damaged on disk); dropped", sha[:12])
                del self._sizes[sha]
                path.unlink(missing_ok=True)

    def materialize(self, job_id: str, files: Mapping[str, str]) -> Path:
        """A folder ``jobs/<job_id>`` holding each pinned blob under its name (hard links, copies as a fallback)."""
        folder = self.jobs / job_id
        folder.mkdir()
        for name, sha in files.items():
            if name_problem(name):  # checked when the job was accepted; never trust a name twice removed
                raise StoreError(400, f"file name {name!r} is not allowed")
            dest = folder / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(self.blobs / sha, dest)
            except OSError:
                shutil.copyfile(self.blobs / sha, dest)
        return folder

    def release(self, folder: Path) -> None:
        _remove(folder)


class Upload:
    """One file being received: counts, hashes and writes every chunk; :meth:`commit` stores it."""

    def __init__(self, store: ModelStore, f, path: Path) -> None:
        self._store, self._f, self.path = store, f, path
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._store.max_upload_bytes:
            raise StoreError(
                413, f"upload larger than this agent's limit of {self._store.max_upload_bytes} bytes (--max-upload-mb)"
            )
        self._hash.update(chunk)
        self._f.write(chunk)

    def commit(self, expected_sha: str) -> Stored:
        got = self._hash.hexdigest()
        if got != expected_sha:
            raise StoreError(422, f"the body's sha256 is {got}, not {expected_sha} as the path says; nothing stored")
        self._f.flush()
        os.fsync(self._f.fileno())
        self.close()
        return self._store._commit(self.path, got, self.size)

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def _lock_exclusively(path: Path) -> Any:
    """Hold an exclusive lock on ``path`` for the store's life: a second agent on one store would empty the first
    one's ``tmp/`` at its start-up. The kernel drops the lock when the process dies, however it dies."""
    f = open(path, "a+b")  # noqa: SIM115 - kept open: the lock lives as long as the file
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one agent per store is then up to the user
        return f
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        f.close()
        raise ConfigError(f"another agent is using the store {path.parent}; stop it or pass another --store") from e
    return f


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
