"""Jobs that go wrong on the device, and an agent that dies: the job fails with the reason, the agent goes on,
and a restarted agent never serves half a model.

The hanging model is a real ONNX graph (a Loop of 2**62 iterations) that onnxruntime runs until it is killed.
For the crash, no ONNX file was found that crashes onnxruntime 1.31 (deep graphs, nested If, recursive local
functions, malformed Einsum, huge allocations are all refused cleanly), so the job's process is sent SIGSEGV
while the runtime is inside that Loop: the same death a native bug causes, delivered by hand.
"""

from __future__ import annotations

import http.client
import signal
import threading
import time

import psutil
import pytest
from cli.conftest import assert_one_line_error, cli  # tests/ is on sys.path

from edgeformer.agent import AgentClient
from edgeformer.errors import RemoteJobError
from edgeformer.profiling import ProfileConfig

from .conftest import FAST, TOKEN, make_model, store_files, write_artifact

SPIN = ProfileConfig(warmup=1, runs=5)


def job_processes(agent) -> list[psutil.Process]:
    """The agent's job children (``job_main``), not its device-info child."""
    kids = psutil.Process(agent.proc.pid).children(recursive=True)
    return [p for p in kids if any("job_main" in part for part in _cmdline(p))]


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def wait_for(predicate, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout} s")


def in_thread(fn, *args):
    """Run ``fn(*args)`` in a thread; ``box["result"]`` or ``box["error"]`` once ``thread.join()`` returns."""
    box: dict = {}

    def run():
        try:
            box["result"] = fn(*args)
        except Exception as e:
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_a_model_that_hangs_the_runtime_times_out_and_the_agent_goes_on(start_agent, spin, tiny):
    agent = start_agent("--job-timeout", "3")
    client = AgentClient(agent.url, TOKEN)
    with pytest.raises(RemoteJobError, match=r"did not finish within 3 s .*hangs the runtime"):
        client.profile(spin.path, SPIN)
    assert job_processes(agent) == []  # the whole process group went with it
    assert client.profile(tiny.path, FAST).latency.runs == 5  # the next job is fine
    jobs = client.info(refresh=True).jobs
    assert (jobs.done, jobs.failed) == (1, 1)
    assert store_files(agent.store)["jobs"] == []


def test_a_job_whose_runtime_crashes_fails_alone_and_the_next_job_runs(start_agent, spin, tiny):
    agent = start_agent("--job-timeout", "120")
    client = AgentClient(agent.url, TOKEN)
    thread, box = in_thread(client.profile, spin.path, SPIN)
    (job,) = wait_for(lambda: job_processes(agent), what="the job's process")
    time.sleep(1.0)  # well inside onnxruntime's Loop by now (the session loads in well under a second)
    job.send_signal(signal.SIGSEGV)
    thread.join(60)
    assert isinstance(box.get("error"), RemoteJobError), box
    assert "the runtime crashed on the model (SIGSEGV)" in str(box["error"])
    assert agent.proc.poll() is None
    assert client.profile(tiny.path, FAST).artifact.sha == tiny.sha
    assert client.info(refresh=True).jobs.failed == 1


def test_an_agent_killed_mid_job_is_reported_by_the_client_with_exit_5(start_agent, spin):
    agent = start_agent("--job-timeout", "120")
    env_token = {"EDGEFORMER_AGENT_TOKEN": TOKEN}
    thread, box = in_thread(_cli_with_env, env_token, "profile", str(spin.path), "--device", agent.url, "--runs", "5")
    (job,) = wait_for(lambda: job_processes(agent), what="the job's process")
    agent.kill(signal.SIGKILL)
    # the job's process dies with the agent (PR_SET_PDEATHSIG): nothing keeps spinning on the device
    wait_for(lambda: not job.is_running() or job.status() == psutil.STATUS_ZOMBIE, 30, "the job's process to die")
    thread.join(120)
    proc = box["result"]
    assert_one_line_error(proc, 5, "went away while running job")


def _cli_with_env(env: dict[str, str], *args: str):
    import os

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # cli() copies os.environ when it starts the child, right away
    try:
        return cli(*args, timeout=300)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_a_restart_keeps_the_store_consistent(start_agent, tiny, tmp_path):
    agent = start_agent()
    client = AgentClient(agent.url, TOKEN)
    client.profile(tiny.path, FAST)
    stored = store_files(agent.store)["blobs"]
    model_sha = tiny.manifest.files["model.onnx"]

    # an upload cut by SIGKILL halfway: bytes are in tmp/, never in blobs/
    other = write_artifact(tmp_path / "other", make_model(seed=7, width=64))
    body = other.model_path.read_bytes()
    sha = other.manifest.files["model.onnx"]
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=30)
    conn.putrequest("PUT", f"/v1/models/{sha}")
    conn.putheader("Authorization", f"Bearer {TOKEN}")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body[: len(body) // 2])
    wait_for(lambda: store_files(agent.store)["tmp"], what="the half upload in tmp/")
    agent.kill(signal.SIGKILL)
    conn.close()
    assert store_files(agent.store)["blobs"] == stored

    agent.restart()
    assert store_files(agent.store) == {"blobs": stored, "tmp": [], "jobs": []}
    client = AgentClient(agent.url, TOKEN)
    status, _, _ = client._request("GET", f"/models/{sha}")
    assert status == 404  # the half-written model is not there to be served
    assert client.profile(tiny.path, FAST).artifact.sha == tiny.sha  # the complete one is, without re-upload

    # a stored model damaged on disk while the agent was down: dropped at first use and asked for again
    agent.kill(signal.SIGKILL)
    blob = agent.store / "blobs" / model_sha
    blob.write_bytes(blob.read_bytes()[:100])
    agent.restart()
    client = AgentClient(agent.url, TOKEN)
    assert client.profile(tiny.path, FAST).artifact.sha == tiny.sha
    assert blob.read_bytes() == tiny.model_path.read_bytes()


def test_an_unreachable_agent_is_exit_5_after_the_retries(tiny):
    proc = cli("profile", str(tiny.path), "--device", "agent://127.0.0.1:9", "--runs", "5")
    assert_one_line_error(proc, 5, "agent://127.0.0.1:9 is unreachable")
    assert "after 4 tries" in proc.stderr


def test_a_refused_token_is_exit_4_and_a_failed_job_exit_3_with_the_devices_message(start_agent, tmp_path):
    agent = start_agent()
    token_file = tmp_path / "agent.token"
    token_file.write_text("w" * 30 + "\n")
    # a symbolic feature dim: the artifact loads here, and profile() on the device refuses to guess it
    art = write_artifact(tmp_path / "dyn", make_model(seed=3, feature_dim="features"))
    proc = cli("profile", str(art.path), "--device", agent.url, "--token-file", str(token_file))
    assert_one_line_error(proc, 4, f"{agent.url} refused the request (wrong token)")

    token_file.write_text(TOKEN + "\n")
    proc = cli("profile", str(art.path), "--device", agent.url, "--token-file", str(token_file), "--runs", "3")
    assert_one_line_error(proc, 3, f"job failed on {agent.url}: ")
    assert "symbolic dim(s) features" in proc.stderr.splitlines()[0]  # the device's own DynamicShapeError
