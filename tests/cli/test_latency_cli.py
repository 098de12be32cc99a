"""`edgeformer latency build|predict|validate` end to end in child processes, and their one-line errors."""

from __future__ import annotations

import dataclasses
import json

import pytest

from edgeformer.nas import SearchSpace
from edgeformer.nas.table import read_table, write_table

from .conftest import assert_one_line_error, cli


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("latency") / "dshvit.json"
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
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_build_writes_a_complete_table_and_says_so(built):
    out, proc = built
    table = read_table(out)
    assert table.complete and table.correction is not None
    assert f"{len(table.entries)} blocks of digits_shvit" in proc.stdout and "correction:" in proc.stdout


def test_predict_prints_the_breakdown_and_json(built, tmp_path):
    out, _ = built
    proc = cli("latency", "predict", str(out), "digits_shvit")
    assert proc.returncode == 0, proc.stderr
    assert "stages.2.blocks.0" in proc.stdout and "predicted:" in proc.stdout
    space = SearchSpace.of("digits_shvit", width_step=32)
    (tmp_path / "arch.json").write_text(json.dumps(space.smallest().to_dict()))
    proc = cli(
        "latency",
        "predict",
        str(out),
        "digits_shvit",
        "--arch",
        str(tmp_path / "arch.json"),
        "--json",
        "--device",
        "local",
    )
    assert proc.returncode == 0, proc.stderr
    small, full = (
        json.loads(proc.stdout),
        json.loads(cli("latency", "predict", str(out), "digits_shvit", "--json").stdout),
    )
    assert 0 < small["predicted_ms"] < full["predicted_ms"]
    assert small["breakdown"]["rows"][0]["path"] == "front"


def test_validate_scores_the_table_and_both_baselines(built):
    out, _ = built
    proc = cli("latency", "validate", str(out), "--samples", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["metrics"]) == {"table", "table_raw", "macs", "params"} and report["samples"] == 3
    assert all(r["measured_ms"] == pytest.approx(r["raw_ms"] * r["drift"]) for r in report["rows"])
    assert all(r["measured_ms"] > 0 for r in report["rows"])


def test_errors_are_one_line_with_their_exit_codes(built, tmp_path):
    out, _ = built
    assert_one_line_error(cli("latency", "predict", str(out), "shvit_s4"), 2, "not shvit_s4")
    assert_one_line_error(cli("latency", "predict", str(tmp_path / "none.json"), "digits_shvit"), 3, "no latency table")
    (tmp_path / "bad.json").write_text('{"schema": 1, "mod')
    assert_one_line_error(cli("latency", "predict", str(tmp_path / "bad.json"), "digits_shvit"), 3, "corrupt")
    table = read_table(out)
    elsewhere = dataclasses.replace(table, device=dataclasses.replace(table.device, device_id="feedfacecafe"))
    write_table(tmp_path / "pi.json", elsewhere)
    assert_one_line_error(
        cli("latency", "predict", str(tmp_path / "pi.json"), "digits_shvit", "--device", "local"), 3, "feedfacecafe"
    )
    assert_one_line_error(cli("latency", "validate", str(tmp_path / "pi.json")), 3, "measured on")
    assert_one_line_error(
        cli("latency", "build", "digits_shvit", "--precision", "fp8", "--out", str(tmp_path / "x")), 2, "precision"
    )
    build = ("latency", "build", "digits_shvit", "--out", str(tmp_path / "x"))
    assert_one_line_error(cli(*build, "--shard", "half"), 2, "--shard takes I/N")
    assert_one_line_error(cli(*build, "--shard", "3/2"), 2, "0 <= I < N, got 3/2")
    (tmp_path / "f.toml").write_text('[[agents]]\nname = "a"\nurl = "agent://127.0.0.1:9"\nlabel = "x"\n')
    assert_one_line_error(cli(*build, "--shard", "0/2", "--fleet", str(tmp_path / "f.toml")), 2, "without --fleet")
    assert not (tmp_path / "x").exists()
    (tmp_path / "arch.json").write_text("[1, 2]")
    assert_one_line_error(
        cli("latency", "predict", str(out), "digits_shvit", "--arch", str(tmp_path / "arch.json")), 3, "ARCH.json"
    )


def test_profile_per_op_puts_measured_blocks_beside_the_prediction(built, tmp_path):
    out, _ = built
    assert cli("export", "digits_shvit", "-o", str(tmp_path / "a")).returncode == 0
    proc = cli("profile", str(tmp_path / "a"), "--per-op", "--threads", "1", "--min-time", "0.2", "--table", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "measured (ORT profiler) vs predicted" in proc.stdout
    rows = [ln for ln in proc.stdout.splitlines() if "stages.2.blocks.1" in ln]
    assert any(ln.count(".") >= 4 for ln in rows)  # a measured and a predicted figure on the block's row


def test_slim_end_to_end_and_its_usage_errors(tmp_path):
    from nas.conftest import synthetic_table  # this machine's fingerprint, made-up block costs (tests/ is on sys.path)

    from edgeformer.nas import LatencyModel
    from edgeformer.nas.fit import fit_correction

    space = SearchSpace.of("digits_shvit")
    table = synthetic_table(space)
    write_table(tmp_path / "t.json", dataclasses.replace(table, correction=fit_correction(table, space)))
    lm = LatencyModel.load(tmp_path / "t.json")
    floor, top = lm.predict_ms(space.smallest()), lm.predict_ms(space.parent)
    budget = round(floor + 0.6 * (top - floor), 3)
    proc = cli(
        "slim",
        "digits_shvit",
        "--table",
        str(tmp_path / "t.json"),
        "--budget-ms",
        str(budget),
        "--epochs",
        "0",
        "--no-compare",
        "--out",
        str(tmp_path / "out"),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    (b,) = report["budgets"]
    assert b["slim"]["predicted_ms"] <= budget and b["met"] == (b["slim"]["measured_ms"] <= budget * 1.05)
    assert (tmp_path / "out" / f"budget-{budget:g}ms" / "model" / "model.onnx").exists()
    assert (tmp_path / "out" / "pareto.png").exists() and (tmp_path / "out" / "report.html").exists()

    assert_one_line_error(
        cli(
            "slim",
            "digits_shvit",
            "--table",
            str(tmp_path / "t.json"),
            "--budget-ms",
            str(round(floor / 2, 3)),
            "--out",
            str(tmp_path / "o2"),
        ),
        2,
        f"{floor:.3f} ms",
    )
    assert_one_line_error(
        cli("slim", "shvit_s1", "--table", str(tmp_path / "t.json"), "--budget-ms", "1", "--out", str(tmp_path / "o3")),
        3,
        "not shvit_s1",
    )
    assert_one_line_error(
        cli(
            "slim",
            "digits_shvit",
            "--table",
            str(tmp_path / "t.json"),
            "--budget-ms",
            "5",
            "--search",
            "random",
            "--out",
            str(tmp_path / "o4"),
        ),
        2,
        "greedy or evolution",
    )
    base = (
        "slim",
        "digits_shvit",
        "--table",
        str(tmp_path / "t.json"),
        "--budget-ms",
        "5",
        "--out",
        str(tmp_path / "o5"),
    )
    assert_one_line_error(cli(*base, "--executor", "dask"), 2, "choose local or ray")
    assert_one_line_error(cli(*base, "--ray-address", "auto"), 2, "--ray-address goes with --executor ray")
    assert not (tmp_path / "o5").exists()
