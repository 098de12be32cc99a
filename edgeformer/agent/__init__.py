"""Profile on the real device: ``edgeformer agent serve`` on the device, a client here, fleets and executors.

Device side (torch-free, the base install): :mod:`.server` serves HTTP (starlette + uvicorn), :mod:`.store` keeps
uploaded models by sha256, :mod:`.jobs` runs one profiling job at a time in a child process. Build side:
:mod:`.client` talks to one agent, :mod:`.fleet` names many (a TOML file), :mod:`.executor` spreads work over them
from a thread pool or as Ray tasks. Records on the wire are in :mod:`.wire`.

The Python API::

    from edgeformer.agent import Fleet, make_executor, remote_profile
    from edgeformer.profiling import ProfileConfig

    # one device; the token defaults to $EDGEFORMER_AGENT_TOKEN
    result = remote_profile("agent://pi5.local:8765", "build/l1-int8", ProfileConfig(threads=4), backend="ort")

    # many: every item on an agent of the label device_for gives it, at most one job per agent at a time; an agent
    # that dies mid-job is dropped and its item retried on another agent of the same label
    fleet = Fleet.load("fleet.toml")
    with make_executor("local", fleet) as ex:  # or make_executor("ray", fleet, ray_address="auto")
        results = ex.map(lambda agent, path: agent.client().profile(path), paths, device_for=lambda p: "pi5-cpu")
"""

from .client import AgentClient, remote_profile
from .executor import Executor, LocalExecutor, RayExecutor, make_executor
from .fleet import AgentHealth, Fleet, FleetAgent, FleetRow, fleet_profile, fleet_status
from .wire import AgentInfo, JobSpec, JobStatus, parse_device, resolve_token

__all__ = [
    "AgentClient",
    "AgentHealth",
    "AgentInfo",
    "Executor",
    "Fleet",
    "FleetAgent",
    "FleetRow",
    "JobSpec",
    "JobStatus",
    "LocalExecutor",
    "RayExecutor",
    "fleet_profile",
    "fleet_status",
    "make_executor",
    "parse_device",
    "remote_profile",
    "resolve_token",
]
