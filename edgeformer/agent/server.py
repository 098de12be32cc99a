"""``edgeformer agent serve``: the HTTP agent on the device (starlette app, served by uvicorn).

Security model: the agent listens on 127.0.0.1 unless told otherwise, and refuses to listen anywhere else without
a bearer token (``--token-file`` or ``EDGEFORMER_AGENT_TOKEN``, at least 16 characters), which every route but
``/v1/health`` then requires, compared in constant time. Every body is untrusted: JSON is size-capped and read
into typed records (an unknown field, a wrong type, a file name that would leave the job's folder: 400), uploads
are size-capped (413) and stored only once their sha256 matches the one in the path (422); a refused request
writes nothing. The transport is plain HTTP: across an untrusted network, reach the agent through an SSH tunnel
or a VPN, since the token and the models would otherwise travel in clear.

Example::

    serve(AgentConfig(store=Path("~/.cache/edgeformer/agent").expanduser(), token=resolve_token()))
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import __version__
from ..errors import ConfigError
from ..profiling import DeviceCard
from ..records import SKIP, Record
from .jobs import INFO_TIMEOUT_S, JobConflictError, JobRunner, MissingModelsError, QueueFullError
from .store import ModelStore, StoreError
from .wire import (
    API,
    DEFAULT_PORT,
    MAX_JSON_BYTES,
    AgentInfo,
    BackendInfo,
    ErrorDetail,
    ErrorReply,
    JobSpec,
    device_url,
    is_job_id,
    is_loopback,
    is_sha256,
)

log = logging.getLogger(__name__)
MAX_WAIT_S = 30.0  # longest long-poll of GET /v1/jobs/{id}?wait=


@dataclass(frozen=True, kw_only=True)
class AgentConfig(Record):
    """How the agent serves; ``token`` is held in memory only (never written, never logged)."""

    store: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_upload_bytes: int = 512 << 20
    store_cap_bytes: int = 4 << 30
    queue_size: int = 8
    job_timeout_s: float = 600.0
    token: str | None = field(default=None, metadata=SKIP, repr=False)

    def check(self) -> None:
        """Refuse what would be unsafe or cannot work, before anything is bound or written."""
        problems = []
        if self.token is None and not is_loopback(self.host):
            raise ConfigError(
                f"refusing to serve on {self.host} without a token: anyone who reaches it could upload models and "
                "run jobs on this device. Pass --token-file FILE (`edgeformer agent token -o FILE` makes one) or set "
                "EDGEFORMER_AGENT_TOKEN, or serve on 127.0.0.1."
            )
        if not 0 <= self.port <= 65535:
            problems.append(f"port must be 0..65535 (got {self.port})")
        if self.max_upload_bytes < 1 or self.store_cap_bytes < self.max_upload_bytes:
            problems.append("the store cap must be at least the upload limit, and both positive")
        if self.queue_size < 1 or self.job_timeout_s <= 0:
            problems.append("--queue must be >= 1 and --job-timeout > 0")
        if problems:
            raise ConfigError("invalid agent settings: " + "; ".join(problems) + ".")


def create_app(config: AgentConfig, store: ModelStore) -> Starlette:
    """The ASGI app: routes, auth, JSON errors and the job runner's lifetime."""
    runner = JobRunner(store, capacity=config.queue_size, timeout_s=config.job_timeout_s)

    def authed(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def wrapper(request: Request) -> Response:
            if config.token is not None:
                scheme, _, given = request.headers.get("authorization", "").partition(" ")
                if scheme.lower() != "bearer" or not given:
                    return _error(401, "this agent needs a bearer token (Authorization: Bearer TOKEN)", bearer=True)
                if not hmac.compare_digest(given.strip().encode(), config.token.encode()):
                    return _error(401, "wrong token", bearer=True)
            return await handler(request)

        return wrapper

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def info(request: Request) -> Response:
        try:
            parts = await asyncio.to_thread(runner.device_info, INFO_TIMEOUT_S + 10)
        except (TimeoutError, RuntimeError) as e:
            return _error(503, str(e))
        reply = AgentInfo(
            version=__version__,
            device=DeviceCard.from_dict(parts["device"], where="device card"),
            backends=tuple(BackendInfo.from_dict(b) for b in parts["backends"]),
            versions=parts["versions"],
            store=store.info(),
            jobs=runner.counts(),
            job_timeout_s=config.job_timeout_s,
            auth=config.token is not None,
        )
        return JSONResponse(reply.to_dict())

    async def model_get(request: Request) -> Response:
        sha = _sha(request)
        stored = store.get(sha)
        return _error(404, f"no model {sha} here") if stored is None else JSONResponse(stored.to_dict())

    async def model_put(request: Request) -> Response:
        sha = _sha(request)
        declared = request.headers.get("content-length")
        # isdigit() alone takes "¹" (a latin-1 header byte) for a digit, and int() refuses past 4300 digits
        limit = store.max_upload_bytes
        if declared is not None and (
            not (declared.isascii() and declared.isdecimal())
            or len(declared.lstrip("0")) > len(str(limit))
            or int(declared) > limit
        ):
            return _error(413, f"upload larger than this agent's limit of {store.max_upload_bytes} bytes")
        try:
            with store.upload() as up:
                async for chunk in request.stream():
                    up.write(chunk)
                stored = await asyncio.to_thread(up.commit, sha)
        except StoreError as e:
            return _error(e.status, str(e))
        except ClientDisconnect:
            return _error(400, "the upload was cut off; nothing stored")
        return JSONResponse(stored.to_dict(), status_code=201 if stored.created else 200)

    async def job_post(request: Request) -> Response:
        spec = JobSpec.from_dict(await _json(request), where="job")
        problems = spec.problems()
        if problems:
            return _error(400, "job: " + "; ".join(problems))
        try:
            status = await asyncio.to_thread(runner.submit, spec)
        except QueueFullError as e:
            return _error(503, str(e), headers={"Retry-After": str(e.retry_after)})
        except MissingModelsError as e:
            return _error(404, str(e), missing=tuple(e.missing))
        except JobConflictError as e:
            return _error(409, str(e))
        return JSONResponse(status.to_dict(), status_code=202)

    async def job_get(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        if not is_job_id(job_id):
            return _error(400, "a job id is 32 lowercase hex digits")
        try:
            wait = float(request.query_params.get("wait", "0"))
        except ValueError:
            return _error(400, "wait must be a number of seconds")
        wait = min(max(wait, 0.0), MAX_WAIT_S)
        status = await runner.wait(job_id, wait) if wait else runner.status(job_id)
        if status is None:
            return _error(404, f"no job {job_id} here (never submitted, forgotten, or the agent restarted since)")
        return JSONResponse(status.to_dict())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        runner.start(asyncio.get_running_loop())
        yield
        runner.stop()

    routes = [
        Route(f"{API}/health", health, methods=["GET"]),
        Route(f"{API}/info", authed(info), methods=["GET"]),
        Route(f"{API}/models/{{sha}}", authed(model_get), methods=["GET"]),
        Route(f"{API}/models/{{sha}}", authed(model_put), methods=["PUT"]),
        Route(f"{API}/jobs", authed(job_post), methods=["POST"]),
        Route(f"{API}/jobs/{{job_id}}", authed(job_get), methods=["GET"]),
    ]
    handlers = {HTTPException: _http_error, ConfigError: _config_error, Exception: _bug}
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)  # type: ignore[arg-type]
    app.state.runner = runner
    return app


def serve(config: AgentConfig, announce: Callable[[str], None] = log.info) -> None:
    """Check ``config``, open the store, bind, call ``announce("... listening on agent://HOST:PORT")``, serve."""
    config.check()
    store = ModelStore(config.store, cap_bytes=config.store_cap_bytes, max_upload_bytes=config.max_upload_bytes)
    app = create_app(config, store)
    sock = _bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    auth = "token required" if config.token else "no token (loopback only)"
    announce(f"edgeformer agent listening on {device_url(host, port)} · store {config.store} · {auth}")
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            lifespan="on",
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # no client may claim another address through X-Forwarded-For
            server_header=False,
            timeout_graceful_shutdown=3,
            limit_concurrency=64,  # past that uvicorn answers 503 itself
        )
    )
    server.run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port or --host") from e


def _sha(request: Request) -> str:
    sha = request.path_params["sha"]
    if not is_sha256(sha):
        raise HTTPException(400, "a model is named by its sha256: 64 lowercase hex digits")
    return sha


async def _json(request: Request) -> Any:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise HTTPException(413, f"JSON body larger than {MAX_JSON_BYTES} bytes")
    try:
        return json.loads(body)
    # ValueError: bad JSON or UTF-8, or an int past Python's 4300 digits; RecursionError: arrays nested deep
    except (ValueError, RecursionError) as e:
        raise HTTPException(400, f"the body is not valid JSON ({e})") from e


def _error(status: int, message: str, *, bearer: bool = False, headers: dict[str, str] | None = None, **kw) -> Response:
    headers = dict(headers or {})
    if bearer:
        headers["WWW-Authenticate"] = 'Bearer realm="edgeformer-agent"'
    body = ErrorReply(error=ErrorDetail(status=status, message=message, **kw)).to_dict()
    return JSONResponse(body, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))


async def _config_error(request: Request, exc: Exception) -> Response:
    return _error(400, str(exc))  # a record that did not read: unknown key, wrong type, with its path


async def _bug(request: Request, exc: Exception) -> Response:
    log.error("agent bug on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, f"agent bug: {type(exc).__name__}: {exc}")
