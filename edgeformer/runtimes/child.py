"""Run a native runtime on a model in a child process first, so a crash in its C++ cannot end the caller.

The backends share the mechanics (a ``python -c`` child, a timeout, the signal's name, the last line of stderr);
each one words its own error, since what a crash means differs (a malformed file, a runtime bug on this CPU).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Literal, NamedTuple


class ChildFailure(NamedTuple):
    """How a child run ended badly: ``timeout`` (detail: the limit), ``signal`` (``SIGSEGV``) or ``exit`` (the
    last line of its stderr, or the exit code)."""

    kind: Literal["timeout", "signal", "exit"]
    detail: str


def run_in_child(script: str, args: Sequence[str], timeout: float) -> tuple[str, ChildFailure | None]:
    """``python -c script *args`` in a child process: its stdout, or how it failed."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return "", ChildFailure("timeout", f"{timeout:g} s")
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        return "", ChildFailure("signal", name)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return "", ChildFailure("exit", lines[-1] if lines else f"exit {proc.returncode}")
    return proc.stdout, None
