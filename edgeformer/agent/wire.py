"""What crosses the wire between the device agent and its clients: typed records, the address, the names.

Every body is JSON built by :meth:`Record.to_dict` and read back by :meth:`Record.from_dict`, so an unknown key,
a missing one or a wrong type is refused with its path on either side (the agent answers 400 with that message).
Profiling results travel as :class:`~edgeformer.profiling.ProfileResult`, the same record ``edgeformer profile
--json`` prints.

The HTTP API (all JSON; every route but ``/v1/health`` needs ``Authorization: Bearer TOKEN`` when the agent has
a token)::

    GET  /v1/health             {"ok": true}
    GET  /v1/info               AgentInfo: device card, backends and precisions, versions, store, queue
    GET  /v1/models/{sha256}    Stored (404 when the agent does not hold that file)
    PUT  /v1/models/{sha256}    the file's bytes; stored under their sha256, which must be the one in the path
    POST /v1/jobs               JobSpec -> JobStatus (202); 503 + Retry-After when the queue is full
    GET  /v1/jobs/{id}?wait=S   JobStatus, answered when the job ends or after S seconds
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..profiling import DeviceCard, ProfileConfig, ProfileResult
from ..records import Record

API = "/v1"
SCHEME = "agent"
DEFAULT_PORT = 8765
TOKEN_ENV = "EDGEFORMER_AGENT_TOKEN"
MIN_TOKEN_CHARS = 16  # `edgeformer agent token` writes 43; anything shorter is guessable over a LAN
MAX_JSON_BYTES = 64 * 1024  # a job spec or any other JSON body; the model files go through PUT /v1/models
MAX_JOB_FILES = 64
_SHA256 = re.compile(r"[0-9a-f]{64}")
_JOB_ID = re.compile(r"[0-9a-f]{32}")
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")  # no leading dot: no '..', no hidden files


@dataclass(frozen=True, kw_only=True)
class JobSpec(Record):
    """One profiling job: which stored files make the model, how to time it, on which backend.

    ``id`` is chosen by the client (32 hex digits), so that a POST retried after a lost answer does not run the
    job twice. ``files`` maps a relative path in the job's folder to the sha256 of a stored file: an artifact
    folder's files plus its ``artifact.json`` (``main`` is ``None``: the folder is profiled), or a bare model
    file and its external data (``main`` names the model file).
    """

    id: str
    files: dict[str, str]
    main: str | None = None
    config: ProfileConfig = field(default_factory=ProfileConfig)
    backend: str = "auto"

    def problems(self) -> list[str]:
        """Every reason the agent refuses this spec (malformed id or sha, a name that leaves the job folder)."""
        out = []
        if not _JOB_ID.fullmatch(self.id):
            out.append(f"id must be 32 lowercase hex digits (got {self.id!r:.40})")
        if not self.files:
            out.append("files is empty")
        if len(self.files) > MAX_JOB_FILES:
            out.append(f"at most {MAX_JOB_FILES} files per job (got {len(self.files)})")
        for name, sha in self.files.items():
            reason = name_problem(name)
            if reason:
                out.append(f"file name {name!r:.80}: {reason}")
            if not _SHA256.fullmatch(sha):
                out.append(f"files[{name!r:.80}] must be a sha256 (64 lowercase hex digits)")
        if self.main is not None and self.main not in self.files:
            out.append(f"main {self.main!r:.80} is not one of the files")
        if self.main is None and "artifact.json" not in self.files:
            out.append("without main, the files must be an artifact folder with its artifact.json")
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", self.backend):
            out.append(f"backend {self.backend!r:.40} is not a backend name")
        return out


@dataclass(frozen=True, kw_only=True)
class JobError(Record):
    """Why a job failed on the device: ``failed`` (the runtime or edgeformer refused the model, with the error's
    class), ``crashed`` (the job's process died by a signal), ``timeout`` (it ran past the agent's limit)."""

    kind: Literal["failed", "crashed", "timeout"]
    message: str
    error_type: str = ""


@dataclass(frozen=True, kw_only=True)
class JobStatus(Record):
    """Where a job is: ``queued`` (``position`` jobs before it), ``running``, or ended: ``done`` with its
    ``result`` or ``failed`` with its ``error``; ``seconds`` is the job's wall time on the device once ended."""

    id: str
    state: Literal["queued", "running", "done", "failed"]
    position: int | None = None
    result: ProfileResult | None = None
    error: JobError | None = None
    seconds: float | None = None

    @property
    def ended(self) -> bool:
        return self.state in ("done", "failed")


@dataclass(frozen=True, kw_only=True)
class BackendInfo(Record):
    """A backend on the device: ``reason`` is ``None`` when it runs there; ``precisions`` those it runs usefully."""

    name: str
    reason: str | None
    precisions: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class StoreInfo(Record):
    models: int
    bytes: int
    cap_bytes: int
    max_upload_bytes: int


@dataclass(frozen=True, kw_only=True)
class QueueInfo(Record):
    """Jobs: waiting (at most ``capacity``), running (at most one), and ended since the agent started."""

    queued: int
    running: int
    done: int
    failed: int
    capacity: int


@dataclass(frozen=True, kw_only=True)
class AgentInfo(Record):
    """``GET /v1/info``: what the device is and what it runs, read once in a child process at start-up."""

    version: str
    device: DeviceCard
    backends: tuple[BackendInfo, ...]
    versions: dict[str, str]
    store: StoreInfo
    jobs: QueueInfo
    job_timeout_s: float
    auth: bool

    def backend(self, name: str) -> BackendInfo | None:
        return next((b for b in self.backends if b.name == name), None)


@dataclass(frozen=True, kw_only=True)
class Stored(Record):
    """A file the agent holds: its sha256 and size; ``created`` is false when it was there already."""

    sha: str
    size: int
    created: bool = False


@dataclass(frozen=True, kw_only=True)
class ErrorDetail(Record):
    status: int
    message: str
    missing: tuple[str, ...] = ()  # POST /v1/jobs: the sha256 of files the agent does not hold (upload them)


@dataclass(frozen=True, kw_only=True)
class ErrorReply(Record):
    """Every 4xx/5xx body: ``{"error": {"status": 400, "message": "..."}}``."""

    error: ErrorDetail


def is_sha256(text: str) -> bool:
    return bool(_SHA256.fullmatch(text))


def is_job_id(text: str) -> bool:
    return bool(_JOB_ID.fullmatch(text))


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a file of a job folder (``None`` when it can): a relative POSIX path of at most 8
    plain segments, none empty, none starting with a dot, no backslash, nothing absolute."""
    if not name or len(name) > 512:
        return "empty or longer than 512 characters"
    if "\\" in name or name.startswith("/"):
        return "must be a relative POSIX path"
    parts = PurePosixPath(name).parts
    if len(parts) > 8 or "/".join(parts) != name:
        return "at most 8 segments, no empty segment, no trailing slash"
    bad = [p for p in parts if not _SEGMENT.fullmatch(p)]
    if bad:
        return f"segment {bad[0]!r:.40} is not a plain name (letters, digits, '._-', not starting with a dot)"
    return None


def parse_device(device: str) -> tuple[str, int]:
    """``agent://HOST:PORT`` -> ``(host, port)``; IPv6 hosts in brackets (``agent://[::1]:8765``).

    Raises:
        ConfigError: another scheme, no host, a path or query, a port out of range.
    """
    try:
        parts = urlsplit(device)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"--device {device!r}: {e}; write agent://HOST:PORT") from e
    if parts.scheme != SCHEME or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.username:
        raise ConfigError(f"--device {device!r} is not an agent address; write agent://HOST:PORT (agent://pi5:8765)")
    return parts.hostname, port or DEFAULT_PORT


def device_url(host: str, port: int) -> str:
    return f"{SCHEME}://[{host}]:{port}" if ":" in host else f"{SCHEME}://{host}:{port}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) resolves to loopback addresses only."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def resolve_token(
    token: str | None = None, token_file: str | Path | None = None, env: Mapping[str, str] | None = None
) -> str | None:
    """The token for an agent or its client: ``token``, else the first line of ``token_file``, else
    ``$EDGEFORMER_AGENT_TOKEN``, else ``None``.

    Raises:
        ConfigError: an unreadable or empty token file, or a token shorter than 16 characters.
    """
    where = "the token"
    if token is None and token_file is not None:
        path = Path(token_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read the token file {path}: {e}") from e
        token, where = (lines[0].strip() if lines else ""), f"the token in {path}"
    if token is None:
        token, where = (os.environ if env is None else env).get(TOKEN_ENV) or None, f"${TOKEN_ENV}"
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"{where} is {len(token)} characters; use at least {MIN_TOKEN_CHARS} (`edgeformer agent token -o FILE` "
            "writes a random one)"
        )
    return token
