"""benchmarks/browser.py end to end on one model, with few runs: the table and the JSON (slow: it quantizes)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow


def test_the_browser_benchmark_prints_the_table_and_writes_json(
    shared_dir, digits_artifact, samples, chromium_path, web_root, tmp_path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "digits_shvit").symlink_to(digits_artifact)  # reuse this run's export; the INT8 is built here
    (work / "samples").symlink_to(samples)
    out = tmp_path / "browser.json"
    args = ["--models", "digits_shvit", "--runs", "3", "--warmup", "1", "--rounds", "1", "--work", str(work)]
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "browser.py"),
            *args,
            "--chromium",
            chromium_path,
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "browser 1t" in done.stdout and "python 2t" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["precision"]) for r in rows] == [("digits_shvit", "fp32"), ("digits_shvit", "int8")]
    for r in rows:
        assert set(r["p50_ms"]) == {"browser_1t", "browser_2t", "python_1t", "python_2t"}
        assert all(v > 0 for v in r["p50_ms"].values())
        assert r["top1_agree"] and r["cosine"] > 0.99
    assert rows[0]["max_abs"] < 1e-4  # fp32: the browser equals Python onnxruntime
