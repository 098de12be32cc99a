"""The agent's commands as a user types them: ``agent token``, ``agent info``, ``profile --device``."""

from __future__ import annotations

import json
import stat

from cli.conftest import assert_one_line_error, cli  # tests/ is on sys.path

from .conftest import TOKEN


def test_agent_token_writes_a_private_random_token_once(tmp_path):
    path = tmp_path / "agent.token"
    assert cli("agent", "token", "-o", str(path)).returncode == 0
    token = path.read_text().strip()
    assert len(token) >= 40 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert_one_line_error(cli("agent", "token", "-o", str(path)), 2, "exists; pass --overwrite")
    assert cli("agent", "token", "-o", str(path), "--overwrite").returncode == 0
    assert path.read_text().strip() != token


def test_profile_on_a_device_prints_the_table_and_the_json_record(start_agent, tiny, tmp_path):
    agent = start_agent()
    token_file = tmp_path / "t"
    token_file.write_text(TOKEN)
    proc = cli("profile", str(tiny.path), "--device", agent.url, "--token-file", str(token_file), "--runs", "5")
    assert proc.returncode == 0, proc.stderr
    assert f"({agent.url})" in proc.stdout and "p50 / p90 / p99 ms" in proc.stdout
    proc = cli(
        "profile", str(tiny.path), "--device", agent.url, "--token-file", str(token_file), "--runs", "5", "--json"
    )
    result = json.loads(proc.stdout)
    assert result["latency"]["runs"] == 5 and result["artifact"]["sha"] == tiny.sha

    proc = cli("agent", "info", agent.url, "--token-file", str(token_file))
    assert proc.returncode == 0 and "device id" in proc.stdout and "ort (fp32" in proc.stdout
    assert result["device"]["device_id"] in proc.stdout and "2 done" in proc.stdout


def test_fleet_options_without_a_fleet_and_bad_addresses_are_usage_errors(tiny):
    assert_one_line_error(cli("profile", str(tiny.path), "--executor", "ray"), 2, "add --fleet FILE")
    assert_one_line_error(cli("profile", str(tiny.path), "--device", "http://h:1"), 2, "not an agent address")
