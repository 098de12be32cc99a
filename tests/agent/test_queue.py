"""One job at a time, a bounded queue: a full queue is 503 with Retry-After, and many clients at once all get
their own answer exactly once."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from edgeformer.agent import AgentClient

from .conftest import FAST, TOKEN, Agents, make_model, write_artifact
from .test_faults import job_processes, wait_for
from .test_server import request


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    agents = Agents(tmp_path_factory)
    yield agents.start("--queue", "2", "--job-timeout", "2")
    agents.close()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return [write_artifact(root / f"m{i}", make_model(seed=i)) for i in range(8)]


def test_a_full_queue_answers_503_with_retry_after(agent, spin, tiny):
    client = AgentClient(agent.url, TOKEN)
    client._send_missing(client._files(spin, True))
    client._send_missing(client._files(tiny, True))

    def spec(art):
        files = {name: sha for name, (_, sha) in client._files(art, True).items()}
        return json.dumps({"id": uuid.uuid4().hex, "files": files, "config": FAST.to_dict()}).encode()

    assert request(agent, "POST", "/jobs", spec(spin))[0] == 202  # runs until the 2 s job timeout
    wait_for(lambda: job_processes(agent), what="the spinning job")
    assert [request(agent, "POST", "/jobs", spec(tiny))[0] for _ in range(2)] == [202, 202]  # the queue: 2
    status, reply, headers = request(agent, "POST", "/jobs", spec(tiny))
    assert status == 503 and "queue is full" in reply["error"]["message"]
    assert 1 <= int(headers["Retry-After"]) <= 60


def test_eight_clients_at_once_each_get_their_own_answer_once(agent, models):
    before = AgentClient(agent.url, TOKEN).info(refresh=True).jobs
    results: dict[int, object] = {}
    errors: list[Exception] = []

    def run(i: int) -> None:
        try:  # each client uploads its own model; most find the queue full and wait as Retry-After says
            results[i] = AgentClient(agent.url, TOKEN).profile(models[i].path, FAST)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert errors == []
    assert sorted(results) == list(range(8))
    assert [results[i].artifact.sha for i in range(8)] == [m.sha for m in models]  # each its own model
    after = AgentClient(agent.url, TOKEN).info(refresh=True).jobs
    # the queue drained (the earlier test's jobs included) and exactly eight more jobs ran: none lost, none twice
    assert (after.queued, after.running) == (0, 0)
    assert after.done + after.failed - before.done - before.failed - before.queued - before.running == 8
