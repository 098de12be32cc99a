"""Latency tables measured on a device through its agent: `build_table(device="agent://…")`, a table that answers
only for that device, validation timed there too, and `latency build --fleet` making one table per label."""

from __future__ import annotations

import dataclasses

import pytest
from cli.conftest import cli  # tests/ is on sys.path
from nas.conftest import FAST, tiny_space  # noqa: F401 (a fixture)

from edgeformer.agent import AgentClient
from edgeformer.errors import AgentUnreachableError, LatencyTableError
from edgeformer.nas import LatencyModel, build_table, local_device, read_table, validate

from .conftest import TOKEN
from .test_fleet import write_fleet


def test_a_table_built_through_an_agent_is_that_devices_table(tiny_space, start_agent, tmp_path):  # noqa: F811
    agent = start_agent()
    url = f"agent://127.0.0.1:{agent.port}"
    table = build_table(
        tiny_space, threads=1, device=url, token=TOKEN, out=tmp_path / "t.json", whole_models=3, timing=FAST
    )
    assert table.complete and table.correction is not None
    assert table.device.host == url and table.device.options == ("allow_spinning=default",)
    # the same machine, but measured through the agent's sessions: not interchangeable with a local table
    with pytest.raises(LatencyTableError, match="allow_spinning"):
        LatencyModel.load(tmp_path / "t.json", device=local_device("ort", 1, "fp32"))
    report = validate(
        tmp_path / "t.json", 3, timing=FAST, token=TOKEN, space=tiny_space
    )  # timed where the table was measured
    assert report.samples == 3 and all(r.measured_ms > 0 for r in report.rows)
    agent.kill()
    with pytest.raises(AgentUnreachableError):
        build_table(tiny_space, threads=1, device=url, token=TOKEN, out=tmp_path / "t2.json", timing=FAST)


@pytest.mark.slow
def test_latency_build_on_a_fleet_makes_one_table_per_label(tiny_space, start_agent, tmp_path):  # noqa: F811
    a, b, c = start_agent(), start_agent(), start_agent()
    fleet = write_fleet(
        tmp_path / "fleet.toml",
        ("a", f"agent://127.0.0.1:{a.port}", "board-a"),
        ("b", f"agent://127.0.0.1:{b.port}", "board-b"),
        ("c", f"agent://127.0.0.1:{c.port}", "board-a"),  # board-a's table is split between a and c
    )
    proc = cli(
        "latency",
        "build",
        "digits_shvit",
        "--width-step",
        "32",
        "--threads",
        "1",
        "--whole",
        "3",
        "--rounds",
        "2",
        "--fleet",
        str(fleet),
        "--out",
        str(tmp_path / "tables"),
    )
    assert proc.returncode == 0, proc.stderr
    one, two = (read_table(tmp_path / "tables" / f"{x}.json") for x in ("board-a", "board-b"))
    assert one.complete and two.complete and one.correction is not None and two.correction is not None
    assert one.device.host in (f"agent://127.0.0.1:{a.port}", f"agent://127.0.0.1:{c.port}")
    assert two.device.host == f"agent://127.0.0.1:{b.port}"
    assert set(one.entries) == set(two.entries)
    # both agents of board-a timed part of its table
    done = {x: AgentClient(f"agent://127.0.0.1:{x.port}", token=TOKEN).info().jobs.done for x in (a, b, c)}
    assert done[a] > 0 and done[c] > 0 and done[b] > 0, done
    assert dataclasses.replace(one.device, host="x") == dataclasses.replace(two.device, host="x")
