"""``edgeformer profile A --compare B``: artifacts timed side by side, ratios with intervals, the A/A check."""

from __future__ import annotations

import json

from profiling.conftest import write_artifact  # tests/ is on sys.path

from .conftest import cli


def test_profile_compare_times_both_with_intervals_and_an_a_a_check(tmp_path):
    a = write_artifact(tmp_path / "a", ("batch", 3, 32, 32))
    b = write_artifact(tmp_path / "b", ("batch", 3, 32, 32))
    args = ("profile", str(a.path), "--compare", str(b.path), "--threads", "1", "--min-time", "0.3", "--rounds", "4")
    done = cli(*args, "--warmup", "1", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    first, second = result["rows"]
    assert first["path"] == str(a.path) and first["vs_first"] is None
    assert second["vs_first"]["a"] == str(b.path) and second["vs_first"]["b"] == str(a.path)
    assert second["vs_first"]["low"] <= second["vs_first"]["ratio"] <= second["vs_first"]["high"]
    for row in (first, second):
        assert row["ci_low_ms"] <= row["p50_ms"] <= row["ci_high_ms"]
        assert row["startup_ms"] > 0 and row["timed_with"] == "threads=1 · spinning off · kept open"
    verdict = result["verdict"]
    assert verdict["aa"]["b"] == f"{a.path} (A/A)" and verdict["aa"]["rounds"] == 4
    assert verdict["how"] in ("faster", "tie", "noisy")

    text = cli(*args, "--warmup", "1")
    assert text.returncode == 0, text.stderr
    assert "vs first [95 % CI]" in text.stdout and "A/A check: ratio" in text.stdout and "Verdict:" in text.stdout


def test_profile_compare_refuses_a_device_and_needs_two_artifacts(tmp_path):
    a = write_artifact(tmp_path / "a", ("batch", 3, 32, 32))
    done = cli("profile", str(a.path), "--compare", str(a.path), "--per-op")
    assert done.returncode == 2 and "--compare times here" in done.stderr
