"""Run a native runtime on a model in a child process first, so a crash in its C++ cannot end the caller.

The backends share the mechanics (a ``python -c`` child, a timeout, the signal's name, the last line of stderr);
each one words its own error, since what a crash means differs (a malformed file, a runtime bug on this CPU).
The device agent runs every profiling job the same way (``edgeformer.agent.jobs``).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

from ..errors import ConfigError

PROBE_TIMEOUT_ENV = "EDGEFORMER_PROBE_TIMEOUT"
DEFAULT_PROBE_TIMEOUT = 300.0


def probe_timeout() -> float:
    """Seconds a probe child may take before the model is reported as hanging: ``$EDGEFORMER_PROBE_TIMEOUT``,
    default 300 (a large model on a slow device takes minutes to load; a hang takes forever)."""
    raw = os.environ.get(PROBE_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_PROBE_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{PROBE_TIMEOUT_ENV}={raw!r}: expected a positive number of seconds (default 300).")
    return value


class ChildFailure(NamedTuple):
    """How a child run ended badly: ``timeout`` (detail: the limit), ``signal`` (``SIGSEGV``) or ``exit`` (the
    last line of its stderr, or the exit code)."""

    kind: Literal["timeout", "signal", "exit"]
    detail: str


def run_in_child(
    script: str,
    args: Sequence[str],
    timeout: float,
    *,
    own_group: bool = False,
    env: Mapping[str, str] | None = None,
) -> tuple[str, ChildFailure | None]:
    """``python -c script *args`` in a child process: its stdout, or how it failed.

    Args:
        script: the child's code.
        args: its ``sys.argv[1:]``.
        timeout: seconds before the child is killed (``ChildFailure("timeout", ...)``).
        own_group: start the child in a process group of its own and kill the whole group on a timeout, so
            that processes it started (a probe of its own) cannot outlive it.
        env: the child's environment (default: this process's).
    """
    with subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=own_group,
        env=None if env is None else dict(env),
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except BaseException as e:  # the timeout, or Ctrl-C here: the child must not outlive the call
            _kill(proc, own_group)
            proc.communicate()
            if isinstance(e, subprocess.TimeoutExpired):
                return "", ChildFailure("timeout", f"{timeout:g} s")
            raise
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        return "", ChildFailure("signal", name)
    if proc.returncode != 0:
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        return "", ChildFailure("exit", lines[-1] if lines else f"exit {proc.returncode}")
    return stdout, None


def _kill(proc: subprocess.Popen, group: bool) -> None:
    if group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.kill()
