"""A fleet: device agents named in a TOML file, grouped by label (agents with one label are interchangeable).

The file::

    # fleet.toml
    [[agents]]
    name = "pi-1"
    url = "agent://10.0.0.21:8765"
    label = "pi5-cpu"
    token_file = "tokens/pi.token"     # relative to this file; default: $EDGEFORMER_AGENT_TOKEN

    [[agents]]
    name = "orin"
    url = "agent://10.0.0.40:8765"
    label = "jetson-orin"

Tokens are read when the file is loaded and kept in memory only (a token written in the file itself is refused:
the file is shared, the secret is not).

Example::

    fleet = Fleet.load("fleet.toml")
    for health in fleet_status(fleet):
        print(health.agent.name, health.ok, health.problem)
    rows = fleet_profile(fleet, "build/l1-int8", ProfileConfig(threads=4), executor=LocalExecutor(fleet))
"""

from __future__ import annotations

import dataclasses
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, EdgeformerError
from ..profiling import ProfileConfig, ProfileResult
from ..records import SKIP, Record
from .client import AgentClient
from .wire import AgentInfo, parse_device, resolve_token

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from .executor import Executor


@dataclass(frozen=True, kw_only=True)
class FleetAgent(Record):
    """One agent of a fleet: its name, address, label, and where its token is."""

    name: str
    url: str
    label: str
    token_file: Path | None = None
    token: str | None = field(default=None, metadata=SKIP, repr=False, compare=False)

    def client(self, **options: Any) -> AgentClient:
        """An :class:`AgentClient` for this agent (``options``: tries, backoff_s, timeouts)."""
        return AgentClient(self.url, self.token, **options)


@dataclass(frozen=True, kw_only=True)
class Fleet(Record):
    """Agents by name and label; :meth:`load` reads a fleet file."""

    agents: tuple[FleetAgent, ...]

    @classmethod
    def load(cls, path: str | Path) -> Fleet:
        """Read and check a fleet file; resolve each agent's token (its ``token_file``, else the environment).

        Raises:
            ConfigError: not TOML, an unknown or missing key, a bad address, a duplicate name, no agents.
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"cannot read the fleet file {path}: {e.strerror or e}") from e
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid TOML ({e})") from e
        fleet = cls.from_dict(data, where=str(path))
        agents = []
        for agent in fleet.agents:
            token_file = agent.token_file
            if token_file is not None and not token_file.expanduser().is_absolute():
                token_file = path.parent / token_file
            agents.append(dataclasses.replace(agent, token=resolve_token(token_file=token_file)))
        fleet = cls(agents=tuple(agents))
        fleet.check(str(path))
        return fleet

    def each_agent(self) -> Fleet:
        """The same agents, each its own label (``label/name``): work for a label then runs on every board of it,
        and a board that dies fails its own row instead of handing its job to another."""
        return Fleet(agents=tuple(dataclasses.replace(a, label=f"{a.label}/{a.name}") for a in self.agents))

    def check(self, where: str = "fleet") -> None:
        problems = []
        if not self.agents:
            problems.append("no agents: add [[agents]] tables with name, url and label")
        names = [a.name for a in self.agents]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            problems.append(f"agent names used twice: {', '.join(twice)}")
        for a in self.agents:
            if not a.name or not a.label:
                problems.append(f"agent {a.name or a.url!r}: name and label must not be empty")
            try:
                parse_device(a.url)
            except ConfigError as e:
                problems.append(f"agent {a.name!r}: {e}")
        if problems:
            raise ConfigError(f"{where}: " + "; ".join(problems))

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a.label for a in self.agents))

    def with_label(self, label: str) -> tuple[FleetAgent, ...]:
        return tuple(a for a in self.agents if a.label == label)


@dataclass(frozen=True, kw_only=True)
class AgentHealth(Record):
    """What ``fleet status`` found at one agent: its info, or why there is none."""

    agent: FleetAgent
    info: AgentInfo | None = None
    problem: str | None = None
    exit_code: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def fleet_status(fleet: Fleet, tries: int = 2) -> list[AgentHealth]:
    """Ask every agent for its info at once (a down agent costs ``tries`` connection attempts, not a hang)."""

    def ask(agent: FleetAgent) -> AgentHealth:
        try:
            return AgentHealth(agent=agent, info=agent.client(tries=tries, backoff_s=0.2, timeout_s=10).info())
        except EdgeformerError as e:
            return AgentHealth(agent=agent, problem=f"{type(e).__name__}: {e}", exit_code=e.exit_code)

    with ThreadPoolExecutor(max_workers=min(16, len(fleet.agents))) as pool:
        return list(pool.map(ask, fleet.agents))


@dataclass(frozen=True, kw_only=True)
class FleetRow(Record):
    """One label (or, with ``--every-agent``, one agent) of ``profile --fleet``: the agent that answered and its
    result, or why there is none."""

    label: str
    agent: str | None = None
    result: ProfileResult | None = None
    problem: str | None = None
    error: EdgeformerError | None = field(default=None, metadata=SKIP, repr=False, compare=False)


def profile_on(agent: FleetAgent, item: tuple[str, str, ProfileConfig, str]) -> FleetRow:
    """Profile ``item = (label, model path, config, backend)`` on ``agent`` (module level: Ray pickles it)."""
    label, path, config, backend = item
    return FleetRow(label=label, agent=agent.name, result=agent.client().profile(path, config, backend=backend))


def fleet_profile(
    fleet: Fleet, model_path: str | Path, config: ProfileConfig, *, executor: Executor, backend: str = "auto"
) -> list[FleetRow]:
    """Profile one model on every label of the fleet (on one agent each; another of the label if it dies)."""
    items = [(label, str(model_path), config, backend) for label in fleet.labels]
    outcomes = executor.map(profile_on, items, device_for=lambda item: item[0], return_exceptions=True)
    rows = []
    for (label, *_), out in zip(items, outcomes, strict=True):
        if isinstance(out, EdgeformerError):
            rows.append(FleetRow(label=label, problem=f"{type(out).__name__}: {out}", error=out))
        elif isinstance(out, BaseException):
            raise out
        else:
            rows.append(out)
    return rows
