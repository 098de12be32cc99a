"""Fleets: the TOML file, ``fleet status``, ``profile --fleet``, and a job moved to another agent of the same
label when its agent is SIGKILLed mid-job."""

from __future__ import annotations

import json
import signal

import pytest
from cli.conftest import assert_one_line_error, cli  # tests/ is on sys.path

from edgeformer.agent import Fleet, LocalExecutor, fleet_profile
from edgeformer.errors import ConfigError
from edgeformer.profiling import ProfileConfig

from .conftest import TOKEN
from .test_faults import in_thread, job_processes, wait_for


def write_fleet(path, *agents: tuple[str, str, str], token_file: str | None = "agent.token"):
    lines = []
    for name, url, label in agents:
        lines += ["[[agents]]", f'name = "{name}"', f'url = "{url}"', f'label = "{label}"']
        if token_file:
            lines.append(f'token_file = "{token_file}"')
    path.write_text("\n".join(lines) + "\n")
    (path.parent / "agent.token").write_text(TOKEN + "\n")
    return path


def test_a_fleet_file_loads_with_tokens_relative_to_it(tmp_path):
    fleet = Fleet.load(
        write_fleet(
            tmp_path / "fleet.toml",
            ("pi-1", "agent://10.0.0.21:8765", "pi5-cpu"),
            ("pi-2", "agent://10.0.0.22:8765", "pi5-cpu"),
            ("orin", "agent://[::1]:1", "orin"),
        )
    )
    assert fleet.labels == ("pi5-cpu", "orin")
    assert [a.name for a in fleet.with_label("pi5-cpu")] == ["pi-1", "pi-2"]
    assert {a.token for a in fleet.agents} == {TOKEN}
    assert TOKEN not in json.dumps(fleet.to_dict()) and TOKEN not in repr(fleet)  # never written, never shown


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            '[[agents]]\nname = "a"\nurl = "agent://h:1"\nlabel = "x"\ntoken = "s3cret-s3cret-s3cret"\n',
            "unknown key 'token'",
        ),
        ('[[agents]]\nname = "a"\nurl = "agent://h:1"\n', "missing required key 'label'"),
        ('[[agents]]\nname = "a"\nurl = "http://h:1"\nlabel = "x"\n', "not an agent address"),
        (
            '[[agents]]\nname = "a"\nurl = "agent://h:1"\nlabel = "x"\n[[agents]]\nname = "a"\nurl = "agent://g:1"\n'
            'label = "x"\n',
            "agent names used twice: a",
        ),
        ("agents = []\n", "no agents"),
        ("[[agents]\n", "not valid TOML"),
        (
            '[[agents]]\nname = "a"\nurl = "agent://h:1"\nlabel = "x"\ntoken_file = "nope.token"\n',
            "cannot read the token file",
        ),
    ],
)
def test_a_bad_fleet_file_is_a_usage_error_naming_the_problem(tmp_path, text, needle):
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        Fleet.load(path)


def test_fleet_status_shows_each_card_and_exits_7_when_an_agent_is_down(start_agent, tmp_path):
    a, b = start_agent(), start_agent()
    path = write_fleet(
        tmp_path / "fleet.toml", ("a", a.url, "cpu"), ("b", b.url, "cpu"), ("gone", "agent://127.0.0.1:9", "cpu")
    )
    proc = cli("fleet", "status", str(path))
    assert_one_line_error(proc, 7, "1 of 3 agents did not answer: gone: AgentUnreachableError")
    assert proc.stdout.count("✓") == 2 and "✗" in proc.stdout

    path = write_fleet(tmp_path / "fleet.toml", ("a", a.url, "cpu"), ("b", b.url, "cpu"))
    proc = cli("fleet", "status", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert [h["agent"]["name"] for h in found] == ["a", "b"]
    assert all(h["info"]["device"]["device_id"] and h["problem"] is None for h in found)


def test_profile_on_a_fleet_prints_one_row_per_device(start_agent, tiny, tmp_path):
    a, b = start_agent(), start_agent()
    path = write_fleet(tmp_path / "fleet.toml", ("a", a.url, "pi5-cpu"), ("b", b.url, "jetson-orin"))
    proc = cli("profile", str(tiny.path), "--fleet", str(path), "--runs", "5", "--warmup", "1")
    assert proc.returncode == 0, proc.stderr
    for header in ("device", "p50 ms", "p90 ms", "p99 ms", "stable"):
        assert header in proc.stdout
    assert "pi5-cpu" in proc.stdout and "jetson-orin" in proc.stdout
    # one row per label, each from its own agent, in the fleet file's order
    assert proc.stdout.index("pi5-cpu") < proc.stdout.index("jetson-orin")
    proc = cli("profile", str(tiny.path), "--fleet", str(path), "--device", a.url)
    assert_one_line_error(proc, 2, "--device and --fleet are exclusive")


def test_every_agent_gives_each_board_of_a_label_its_row(start_agent, tiny, tmp_path):
    a, b = start_agent(), start_agent()
    path = write_fleet(tmp_path / "fleet.toml", ("a", a.url, "pi5-cpu"), ("b", b.url, "pi5-cpu"))
    proc = cli("profile", str(tiny.path), "--fleet", str(path), "--every-agent", "--runs", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["label"], r["agent"]) for r in rows] == [("pi5-cpu/a", "a"), ("pi5-cpu/b", "b")]
    assert all(r["result"]["latency"]["runs"] >= 5 for r in rows)
    one = cli("profile", str(tiny.path), "--fleet", str(path), "--runs", "5", "--json")
    assert [r["label"] for r in json.loads(one.stdout)] == ["pi5-cpu"]  # by label: one row
    assert_one_line_error(cli("profile", str(tiny.path), "--every-agent"), 2, "--every-agent goes with --fleet")


def test_an_agent_killed_mid_job_hands_the_job_to_another_of_its_label(start_agent, tiny, tmp_path):
    a, b = start_agent(), start_agent()
    fleet = Fleet.load(write_fleet(tmp_path / "fleet.toml", ("a", a.url, "cpu"), ("b", b.url, "cpu")))
    config = ProfileConfig(warmup=1, min_time_s=3.0)  # long enough to be killed in the middle

    thread, box = in_thread(lambda: fleet_profile(fleet, str(tiny.path), config, executor=LocalExecutor(fleet)))
    agents = {"a": a, "b": b}
    busy = wait_for(lambda: [n for n, ag in agents.items() if job_processes(ag)], what="a running job")[0]
    agents[busy].kill(signal.SIGKILL)
    thread.join(120)
    (row,) = box["result"]
    survivor = "b" if busy == "a" else "a"
    assert row.error is None and row.agent == survivor, row
    assert row.result.latency.runs >= 5 and row.result.artifact.sha == tiny.sha


@pytest.mark.slow
def test_profile_on_a_fleet_through_ray_prints_the_same_table(start_agent, tiny, tmp_path):
    """``--executor ray`` from the CLI: a local Ray instance started by the command (about 10 s of start-up)."""
    pytest.importorskip("ray")
    a, b = start_agent(), start_agent()
    path = write_fleet(tmp_path / "fleet.toml", ("a", a.url, "pi5-cpu"), ("b", b.url, "jetson-orin"))
    proc = cli("profile", str(tiny.path), "--fleet", str(path), "--runs", "5", "--executor", "ray", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["label"], r["agent"]) for r in rows] == [("pi5-cpu", "a"), ("jetson-orin", "b")]
    assert all(r["result"]["artifact"]["sha"] == tiny.sha for r in rows)
