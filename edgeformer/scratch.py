"""Temporary folders that say whose they are, so the next run can clear what a killed run left.

A run killed with SIGKILL (or by the OOM killer) cannot remove its temporary folders: a killed ``quantize`` left
~37 MB in the system temp folder and a hidden ``.NAME.tmp-*`` folder beside its output. Every temporary folder
edgeformer makes is therefore named ``edgeformer-KIND-hHOST-pPID-RANDOM`` (hidden, ``.NAME.edgeformer-KIND-...``,
beside an output): HOST is a hash of this machine's name (a folder on a shared disk may belong to a live process
on another machine, which this one cannot ask about), PID the owner. Creating one first removes those in the same
folder whose owner, on this machine, is dead.

Example::

    with scratch_dir("quant") as tmp:   # $TMPDIR/edgeformer-quant-h1a2b3c4d-p4242-x8q_
        onnx.save(model, tmp / "model.onnx")
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import DiskFullError

log = logging.getLogger(__name__)

HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
# KIND may hold hyphens: the owner is read from the end of the name
_OWNED = re.compile(r"(?:^|\.)edgeformer-(?P<kind>[\w.-]*?)-h(?P<host>[0-9a-f]{8})-p(?P<pid>\d+)(?:-[^/]*)?$")
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def owner_prefix(kind: str, beside: str | None = None) -> str:
    """The name a temporary folder of this process starts with: ``edgeformer-KIND-hHOST-pPID-``, or hidden and
    after ``beside`` (``.NAME.edgeformer-KIND-...``) for one built next to the output NAME."""
    if not re.fullmatch(r"[\w.]+(-[\w.]+)*", kind):
        raise ValueError(f"scratch kind {kind!r}: letters, digits, dots and single hyphens only")
    own = f"edgeformer-{kind}-h{HOST}-p{os.getpid()}-"
    return f".{beside}.{own}" if beside is not None else own


def make_scratch_dir(kind: str, parent: str | Path | None = None, beside: str | None = None) -> Path:
    """A new temporary folder owned by this process in ``parent`` (default: the system temp folder); folders of
    dead owners in ``parent`` are removed first. The caller removes it (see :func:`scratch_dir`)."""
    parent = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    prune_dead(parent)
    return Path(tempfile.mkdtemp(prefix=owner_prefix(kind, beside), dir=parent))


@contextlib.contextmanager
def scratch_dir(kind: str, parent: str | Path | None = None, beside: str | None = None) -> Iterator[Path]:
    """:func:`make_scratch_dir` as a context manager (``tempfile.TemporaryDirectory`` with an owner)."""
    path = make_scratch_dir(kind, parent, beside)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def owner_of(name: str) -> tuple[str, int] | None:
    """``(host hash, pid)`` of a temporary folder or file named by :func:`owner_prefix`; ``None`` for any other."""
    m = _OWNED.search(name)
    return (m["host"], int(m["pid"])) if m else None


def prune_dead(parent: Path) -> list[Path]:
    """Remove the temporary folders and files in ``parent`` whose owner was on this machine and is dead.

    A moved-aside old artifact (``.NAME.edgeformer-old-...``) whose owner died before it put the new one in place
    is put back as NAME when NAME is missing, never deleted: it is the only copy.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        owner = owner_of(entry.name)
        if owner is None or owner[0] != HOST or _alive(owner[1]):
            continue
        path = Path(entry.path)
        if _OWNED.search(entry.name)["kind"] == "old":  # type: ignore[index]
            original = parent / entry.name[1:].split(".edgeformer-old-", 1)[0]
            if not original.exists():
                with contextlib.suppress(OSError):
                    os.replace(path, original)
                    log.warning("restored %s, moved aside by a run that died before replacing it", original)
                    continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        if not path.exists():
            log.info("removed %s, left by a run (pid %d) that was killed", path, owner[1])
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    # a zombie (killed, not yet reaped by its parent) will never come back to its folder
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    return True


def folder_size(path: Path) -> int:
    """Bytes of the files under ``path`` (what a failed write had put there)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def is_disk_full(e: BaseException | None) -> bool:
    """Whether ``e`` is a write that failed for want of space: ``ENOSPC``/``EDQUOT``, or a native library's
    error quoting the C library's message (onnxruntime and protobuf raise their own types)."""
    if isinstance(e, DiskFullError):
        return False  # already worded
    if isinstance(e, OSError) and e.errno in NO_SPACE:
        return True
    return e is not None and any(m in str(e) for m in ("No space left on device", "Disk quota exceeded"))


def disk_full(e: BaseException, target: Path, written: int) -> DiskFullError:
    """The :class:`DiskFullError` for ``e``: the path being written, what it took before the disk filled and what
    is free there now (the partial write already removed)."""
    where = target if target.exists() else target.parent
    free = shutil.disk_usage(where if where.exists() else Path(tempfile.gettempdir())).free
    quota = " (disk quota exceeded)" if getattr(e, "errno", None) == errno.EDQUOT or "quota" in str(e) else ""
    needed = f"it needed more than the {_mb(written)} written before the disk filled, and " if written else ""
    # a scratch folder of the system temp folder (not hidden; those beside an output are): TMPDIR moves it
    in_tmp = any(owner_of(part) and not part.startswith(".") for part in target.parts)
    fix = "point TMPDIR to a disk with room" if in_tmp else "write elsewhere (--out)"
    return DiskFullError(
        f"no space left writing {target}{quota}: {needed}{_mb(free)} are free there; free some space or {fix}. "
        "Nothing was replaced: the previous output, if any, is intact."
    )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"
