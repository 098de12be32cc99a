"""Errors found while the command line is parsed honour `--json` like every other error (exit 2)."""

from __future__ import annotations

import json

import pytest
from cli.conftest import cli  # tests/ is on sys.path

from .conftest import FIXTURE


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("predict", str(FIXTURE), "x.npy", "--threads", "0"), "--threads"),
        (("profile", str(FIXTURE), "--batch", "x"), "--batch"),
        (("predict", str(FIXTURE), "x.npy", "--no-such-flag"), "--no-such-flag"),
        (("models", "info", "--bogus"), "--bogus"),
    ],
)
def test_bad_option_value_with_json_is_a_json_error_and_exit_2(args, needle):
    proc = cli(*args, "--json")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    err = json.loads(proc.stdout)["error"]
    assert err["exit_code"] == 2 and needle in err["message"], err
    assert "Traceback" not in proc.stderr and needle in proc.stderr  # the usage message stays on stderr


def test_bad_option_value_without_json_prints_nothing_on_stdout():
    proc = cli("predict", str(FIXTURE), "x.npy", "--threads", "0")
    assert proc.returncode == 2 and proc.stdout == "", (proc.stdout, proc.stderr)


def test_json_after_double_dash_is_an_argument_not_the_flag(tmp_path):
    proc = cli("predict", str(FIXTURE), "--threads", "0", "--", "--json")
    assert proc.returncode == 2 and proc.stdout == ""
