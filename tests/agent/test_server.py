"""The agent as a user runs it: a subprocess on loopback, talked to over real HTTP.

Round trip (upload, profile, typed result), the token, and every untrusted body answered with a 4xx JSON error
that leaves the store as it was.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import uuid

import pytest

from edgeformer.agent import AgentClient, remote_profile
from edgeformer.errors import AgentAuthError, ConfigError, InvalidInputError
from edgeformer.profiling import ProfileResult, device_card

from .conftest import FAST, TOKEN, Agents, make_model, store_files, write_artifact


def request(agent, method: str, path: str, body: bytes | None = None, token: str | None = TOKEN, headers=None):
    """One raw HTTP exchange: (status, parsed JSON, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=30)
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    conn.request(method, f"/v1{path}", body=body, headers=h)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    return resp.status, (json.loads(raw) if raw else None), resp.headers


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    """One agent for the module (token required, 64 KiB uploads at most)."""
    agents = Agents(tmp_path_factory)
    yield agents.start("--max-upload-mb", "0.0625")
    agents.close()


def test_upload_profile_and_result_round_trip_typed(agent, tiny):
    result = remote_profile(agent.url, tiny.path, FAST, backend="ort", token=TOKEN)

    assert isinstance(result, ProfileResult)
    assert result.latency.runs == 5 and result.config == FAST
    assert result.artifact.sha == tiny.sha and result.artifact.path == str(tiny.model_path)
    assert result.artifact.input_shapes == {"x": (1, 16)}
    # measured there: the device card is the agent's, which on loopback is this machine
    assert result.device.device_id == device_card(backend="ort").device_id
    assert ProfileResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    # the model and its manifest are stored by sha256; a second run uploads nothing new
    before = store_files(agent.store)["blobs"]
    assert tiny.manifest.files["model.onnx"] in before
    remote_profile(agent.url, tiny.path, FAST, token=TOKEN)
    assert store_files(agent.store)["blobs"] == before


def test_a_bare_model_file_is_profiled_alone(agent, tiny):
    result = AgentClient(agent.url, TOKEN).profile(tiny.model_path, FAST)
    assert result.artifact.input_shapes == {"x": (1, 16)} and result.artifact.path == str(tiny.model_path)


def test_info_has_the_device_card_backends_precisions_and_versions(agent):
    info = AgentClient(agent.url, TOKEN).info()
    assert info.device.device_id == device_card(backend="ort").device_id
    ort = info.backend("ort")
    assert ort is not None and ort.reason is None and "fp32" in ort.precisions and "int8" in ort.precisions
    assert {"edgeformer", "onnxruntime", "python"} <= set(info.versions)
    assert info.auth and info.store.max_upload_bytes == 64 * 1024 and info.jobs.capacity == 8


def test_missing_and_wrong_tokens_are_refused_with_401_json(agent, tiny):
    for token, needle in ((None, "needs a bearer token"), ("x" * 26, "wrong token")):
        status, body, headers = request(agent, "GET", "/info", token=token)
        assert status == 401 and needle in body["error"]["message"]
        assert headers["WWW-Authenticate"].startswith("Bearer")
    with pytest.raises(AgentAuthError, match="no token was sent"):
        AgentClient(agent.url, None).profile(tiny.path, FAST)
    with pytest.raises(AgentAuthError, match="check --token-file"):
        AgentClient(agent.url, "y" * 20).profile(tiny.path, FAST)
    # health needs no token (a liveness probe), and says nothing else
    assert request(agent, "GET", "/health", token=None)[:2] == (200, {"ok": True})


def test_oversized_upload_is_413_and_nothing_is_written(agent, tmp_path):
    body = b"\0" * (64 * 1024 + 1)
    sha = hashlib.sha256(body).hexdigest()
    before = store_files(agent.store)
    status, reply, _ = request(agent, "PUT", f"/models/{sha}", body)
    assert status == 413 and "limit" in reply["error"]["message"]
    # chunked, so the agent cannot refuse on the header alone: it stops counting at the limit
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=30)
    conn.request(
        "PUT",
        f"/v1/models/{sha}",
        body=iter([body[:40000], body[40000:]]),
        headers={"Authorization": f"Bearer {TOKEN}"},
        encode_chunked=True,
    )
    resp = conn.getresponse()
    assert resp.status == 413 and "limit" in json.loads(resp.read())["error"]["message"]
    conn.close()
    assert store_files(agent.store) == before
    # the client refuses before sending a byte, naming the limit
    big = tmp_path / "big.onnx"
    big.write_bytes(body)
    with pytest.raises(InvalidInputError, match="takes at most 65536 bytes per file"):
        AgentClient(agent.url, TOKEN)._send_missing({"big.onnx": (big, sha)})


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/jobs", b"{not json", 400, "not valid JSON"),
        ("POST", "/jobs", b"[1, 2]", 400, "expected a JobSpec object"),
        (
            "POST",
            "/jobs",
            json.dumps({"id": "a" * 32, "files": {}, "owner": "me"}).encode(),
            400,
            "unknown key 'owner'",
        ),
        ("POST", "/jobs", json.dumps({"id": "a" * 32, "files": {"m.onnx": 7}}).encode(), 400, "expected str"),
        (
            "POST",
            "/jobs",
            json.dumps({"id": "a" * 32, "files": {"x": "b" * 64}, "config": {"runs": "5"}}).encode(),
            400,
            "JobSpec.config.runs: expected int",
        ),
        (
            "POST",
            "/jobs",
            json.dumps({"id": "a" * 32, "files": {"x": "b" * 64}, "config": {"runs": -1}}).encode(),
            400,
            "runs must be between",
        ),
        ("POST", "/jobs", b"{" + b" " * 70000 + b"}", 413, "JSON body larger"),
        ("PUT", "/models/../../etc/passwd", b"x", 404, "Not Found"),
        ("PUT", "/models/NOT-A-SHA", b"x", 400, "64 lowercase hex"),
        ("PUT", "/models/" + "0" * 64, b"some bytes", 422, "nothing stored"),
        ("GET", "/jobs/zzz", None, 400, "32 lowercase hex"),
        ("GET", "/jobs/" + "c" * 32, None, 404, "no job"),
        ("DELETE", "/models/" + "0" * 64, None, 405, "Method Not Allowed"),
    ],
)
def test_untrusted_bodies_get_a_4xx_json_error_and_nothing_is_written(agent, method, path, body, status, needle):
    before = store_files(agent.store)
    got, reply, _ = request(agent, method, path, body)
    assert got == status, reply
    assert reply["error"]["status"] == status and needle in reply["error"]["message"], reply
    assert store_files(agent.store) == before


@pytest.mark.parametrize(
    "name",
    ["../model.onnx", "/etc/passwd", "a/../../b", ".hidden", "a//b", "a\\b", "dir/", "", "x" * 600, "a/" * 9 + "b"],
)
def test_path_tricks_in_file_names_are_refused(agent, tiny, name):
    sha = tiny.manifest.files["model.onnx"]
    spec = {"id": uuid.uuid4().hex, "files": {name: sha}, "main": name}
    before = store_files(agent.store)
    status, reply, _ = request(agent, "POST", "/jobs", json.dumps(spec).encode())
    assert status == 400 and "file name" in reply["error"]["message"]
    assert store_files(agent.store) == before


def test_a_job_naming_files_the_agent_lacks_is_404_listing_them(agent):
    missing = "d" * 64
    spec = {"id": uuid.uuid4().hex, "files": {"m.onnx": missing}, "main": "m.onnx"}
    status, reply, _ = request(agent, "POST", "/jobs", json.dumps(spec).encode())
    assert status == 404 and reply["error"]["missing"] == [missing]


def test_the_agent_refuses_a_non_loopback_address_without_a_token(start_agent):
    with pytest.raises(RuntimeError, match=r"refusing to serve on 0\.0\.0\.0 without a token") as e:
        start_agent("--host", "0.0.0.0", token=None)
    assert "exited 2" in str(e.value)


def test_a_short_token_is_refused_before_serving(start_agent):
    with pytest.raises(RuntimeError, match="use at least 16"):
        start_agent(token="short")


def test_a_bad_device_address_is_a_usage_error():
    for bad in ("http://x:1", "agent://", "agent://h:99999", "agent://h:1/path"):
        with pytest.raises(ConfigError, match="agent"):
            AgentClient(bad)


def test_latency_fn_times_model_files_on_the_agent_for_the_placement_search(agent, tiny, tmp_path):
    client = AgentClient(agent.url, TOKEN)
    before = client.info(refresh=True).jobs.done
    other = write_artifact(tmp_path / "other", make_model(seed=5))
    times = client.latency_fn(FAST, rounds=2)([tiny.model_path, other.model_path])
    assert len(times) == 2 and all(t > 0 for t in times)
    assert client.info(refresh=True).jobs.done - before == 4  # two models, two rounds, all on the device


def test_a_second_agent_on_the_same_store_refuses_to_start(agent, start_agent):
    with pytest.raises(RuntimeError, match="another agent is using the store") as e:
        start_agent(store=agent.store)
    assert "exited 2" in str(e.value)
