"""The agent's jobs: a bounded queue, one job at a time, each in a child process with a timeout.

One worker thread takes jobs in order, so timings never share the CPU with another job. Each job runs
:func:`edgeformer.profile` in a ``python -c`` child (:func:`~edgeformer.runtimes.child.run_in_child`, its own
process group): a model that crashes the native runtime kills that child, a model that hangs it runs into the
timeout, and either way the job fails with the reason while the agent goes on. On Linux the child is also told
to die with the agent (``PR_SET_PDEATHSIG``), so a SIGKILLed agent leaves no job running behind it.

The device card and the backends are read the same way, in a child, when the agent starts: loading a native
runtime (OpenVINO, TensorRT) to ask what it supports is itself a native call that may crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from ..errors import BackendUnavailableError, EdgeformerError
from ..manifest import tool_versions
from ..profiling import DeviceCard, ProfileConfig, ProfileResult, device_card, precision_unavailable, profile
from ..runtimes import backends, get_backend
from ..runtimes.child import ChildFailure, run_in_child
from .store import ModelStore, StoreError
from .wire import TOKEN_ENV, BackendInfo, JobError, JobSpec, JobStatus, QueueInfo

log = logging.getLogger(__name__)

_JOB_SCRIPT = "from edgeformer.agent.jobs import job_main; job_main()"
_INFO_SCRIPT = "from edgeformer.agent.jobs import info_main; info_main()"
INFO_TIMEOUT_S = 120.0
# what each backend can run at all; precision_unavailable() then says whether this CPU runs it usefully
_PRECISIONS = {
    "ort": ("fp32", "fp16", "int8"),
    "openvino": ("fp32", "fp16", "bf16", "int8"),
    "tensorrt": ("fp32", "fp16", "int8"),
    "coreml": ("fp32", "fp16", "int8"),
}
_VERSIONS = ("edgeformer", "onnxruntime", "onnx", "numpy", "openvino", "tensorrt", "coremltools", "starlette")


class QueueFullError(Exception):
    """The queue holds ``capacity`` jobs; ``retry_after`` (s) estimates when one slot frees."""

    def __init__(self, capacity: int, retry_after: int) -> None:
        super().__init__(f"the job queue is full ({capacity} waiting); retry in about {retry_after} s")
        self.retry_after = retry_after


class MissingModelsError(Exception):
    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"the agent does not hold {len(missing)} of the job's files; upload them and retry")
        self.missing = missing


class JobConflictError(Exception):
    pass


@dataclass
class _Job:
    spec: JobSpec
    event: asyncio.Event  # set (on the event loop) when the job ends
    state: str = "queued"
    result: ProfileResult | None = None
    error: JobError | None = None
    seconds: float | None = None
    shas: list[str] = field(default_factory=list)


class JobRunner:
    """Queue and worker; ``submit``/``status``/``wait`` are called on the server's event loop.

    Args:
        store: where the jobs' files are.
        capacity: jobs that may wait (the running one not counted); one more is refused with a retry time.
        timeout_s: wall-clock limit of one job, start-up of its process included.
        keep: ended jobs remembered for their clients.
    """

    def __init__(self, store: ModelStore, *, capacity: int, timeout_s: float, keep: int = 256) -> None:
        self.store, self.capacity, self.timeout_s, self.keep = store, capacity, timeout_s, keep
        self._jobs: OrderedDict[str, _Job] = OrderedDict()
        self._queue: deque[_Job] = deque()
        self._cv = threading.Condition()
        self._running: _Job | None = None
        self._done = self._failed = 0
        self._mean_s = 5.0  # running mean of job times, for Retry-After
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._info: dict[str, Any] | None = None
        self._info_ready = threading.Event()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # one long-lived thread: PR_SET_PDEATHSIG follows the thread that started the child
        self._thread = threading.Thread(target=self._work, name="edgeformer-agent-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()

    # --- the event loop's side -------------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> JobStatus:
        """Queue ``spec`` (or return the status of the job with its id, for a retried request)."""
        with self._cv:
            known = self._jobs.get(spec.id)
            if known is not None:
                if known.spec != spec:
                    raise JobConflictError(f"job {spec.id} exists with another spec; choose a new id")
                return self._status(known)
            if len(self._queue) >= self.capacity:
                raise QueueFullError(self.capacity, self._retry_after())
        missing = self.store.pin(spec.files.values())  # may hash files: outside the lock
        if missing:
            raise MissingModelsError(missing)
        job = _Job(spec=spec, event=asyncio.Event(), shas=sorted(set(spec.files.values())))
        with self._cv:
            if len(self._queue) >= self.capacity or self._stopping:  # filled while we pinned
                self.store.unpin(job.shas)
                raise QueueFullError(self.capacity, self._retry_after())
            self._jobs[spec.id] = job
            self._queue.append(job)
            self._cv.notify_all()
            return self._status(job)

    def status(self, job_id: str) -> JobStatus | None:
        with self._cv:
            job = self._jobs.get(job_id)
            return None if job is None else self._status(job)

    async def wait(self, job_id: str, timeout: float) -> JobStatus | None:
        """The job's status once it has ended, or after ``timeout`` seconds, whichever is first."""
        with self._cv:
            job = self._jobs.get(job_id)
        if job is None:
            return None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(job.event.wait(), timeout)
        return self.status(job_id)

    def counts(self) -> QueueInfo:
        with self._cv:
            return QueueInfo(
                queued=len(self._queue),
                running=int(self._running is not None),
                done=self._done,
                failed=self._failed,
                capacity=self.capacity,
            )

    def device_info(self, timeout: float) -> dict[str, Any]:
        """``{"device", "backends", "versions"}`` as read at start-up (blocks until then)."""
        if not self._info_ready.wait(timeout):
            raise TimeoutError("the agent is still reading its device card")
        assert self._info is not None
        if "error" in self._info:
            raise RuntimeError(self._info["error"])
        return self._info

    def _status(self, job: _Job) -> JobStatus:
        position = None
        if job.state == "queued":
            position = next((i for i, j in enumerate(self._queue) if j is job), 0)
        return JobStatus(
            id=job.spec.id, state=job.state, position=position, result=job.result, error=job.error, seconds=job.seconds
        )  # type: ignore[arg-type]

    def _retry_after(self) -> int:
        return max(1, min(60, math.ceil(self._mean_s)))  # a slot frees when the running job ends

    # --- the worker thread -----------------------------------------------------------------------------
    def _work(self) -> None:
        self._read_device_info()
        for job in iter(self._next, None):
            try:
                self._run(job)
            except Exception as e:  # a bug here must fail one job, not stop the queue for good
                log.exception("job %s: agent bug", job.spec.id)
                self._finish(job, None, JobError(kind="failed", message=f"agent bug: {type(e).__name__}: {e}"), 0.0)

    def _next(self) -> _Job | None:
        with self._cv:
            self._cv.wait_for(lambda: self._queue or self._stopping)
            if self._stopping:
                return None
            job = self._running = self._queue.popleft()
            job.state = "running"
            return job

    def _run(self, job: _Job) -> None:
        spec, start = job.spec, time.monotonic()
        result = error = None
        folder = None
        try:
            folder = self.store.materialize(spec.id, spec.files)
            target = folder / spec.main if spec.main else folder
            args = [str(target), spec.config.to_json(), spec.backend, str(os.getpid())]
            stdout, failure = run_in_child(_JOB_SCRIPT, args, self.timeout_s, own_group=True, env=_child_env())
            result, error = _outcome(stdout, failure, self.timeout_s)
        except (OSError, StoreError) as e:
            error = JobError(kind="failed", message=f"the agent could not lay out the job's files: {e}")
        finally:
            if folder is not None:
                self.store.release(folder)
            self.store.unpin(job.shas)
        self._finish(job, result, error, time.monotonic() - start)

    def _finish(self, job: _Job, result: ProfileResult | None, error: JobError | None, seconds: float) -> None:
        log.info("job %s %s in %.2f s", job.spec.id, "failed" if error else "done", seconds)
        with self._cv:
            job.state, job.result, job.error, job.seconds = ("failed" if error else "done"), result, error, seconds
            self._running = None
            self._done += error is None
            self._failed += error is not None
            self._mean_s = 0.8 * self._mean_s + 0.2 * seconds
            ended = [k for k, j in self._jobs.items() if j.state in ("done", "failed")]
            for k in ended[: max(0, len(ended) - self.keep)]:
                del self._jobs[k]
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is gone when the agent is shutting down
            self._loop.call_soon_threadsafe(job.event.set)

    def _read_device_info(self) -> None:
        stdout, failure = run_in_child(
            _INFO_SCRIPT, [str(os.getpid())], INFO_TIMEOUT_S, own_group=True, env=_child_env()
        )
        try:
            if failure is not None:
                raise ValueError(f"{failure.kind}: {failure.detail}")
            self._info = json.loads(stdout.strip().splitlines()[-1])
        except (ValueError, IndexError) as e:
            log.error("could not read the device card: %s", e)
            self._info = {"error": f"the agent could not read its device card ({e})"}
        self._info_ready.set()


def _child_env() -> dict[str, str]:
    """The agent's environment less its token: a job reads untrusted models and needs no secret."""
    return {k: v for k, v in os.environ.items() if k != TOKEN_ENV}


def _outcome(stdout: str, failure: ChildFailure | None, timeout: float) -> tuple[ProfileResult | None, JobError | None]:
    if failure is not None and failure.kind == "timeout":
        return None, JobError(
            kind="timeout",
            message=f"the job did not finish within {timeout:g} s (the agent's --job-timeout): the model hangs the "
            "runtime or is far too slow for this device",
        )
    if failure is not None and failure.kind == "signal":
        return None, JobError(
            kind="crashed",
            message=f"the runtime crashed on the model ({failure.detail}): the file is malformed or triggers a "
            "runtime bug on this device; the agent is fine",
        )
    if failure is not None:
        return None, JobError(kind="failed", message=f"the job's process failed: {failure.detail}")
    try:
        reply = json.loads(stdout.strip().splitlines()[-1])
        if "error" in reply:
            return None, JobError(kind="failed", message=reply["error"]["message"], error_type=reply["error"]["type"])
        return ProfileResult.from_dict(reply["result"], where="the job's result"), None
    except (ValueError, IndexError, KeyError, TypeError) as e:
        return None, JobError(kind="failed", message=f"the job printed no readable result ({e}): {stdout[-300:]!r}")


# --- what runs in the children ---------------------------------------------------------------------------
def _die_with_agent(agent_pid: int) -> None:
    """Linux: SIGKILL this process when the agent's job thread ends (a SIGKILLed agent cannot do it itself)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != agent_pid:  # the agent died before the prctl took effect
        os._exit(1)


def job_main() -> None:
    """A job's process: ``profile(path, config, backend)``; prints one JSON line, the result or the error."""
    path, config_json, backend, agent_pid = sys.argv[1:5]
    _die_with_agent(int(agent_pid))
    try:
        config = ProfileConfig.from_json(config_json, where="the job's config")
        reply: dict[str, Any] = {"result": profile(path, config, backend=backend).to_dict()}
    except EdgeformerError as e:
        reply = {"error": {"type": type(e).__name__, "message": str(e)}}
    print(json.dumps(reply))


def info_main() -> None:
    """The start-up process: device card, backends (with the precisions each runs usefully here), versions."""
    _die_with_agent(int(sys.argv[1]))
    card: DeviceCard = device_card(backend="ort")
    found = []
    for name in backends.names():
        try:
            reason = get_backend(name).available()
        except BackendUnavailableError as e:
            reason = str(e)
        precisions = () if reason else tuple(p for p in _PRECISIONS.get(name, ()) if not precision_unavailable(name, p))
        found.append(BackendInfo(name=name, reason=reason, precisions=precisions).to_dict())
    versions = tool_versions(_VERSIONS) | {"python": sys.version.split()[0]}
    print(json.dumps({"device": card.to_dict(), "backends": found, "versions": versions}))
