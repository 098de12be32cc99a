"""The fleet scheduler of the executors: one job per agent at a time, items in order, dead agents' items moved
to the others of their label. Work functions here are plain functions of (agent, item), as a user passes."""

from __future__ import annotations

import threading
import time

import pytest

from edgeformer.agent import Fleet, FleetAgent, LocalExecutor, make_executor
from edgeformer.errors import AgentUnreachableError, ConfigError, RemoteJobError


def fleet_of(*spec: tuple[str, str]) -> Fleet:
    return Fleet(
        agents=tuple(
            FleetAgent(name=n, url=f"agent://127.0.0.1:{9000 + i}", label=label) for i, (n, label) in enumerate(spec)
        )
    )


class Recorder:
    """A work function that notes, per agent, how many of its calls overlap."""

    def __init__(self, dead: frozenset[str] = frozenset(), fail_item: int | None = None) -> None:
        self.dead, self.fail_item = dead, fail_item
        self.lock = threading.Lock()
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self.calls: list[tuple[str, int]] = []

    def __call__(self, agent: FleetAgent, item: int) -> tuple[str, int]:
        with self.lock:
            self.calls.append((agent.name, item))
            self.in_flight[agent.name] = self.in_flight.get(agent.name, 0) + 1
            self.max_in_flight[agent.name] = max(self.max_in_flight.get(agent.name, 0), self.in_flight[agent.name])
        try:
            time.sleep(0.01)
            if agent.name in self.dead:
                raise AgentUnreachableError(f"{agent.url} is unreachable")
            if item == self.fail_item:
                raise RemoteJobError(f"job failed on {agent.url}: item {item}")
            return agent.label, item * item
        finally:
            with self.lock:
                self.in_flight[agent.name] -= 1


def test_items_come_back_in_order_with_one_job_per_agent_at_a_time():
    fleet = fleet_of(("a", "cpu"), ("b", "cpu"), ("c", "gpu"))
    work = Recorder()
    items = list(range(12))
    with LocalExecutor(fleet) as ex:
        out = ex.map(work, items, device_for=lambda i: "gpu" if i % 3 == 0 else "cpu")
    assert out == [("gpu" if i % 3 == 0 else "cpu", i * i) for i in items]
    assert set(work.max_in_flight.values()) == {1}  # never two jobs on one device
    assert {name for name, _ in work.calls} == {"a", "b", "c"}  # both cpu agents took work
    assert sorted(i for _, i in work.calls) == items  # each item ran once


def test_a_dead_agents_items_go_to_another_agent_of_the_same_label():
    fleet = fleet_of(("a", "cpu"), ("b", "cpu"))
    work = Recorder(dead=frozenset({"a"}))
    out = LocalExecutor(fleet).map(work, list(range(6)), device_for=lambda i: "cpu")
    assert out == [("cpu", i * i) for i in range(6)]
    assert sum(name == "a" for name, _ in work.calls) <= 1  # dropped after its first failure


def test_when_every_agent_of_a_label_is_dead_its_items_fail_and_the_others_finish():
    fleet = fleet_of(("a", "cpu"), ("b", "cpu"), ("c", "gpu"))
    work = Recorder(dead=frozenset({"a", "b"}))
    out = LocalExecutor(fleet).map(
        work, [0, 1, 2, 3], device_for=lambda i: "gpu" if i == 3 else "cpu", return_exceptions=True
    )
    assert all(isinstance(o, AgentUnreachableError) for o in out[:3])
    assert out[3] == ("gpu", 9)
    with pytest.raises(AgentUnreachableError):
        LocalExecutor(fleet).map(work, [0], device_for=lambda i: "cpu")


def test_an_items_own_failure_is_not_retried_elsewhere():
    fleet = fleet_of(("a", "cpu"), ("b", "cpu"))
    work = Recorder(fail_item=2)
    out = LocalExecutor(fleet).map(work, [0, 1, 2, 3], device_for=lambda i: "cpu", return_exceptions=True)
    assert isinstance(out[2], RemoteJobError) and out[3] == ("cpu", 9)
    assert sum(i == 2 for _, i in work.calls) == 1
    with pytest.raises(RemoteJobError, match="item 2"):
        LocalExecutor(fleet).map(work, [0, 1, 2, 3], device_for=lambda i: "cpu")


def test_a_label_the_fleet_lacks_is_refused_before_any_work():
    work = Recorder()
    with pytest.raises(ConfigError, match="no agent has the label npu; the fleet's labels: cpu"):
        LocalExecutor(fleet_of(("a", "cpu"))).map(work, [0, 1], device_for=lambda i: "npu" if i else "cpu")
    assert work.calls == []
    with pytest.raises(ConfigError, match="needs a fleet"):
        LocalExecutor().map(work, [0], device_for=lambda i: "cpu")


def test_without_a_device_it_is_a_plain_parallel_map():
    out = LocalExecutor(max_workers=3).map(lambda x: 10 // x, [1, 2, 0, 5], return_exceptions=True)
    assert out[:2] == [10, 5] and isinstance(out[2], ZeroDivisionError) and out[3] == 2


def test_make_executor_names_the_choices():
    assert isinstance(make_executor("local"), LocalExecutor)
    with pytest.raises(ConfigError, match="choose local or ray"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="--ray-address goes with --executor ray"):
        make_executor("local", ray_address="auto")
