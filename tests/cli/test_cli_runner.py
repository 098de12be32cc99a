"""The CLI in-process through typer's CliRunner: help, tables, JSON and exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edgeformer.cli.app import app
from edgeformer.cli.export import parse_overrides
from edgeformer.errors import ConfigError

runner = CliRunner()


def test_help_lists_every_verb_and_exit_codes():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for verb in ("models", "export", "profile", "bench", "predict"):
        assert verb in result.output
    assert "Exit codes" in result.output


def test_models_list_table_and_pattern():
    result = runner.invoke(app, ["models", "list", "shvit_*"])
    assert result.exit_code == 0, result.output
    assert "shvit_s4" in result.output and "efficientformer_l1" not in result.output


def test_models_list_json_has_published_figures():
    result = runner.invoke(app, ["models", "list", "efficientformer*", "--json"])
    rows = json.loads(result.stdout)
    l1 = next(r for r in rows if r["name"] == "efficientformer_l1")
    assert (l1["params_m"], l1["macs_g"]) == (12.3, 1.3)


def test_models_info_reports_measured_size():
    result = runner.invoke(app, ["models", "info", "efficientformerv2_s0", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["arch"]["num_classes"] == 1000
    assert abs(info["measured"]["macs_g"] - 0.40) / 0.40 < 0.03


def test_unknown_model_is_a_usage_error_with_json():
    result = runner.invoke(app, ["models", "info", "shvit_s5", "--json"])
    assert result.exit_code == 2
    err = json.loads(result.stdout)["error"]
    assert err["type"] == "UnknownModelError" and err["exit_code"] == 2


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["num_classes=10"], {"num_classes": 10}),
        (["depths=(1, 2)", "name=tiny"], {"depths": (1, 2), "name": "tiny"}),
    ],
)
def test_parse_overrides(items, expected):
    assert parse_overrides(items) == expected


def test_parse_overrides_rejects_missing_equals():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["num_classes"])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--format", "coreml", "--opset", "17"], "--opset does not apply to --format coreml"),
        (["--format", "coreml", "--no-optimize"], "--optimize does not apply to --format coreml"),
        (["--format", "tflite"], "unknown export format 'tflite'"),
    ],
)
def test_export_refuses_a_flag_its_format_does_not_take_instead_of_dropping_it(args, match, tmp_path):
    result = runner.invoke(app, ["export", "shvit_s1", *args, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and match in result.output
    assert not (tmp_path / "x").exists()


def test_export_configs_come_from_the_format_table():
    from edgeformer.export import build_config
    from edgeformer.export.coreml import CoreMlConfig
    from edgeformer.export.onnx import OnnxExportConfig

    assert build_config("onnx", opset=17, dynamo=False) == OnnxExportConfig(opset=17, dynamo=False)
    assert build_config("coreml", batch=2) == CoreMlConfig(batch=2)
    with pytest.raises(ConfigError, match="did you mean 'opset'"):
        build_config("onnx", opst=17)
