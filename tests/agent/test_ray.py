"""The Ray executor on a local Ray instance (``ray.init(num_cpus=2)``): the same results as the thread pool on
real agents, one job per agent at a time, and retries when a Ray worker or an agent dies."""

from __future__ import annotations

import functools
import itertools
import json
import os
import time
from pathlib import Path

import pytest

from edgeformer.agent import FleetAgent, LocalExecutor, RayExecutor
from edgeformer.agent.fleet import Fleet
from edgeformer.errors import AgentUnreachableError

from .conftest import FAST, TOKEN, Agents, make_model, write_artifact

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory):
    # the work functions below live in this test module, which Ray's workers import by name: tests/ on their path
    tests = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    agents = Agents(tmp_path_factory)
    a, b = agents.start(), agents.start()
    yield Fleet(
        agents=(
            FleetAgent(name="a", url=a.url, label="cpu", token=TOKEN),
            FleetAgent(name="b", url=b.url, label="cpu", token=TOKEN),
        )
    )
    agents.close()


def profile_summary(agent: FleetAgent, path: str) -> tuple:
    """What does not vary from run to run: which model, its inputs, the run count, the device, the size."""
    r = agent.client().profile(path, FAST)
    return r.artifact.sha, r.artifact.input_shapes, r.latency.runs, r.device.device_id, r.size_bytes


def test_ray_gives_the_same_results_as_the_thread_pool_on_real_agents(ray_instance, fleet, tmp_path):
    arts = [write_artifact(tmp_path / f"m{i}", make_model(seed=i)) for i in range(4)]
    paths = [str(a.path) for a in arts]
    local = LocalExecutor(fleet).map(profile_summary, paths, device_for=lambda p: "cpu")
    with RayExecutor(fleet) as ex:
        remote = ex.map(profile_summary, paths, device_for=lambda p: "cpu")
    assert remote == local
    assert [r[0] for r in remote] == [a.sha for a in arts]


def stamp(log_dir: str, agent: FleetAgent, item: int) -> int:
    """Note when this call ran on ``agent``, from inside the Ray worker."""
    start = time.monotonic()
    time.sleep(0.2)
    Path(log_dir, f"{agent.name}-{item}.json").write_text(json.dumps([start, time.monotonic()]))
    return item


def test_ray_runs_at_most_one_job_per_agent_at_a_time(ray_instance, fleet, tmp_path):
    with RayExecutor(fleet) as ex:
        out = ex.map(functools.partial(stamp, str(tmp_path)), list(range(6)), device_for=lambda i: "cpu")
    assert out == list(range(6))
    for name in ("a", "b"):
        spans = sorted(json.loads(f.read_text()) for f in tmp_path.glob(f"{name}-*.json"))
        assert spans, f"agent {name} got no work"
        assert all(end <= nxt for (_, end), (nxt, _) in itertools.pairwise(spans)), spans


def die_once(marker: str, agent: FleetAgent, item: int) -> int:
    """Kill this Ray worker process the first time (as a node that goes down would), answer the second time."""
    if not os.path.exists(marker):
        Path(marker).write_text("died once")
        os._exit(1)
    return item * 10


def test_a_ray_worker_that_dies_is_retried(ray_instance, fleet, tmp_path):
    with RayExecutor(fleet, task_retries=0) as ex:  # no retry by Ray itself: the scheduler's own retry
        out = ex.map(functools.partial(die_once, str(tmp_path / "marker")), [1, 2], device_for=lambda i: "cpu")
    assert out == [10, 20]
    assert (tmp_path / "marker").exists()


def unreachable_a(agent: FleetAgent, item: int) -> tuple[str, int]:
    if agent.name == "a":
        raise AgentUnreachableError(f"{agent.url} is unreachable (test)")
    return agent.name, item


def test_an_agent_death_under_ray_moves_its_items_to_the_other_agent(ray_instance, fleet):
    with RayExecutor(fleet) as ex:
        out = ex.map(unreachable_a, [1, 2, 3, 4], device_for=lambda i: "cpu")
    assert out == [("b", 1), ("b", 2), ("b", 3), ("b", 4)]
