"""Shared helpers of the CLI tests: the real ``edgeformer`` command in a child process, and its error contract."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# a shvit_s1 small enough to export in seconds; the CLI's --arch overrides, as a user writes them
TINY_SHVIT = (
    "--resolution",
    "64",
    "--arch",
    "embed_dims=(32, 48, 64)",
    "--arch",
    "depths=(1, 1, 1)",
    "--arch",
    "partial_dims=(8, 12, 16)",
    "--arch",
    "mlp_ratios=((2.0,), (2.0,), (2.0,))",
    "--arch",
    "attention=((False,), (True,), (True,))",
    "--arch",
    "num_classes=10",
)


def cli(*args: str, cwd: Path | None = None, timeout: float = 600, cache: bool = True) -> subprocess.CompletedProcess:
    """Run ``edgeformer ARGS`` as a user would; ``cache=False`` makes every step really run."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1"}
    if not cache:
        env["EDGEFORMER_NO_CACHE"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "edgeformer.cli.app", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, needle: str) -> None:
    """Exit ``code``, no traceback, and ``needle`` on the first line of stderr (the documented error contract)."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error ("), proc.stderr
    assert needle in proc.stderr.splitlines()[0], proc.stderr
