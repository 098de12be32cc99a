"""The client side of the device agent: upload once, profile there, get a typed :class:`ProfileResult` back.

Standard library only (urllib; proxies ignored, so a token never goes through a proxy). Connection errors are
retried with exponential backoff; a full queue (503) is waited out as the agent's ``Retry-After`` says; a job
is submitted under an id chosen here, so a retried POST cannot run it twice. Files the agent already holds (by
sha256) are not sent again.

Errors, as the CLI maps them (docs/faults.md): the agent unreachable, or dead mid-job -> ``AgentUnreachableError``
(exit 5); token missing or wrong -> ``AgentAuthError`` (4); the job failed on the device -> ``RemoteJobError``
(3, with the device's message).

Example::

    result = remote_profile("agent://pi5.local:8765", "build/l1-int8", ProfileConfig(threads=4))
    print(result.latency.p50_ms, result.device.label)
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import logging
import statistics
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..artifact import MANIFEST_NAME, Artifact, sha256_file
from ..errors import (
    AgentAuthError,
    AgentUnreachableError,
    BackendUnavailableError,
    ConfigError,
    EdgeformerError,
    InvalidInputError,
    RemoteJobError,
)
from ..profiling import ProfileConfig, ProfileResult
from .wire import API, TOKEN_ENV, AgentInfo, ErrorReply, JobSpec, JobStatus, Stored, parse_device, resolve_token

log = logging.getLogger(__name__)
POLL_S = 30  # one long-poll; the agent caps it at the same


class AgentClient:
    """Talk to one agent.

    Args:
        device: ``agent://HOST:PORT``.
        token: the bearer token (see :func:`~edgeformer.agent.wire.resolve_token`); ``None`` sends none.
        tries: attempts per request on connection errors, with ``backoff_s * 2**i`` between them.
        timeout_s: socket timeout of one request (a long-poll adds its own wait).
        busy_s: how long a full queue (503) is waited out before giving up.
        job_wait_s: how long a submitted job is waited for.
    """

    def __init__(
        self,
        device: str,
        token: str | None = None,
        *,
        tries: int = 4,
        backoff_s: float = 0.5,
        timeout_s: float = 60.0,
        busy_s: float = 900.0,
        job_wait_s: float = 3600.0,
    ) -> None:
        host, port = parse_device(device)
        self.device, self.token = device, token
        self.tries, self.backoff_s, self.timeout_s, self.busy_s, self.job_wait_s = (
            tries,
            backoff_s,
            timeout_s,
            busy_s,
            job_wait_s,
        )
        self._base = f"http://{f'[{host}]' if ':' in host else host}:{port}{API}"
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._info: AgentInfo | None = None

    # --- the API ---------------------------------------------------------------------------------------
    def info(self, refresh: bool = False) -> AgentInfo:
        """The agent's device card, backends, versions, store and queue."""
        if self._info is None or refresh:
            self._info = AgentInfo.from_dict(self._call("GET", "/info"), where=f"{self.device} info")
        return self._info

    def profile(
        self, artifact_or_path: Artifact | str | Path, config: ProfileConfig = ProfileConfig(), backend: str = "auto"
    ) -> ProfileResult:
        """Upload what the agent lacks, profile there, return the result (its ``artifact.path`` is the local one).

        Raises:
            RemoteJobError: the job failed on the device (exit 3).
            AgentAuthError, AgentUnreachableError, BackendUnavailableError: see the module docstring.
        """
        art = artifact_or_path if isinstance(artifact_or_path, Artifact) else Artifact.load(artifact_or_path)
        folder = (
            (art.path / MANIFEST_NAME).is_file()
            if isinstance(artifact_or_path, Artifact)
            else art.path == Path(artifact_or_path)
        )
        info = self.info()
        if backend != "auto":
            found = info.backend(backend)
            if found is None or found.reason:
                why = found.reason if found else f"it knows {', '.join(b.name for b in info.backends)}"
                raise BackendUnavailableError(f"backend {backend!r} is not available on {self.device}: {why}")
        files = self._files(art, folder)
        spec = JobSpec(
            id=uuid.uuid4().hex,
            files={name: sha for name, (_, sha) in files.items()},
            main=None if MANIFEST_NAME in files else art.manifest.main_file,
            config=config,
            backend=backend,
        )
        self._send_missing(files)
        status = self.submit(spec, files)
        status = self.wait(status)
        if status.error is not None:
            raise RemoteJobError(f"job failed on {self.device}: {status.error.message}")
        assert status.result is not None
        result = status.result
        local = dataclasses.replace(result.artifact, path=str(art.model_path), summary=art.summary())
        return dataclasses.replace(result, artifact=local)

    def latency_fn(
        self, config: ProfileConfig, backend: str = "ort", rounds: int = 3
    ) -> Callable[[Sequence[Path]], list[float]]:
        """A timing function for quantize's placement search (``quantize(..., latency=fn)``) measured here: each
        model file is profiled on the agent ``rounds`` times, models taking turns, and gets its median p50 (ms)."""

        def latency(paths: Sequence[Path]) -> list[float]:
            per: list[list[float]] = [[] for _ in paths]
            for r in range(rounds):
                order = range(len(paths)) if r % 2 == 0 else reversed(range(len(paths)))
                for i in order:
                    per[i].append(self.profile(paths[i], config, backend=backend).latency.p50_ms)
            return [statistics.median(v) for v in per]

        return latency

    def submit(self, spec: JobSpec, files: dict[str, tuple[Path, str]] | None = None) -> JobStatus:
        """POST the job; waits out a full queue, and uploads files the agent reports missing (when given)."""
        deadline = time.monotonic() + self.busy_s
        for _ in range(10_000):  # bounded by the deadline long before
            status, data, headers = self._request("POST", "/jobs", json.dumps(spec.to_dict()).encode())
            if status in (200, 202):
                return JobStatus.from_dict(data, where=f"{self.device} job")
            if status == 404 and files and data.get("error", {}).get("missing"):
                missing = set(data["error"]["missing"])
                self._send_missing({n: f for n, f in files.items() if f[1] in missing}, check=False)
                files = None  # once: a second miss is the agent's store being too small, reported below
                continue
            if status == 503 and time.monotonic() < deadline:
                wait = _retry_after(headers)
                log.info("%s is busy; retrying in %d s", self.device, wait)
                time.sleep(wait)
                continue
            raise self._error(status, data)
        raise AgentUnreachableError(f"{self.device} stayed busy for {self.busy_s:g} s")

    def wait(self, status: JobStatus) -> JobStatus:
        """Long-poll the job until it ends."""
        deadline = time.monotonic() + self.job_wait_s
        for _ in range(int(self.job_wait_s) + 1):  # a poll lasts up to POLL_S: the deadline ends the loop first
            if status.ended:
                return status
            if time.monotonic() > deadline:
                break
            try:
                poll = f"/jobs/{status.id}?wait={POLL_S}"
                code, data, _ = self._request("GET", poll, timeout=self.timeout_s + POLL_S)
            except AgentUnreachableError as e:
                raise AgentUnreachableError(f"{self.device} went away while running job {status.id}: {e}") from e
            if code == 404:
                raise AgentUnreachableError(
                    f"{self.device} no longer knows job {status.id}: the agent restarted while it ran; run it again"
                )
            if code != 200:
                raise self._error(code, data)
            status = JobStatus.from_dict(data, where=f"{self.device} job")
        raise AgentUnreachableError(f"job {status.id} on {self.device} did not end within {self.job_wait_s:g} s")

    # --- files -----------------------------------------------------------------------------------------
    def _files(self, art: Artifact, folder: bool) -> dict[str, tuple[Path, str]]:
        """name in the job folder -> (local path, sha256): the manifest's files (hashes checked on load), plus
        ``artifact.json`` for an artifact folder (a bare model file goes alone, with its external data)."""
        files = {name: (art.path / name, sha) for name, sha in art.manifest.files.items()}
        if folder:
            files[MANIFEST_NAME] = (art.path / MANIFEST_NAME, sha256_file(art.path / MANIFEST_NAME))
        return files

    def _send_missing(self, files: dict[str, tuple[Path, str]], check: bool = True) -> None:
        limit = self.info().store.max_upload_bytes
        for name, (path, sha) in files.items():
            if check:
                code, _, _ = self._request("GET", f"/models/{sha}")
                if code == 200:
                    continue
            size = path.stat().st_size
            if size > limit:
                raise InvalidInputError(
                    f"{path} is {size} bytes; {self.device} takes at most {limit} bytes per file (its --max-upload-mb)"
                )
            log.info("uploading %s (%d bytes) to %s", name, size, self.device)
            Stored.from_dict(self._call("PUT", f"/models/{sha}", body=path, ok=(200, 201)), where="upload")

    # --- HTTP ------------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, body: bytes | Path | None = None, ok: tuple[int, ...] = (200,)) -> Any:
        status, data, _ = self._request(method, path, body)
        if status not in ok:
            raise self._error(status, data)
        return data

    def _request(
        self, method: str, path: str, body: bytes | Path | None = None, timeout: float | None = None
    ) -> tuple[int, Any, Any]:
        """One exchange, retried on connection errors: ``(status, parsed JSON body, headers)`` for any status."""
        headers = {"Accept": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        last: Exception | None = None
        for attempt in range(self.tries):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                with _body(body) as (data, extra):
                    req = urllib.request.Request(self._base + path, data=data, method=method, headers=headers | extra)
                    with self._opener.open(req, timeout=timeout or self.timeout_s) as resp:
                        return resp.status, _parse(resp.read()), resp.headers
            except urllib.error.HTTPError as e:
                return e.code, _parse(e.read()), e.headers
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                last = e
                log.info("%s %s %s: %s (try %d of %d)", self.device, method, path, e, attempt + 1, self.tries)
        reason = getattr(last, "reason", last)
        raise AgentUnreachableError(
            f"{self.device} is unreachable ({reason}) after {self.tries} tries; is `edgeformer agent serve` "
            "running there, on that port?"
        )

    def _error(self, status: int, data: Any) -> EdgeformerError:
        try:
            message = ErrorReply.from_dict(data).error.message
        except EdgeformerError:
            message = f"HTTP {status}: {str(data)[:200]}"
        if status == 401:
            fix = (
                f"no token was sent: set {TOKEN_ENV} or pass --token-file"
                if self.token is None
                else f"check --token-file / {TOKEN_ENV} against the agent's token"
            )
            return AgentAuthError(f"{self.device} refused the request ({message}); {fix}")
        if status == 413:
            return InvalidInputError(f"{self.device} refused the upload: {message}")
        if status in (503, 507) or status >= 500:
            return BackendUnavailableError(f"{self.device} cannot take the job: {message}")
        return ConfigError(f"{self.device} refused the request: {message}")


def remote_profile(
    device: str,
    model_path: str | Path | Artifact,
    config: ProfileConfig = ProfileConfig(),
    backend: str = "ort",
    token: str | None = None,
) -> ProfileResult:
    """Profile ``model_path`` (an artifact folder or a model file) on the agent at ``device`` (``agent://HOST:PORT``).

    ``token`` defaults to ``$EDGEFORMER_AGENT_TOKEN``. The result is the :class:`ProfileResult` the device measured
    (its device card is the device's); ``artifact.path`` names the local file.
    """
    return AgentClient(device, resolve_token(token)).profile(model_path, config, backend=backend)


class _body:
    """The request body for one attempt: bytes as they are, a file opened afresh (retries resend it whole)."""

    def __init__(self, body: bytes | Path | None) -> None:
        self.body, self._f = body, None

    def __enter__(self) -> tuple[Any, dict[str, str]]:
        if isinstance(self.body, Path):
            self._f = open(self.body, "rb")  # closed in __exit__
            size = str(self.body.stat().st_size)
            return self._f, {"Content-Type": "application/octet-stream", "Content-Length": size}
        if self.body is not None:
            return self.body, {"Content-Type": "application/json"}
        return None, {}

    def __exit__(self, *exc: object) -> None:
        if self._f is not None:
            self._f.close()


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"raw": raw[:200].decode("utf-8", "replace")}


def _retry_after(headers: Any, default: int = 1, cap: int = 30) -> int:
    try:
        return max(1, min(cap, int(headers.get("Retry-After", default))))
    except (TypeError, ValueError):
        return default


def client_for(device: str, token: str | None = None, token_file: str | Path | None = None) -> AgentClient:
    """An :class:`AgentClient` with the token resolved as the CLI resolves it (``--token-file``, then the env)."""
    return AgentClient(device, resolve_token(token, token_file))
