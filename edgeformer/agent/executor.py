"""Executors: spread fleet work over its agents from a local thread pool, or as Ray tasks on a Ray cluster.

``map(fn, items, device_for=label_of)`` runs ``fn(agent, item)`` for every item on an agent of the fleet whose
label is ``label_of(item)``, with at most one call in flight per agent (timings on a device are never disturbed
by a second job of ours). An agent that dies (:class:`~edgeformer.errors.AgentUnreachableError`) is dropped for
the rest of the call and its item goes to another agent of the same label; with Ray, a task whose worker or
node dies is retried by Ray, then once more by the scheduler here. Results come back in item order, the same
from both executors: the scheduling is this module's, only where ``fn`` runs differs.

Without ``device_for``, ``map(fn, items)`` is a plain parallel map of ``fn(item)`` (the export -> quantize ->
evaluate of slimming candidates): threads here, Ray tasks there (each asks ``num_cpus`` of the cluster).

Example::

    def profile_on(agent: FleetAgent, path: str) -> ProfileResult:  # module level: Ray pickles it
        return agent.client().profile(path, ProfileConfig(runs=50))

    with make_executor("ray", Fleet.load("fleet.toml"), ray_address="auto") as ex:
        results = ex.map(profile_on, paths, device_for=lambda path: "pi5-cpu")
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from ..errors import AgentUnreachableError, BackendUnavailableError, ConfigError
from .fleet import Fleet, FleetAgent

MAX_ATTEMPTS = 3  # of one item on one label, for failures that are not the agent's (a Ray worker that died)
_Failure = Literal["agent", "retry", "item"]


class Executor(ABC):
    """Runs work for a fleet; use as a context manager (a Ray executor it started shuts Ray down on exit)."""

    def __init__(self, fleet: Fleet | None = None, max_workers: int | None = None) -> None:
        self.fleet, self.max_workers = fleet, max_workers

    def map(
        self,
        fn: Callable[..., Any],
        items: Sequence[Any],
        *,
        device_for: Callable[[Any], str] | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """``[fn(agent, item) ...]`` on the fleet (``device_for``: item -> label), or ``[fn(item) ...]``.

        Args:
            fn: a module-level function (the Ray executor pickles it).
            items: the work, in the order of the results.
            device_for: the label of the agents an item must run on; ``None`` for a plain parallel map.
            return_exceptions: put an item's exception in its place instead of raising the first one.

        Raises:
            ConfigError: a label the fleet does not have (before any work starts), or no fleet.
        """
        items = list(items)
        if device_for is None:
            results = self._plain(fn, items)
        else:
            results = self._on_fleet(fn, items, device_for)
        if not return_exceptions:
            for r in results:
                if isinstance(r, BaseException):
                    raise r
        return results

    def _on_fleet(self, fn: Callable[..., Any], items: list[Any], device_for: Callable[[Any], str]) -> list[Any]:
        if self.fleet is None:
            raise ConfigError("device_for needs a fleet: pass one to the executor (--fleet FILE)")
        fleet = self.fleet
        labels = [device_for(item) for item in items]
        unknown = sorted(set(labels) - set(fleet.labels))
        if unknown:
            known = ", ".join(fleet.labels)
            raise ConfigError(f"no agent has the label {', '.join(unknown)}; the fleet's labels: {known}")
        pending = {label: deque(i for i, x in enumerate(labels) if x == label) for label in set(labels)}
        alive = {label: len(fleet.with_label(label)) for label in pending}
        busy = dict.fromkeys(pending, 0)
        results: list[Any] = [None] * len(items)
        attempts = [0] * len(items)
        cv = threading.Condition()

        def worker(agent: FleetAgent) -> None:
            queue = pending[agent.label]
            # each turn takes an item or returns; an item is taken at most MAX_ATTEMPTS times per agent
            for _ in range(len(items) * MAX_ATTEMPTS + 1):
                with cv:
                    cv.wait_for(lambda: queue or not busy[agent.label])
                    if not queue:
                        return
                    i = queue.popleft()
                    busy[agent.label] += 1
                    attempts[i] += 1
                try:
                    out, failure = self._call(fn, agent, items[i]), None
                except Exception as e:
                    out, failure = self._failure(e)
                with cv:
                    busy[agent.label] -= 1
                    cv.notify_all()
                    if failure == "agent":
                        alive[agent.label] -= 1
                        if alive[agent.label]:
                            queue.appendleft(i)  # another agent of the label takes it
                        else:
                            results[i] = out
                            for j in queue:
                                results[j] = AgentUnreachableError(f"no agent labelled {agent.label} is left: {out}")
                            queue.clear()
                        return
                    if failure == "retry" and attempts[i] < MAX_ATTEMPTS:
                        queue.appendleft(i)
                    else:
                        results[i] = out

        threads = [threading.Thread(target=worker, args=(a,), daemon=True) for a in fleet.agents if a.label in pending]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    def _failure(self, e: Exception) -> tuple[Exception, _Failure]:
        """The exception to report and what it means: the agent is gone, worth another try, or the item's own."""
        return e, "agent" if isinstance(e, AgentUnreachableError) else "item"

    @abstractmethod
    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` once, here or on the cluster, and return its result."""

    @abstractmethod
    def _plain(self, fn: Callable[..., Any], items: list[Any]) -> list[Any]:
        """``fn(item)`` for every item, in parallel; an exception in its item's place."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the executor started."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """Threads in this process: one per agent for fleet work, ``max_workers`` (default 4) for a plain map."""

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def _plain(self, fn: Callable[..., Any], items: list[Any]) -> list[Any]:
        def run(item: Any) -> Any:
            try:
                return fn(item)
            except Exception as e:
                return e

        with ThreadPoolExecutor(max_workers=self.max_workers or 4) as pool:
            return list(pool.map(run, items))


class RayExecutor(Executor):
    """Ray tasks: connects to ``address`` (``"auto"``: the running cluster; ``None``: a new local instance unless
    Ray is already initialised in this process). ``num_cpus``: what a plain-map task asks of the cluster; a fleet
    task mostly waits on its agent and asks ``agent_task_cpus``. ``task_retries``: Ray's retries of a task whose
    worker or node died."""

    def __init__(
        self,
        fleet: Fleet | None = None,
        *,
        address: str | None = None,
        num_cpus: float = 1.0,
        agent_task_cpus: float = 0.25,
        task_retries: int = 2,
    ) -> None:
        super().__init__(fleet)
        try:
            import ray
        except ImportError as e:
            raise BackendUnavailableError("--executor ray needs Ray: pip install 'edgeformer[ray]'") from e
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except ConnectionError as e:
                raise BackendUnavailableError(f"cannot reach the Ray cluster at {address}: {e}") from e
            self._started = True
        self._plain_task = ray.remote(num_cpus=num_cpus, max_retries=task_retries)(_run)
        self._agent_task = ray.remote(num_cpus=agent_task_cpus, max_retries=task_retries)(_run)

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._ray.get(self._agent_task.remote(fn, *args))

    def _failure(self, e: Exception) -> tuple[Exception, _Failure]:
        errors = self._ray.exceptions
        if isinstance(e, errors.RayTaskError):  # fn raised: judge (and report) its own exception
            cause = e.cause if isinstance(e.cause, Exception) else e
            return super()._failure(cause)
        if isinstance(e, errors.RayError):  # the worker or node died under the task, past Ray's own retries
            return e, "retry"
        return super()._failure(e)

    def _plain(self, fn: Callable[..., Any], items: list[Any]) -> list[Any]:
        refs = [self._plain_task.remote(fn, item) for item in items]
        out = []
        for ref in refs:
            try:
                out.append(self._ray.get(ref))
            except Exception as e:
                out.append(self._failure(e)[0])
        return out

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def _run(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def make_executor(
    kind: str, fleet: Fleet | None = None, *, ray_address: str | None = None, max_workers: int | None = None
) -> Executor:
    """``"local"`` (threads) or ``"ray"`` (Ray tasks, ``ray_address`` as :class:`RayExecutor` takes it)."""
    if kind == "local":
        if ray_address is not None:
            raise ConfigError("--ray-address goes with --executor ray")
        return LocalExecutor(fleet, max_workers)
    if kind == "ray":
        return RayExecutor(fleet, address=ray_address)
    raise ConfigError(f"unknown executor {kind!r}; choose local or ray")
