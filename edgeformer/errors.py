"""The EdgeformerError hierarchy.

Every user-facing failure raises one of these. Each class also subclasses the matching builtin
(``ValueError``, ``FileNotFoundError``, ...) so callers that catch builtins keep working, and each
carries the CLI exit code of the fault contract, ``docs/faults.md`` (every case, its class and its test):

====  ==========================================================
0     ok
1     internal bug (traceback shown)
2     usage error: bad flag, unknown model, bad config or architecture, existing output
3     invalid input: model file, checkpoint, calibration data, runtime feeds
4     unsafe input refused: pickles needing globals, external data escaping its folder, agent token refused
5     target unavailable here: missing extra, no GPU, not macOS, device agent unreachable
6     quality gate failed: parity or accuracy budget
7     partial success: some targets of a multi-target run failed
130   interrupted
====  ==========================================================

Messages say what is wrong *and what to do*; the CLI prints ``str(error)`` as one line.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


class EdgeformerError(Exception):
    """Base class of every error edgeformer raises on purpose."""

    exit_code: int = 1

    def __str__(self) -> str:  # KeyError's repr-quoting would otherwise leak into CLI messages
        return str(self.args[0]) if self.args else self.__class__.__name__


# --- 2: usage -----------------------------------------------------------------------------------
class ConfigError(EdgeformerError, ValueError):
    """A flag, option or config value is wrong."""

    exit_code = 2


class UnknownModelError(ConfigError, LookupError):
    """A model name that is not in the zoo; the message suggests close matches."""

    @classmethod
    def for_name(cls, name: str, known: Iterable[str]) -> UnknownModelError:
        return cls(f"unknown model {name!r}{did_you_mean(name, known)}; run `edgeformer models list` to see the zoo.")


class InvalidArchError(ConfigError):
    """An elastic architecture with one or more invalid fields; ``problems`` lists every one."""

    def __init__(self, problems: Sequence[str], arch_name: str = "architecture") -> None:
        self.problems = list(problems)
        super().__init__(f"invalid {arch_name}: " + "; ".join(self.problems))


class OutputExistsError(ConfigError, FileExistsError):
    """The output exists (pass --overwrite) or equals an input (choose another --out)."""


class SearchInfeasibleError(ConfigError):
    """No architecture in the search space meets the requested budget (reserved: no such search exists yet)."""


# --- 3: invalid input ---------------------------------------------------------------------------
class InvalidInputError(EdgeformerError, ValueError):
    """Input data or files are malformed."""

    exit_code = 3


class ModelFileError(InvalidInputError):
    """A model file is missing, truncated, empty, of the wrong type, or fails the checker."""


class WeightsError(InvalidInputError):
    """A checkpoint whose keys or shapes do not match the architecture."""

    @classmethod
    def mismatch(
        cls, missing: Sequence[str], unexpected: Sequence[str], wrong_shape: Sequence[str], source: str = "checkpoint"
    ) -> WeightsError:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {', '.join(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {', '.join(unexpected)}")
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} mis-shaped: {', '.join(wrong_shape)}")
        err = cls(
            f"{source} does not match the architecture ({'; '.join(parts)}); "
            "check the model name and architecture overrides, nothing was loaded."
        )
        err.missing, err.unexpected, err.wrong_shape = list(missing), list(unexpected), list(wrong_shape)
        return err


class CalibrationError(InvalidInputError):
    """Calibration or evaluation data is empty, unreadable, or numerically unusable."""


class InputMismatchError(InvalidInputError):
    """Runtime feeds whose names, ranks, shapes, dtypes or layout do not match the model."""


class DynamicShapeError(InvalidInputError):
    """A dynamic axis has no concrete size where one is needed."""


class RemoteJobError(InvalidInputError):
    """A job failed on a device agent (the runtime refused, crashed on or timed out on the model); the message
    carries the device's own."""


class LatencyTableError(InvalidInputError):
    """A latency table that cannot answer: another device, a missing block, a corrupt file."""


# --- 4: unsafe input ----------------------------------------------------------------------------
class UnsafeInputError(EdgeformerError, PermissionError):
    """Input refused because reading it could run code or touch files outside its folder."""

    exit_code = 4


class AgentAuthError(UnsafeInputError):
    """A device agent refused the bearer token (none given, or the wrong one)."""


# --- 5: unavailable here ------------------------------------------------------------------------
class BackendUnavailableError(EdgeformerError, RuntimeError):
    """A backend, extra, provider or hardware that this machine does not have."""

    exit_code = 5


class AgentUnreachableError(BackendUnavailableError):
    """A device agent did not answer after the retries (down, wrong address), or lost a job (it died mid-job)."""


class DiskFullError(EdgeformerError, OSError):
    """The disk (or quota) filled up mid-write; the partial output was removed, the previous one is intact.
    Not a ``BackendUnavailableError``: bench must not show it as a row this machine cannot run."""

    exit_code = 5


# --- 6: quality gates ---------------------------------------------------------------------------
class QualityGateError(EdgeformerError, RuntimeError):
    """A result was produced but failed a fidelity or accuracy gate."""

    exit_code = 6


class ParityError(QualityGateError):
    """Exported outputs differ from torch beyond tolerance; ``failures`` lists each output."""

    def __init__(self, message: str, failures: Sequence[object] = ()) -> None:
        self.failures = list(failures)
        super().__init__(message)


class AccuracyBudgetError(QualityGateError):
    """No placement met the accuracy budget."""


# --- 7: partial ---------------------------------------------------------------------------------
class PartialFailureError(EdgeformerError):
    """Some targets of a multi-target run failed; the rest succeeded and were written."""

    exit_code = 7


def did_you_mean(name: str, known: Iterable[str], n: int = 3) -> str:
    """Return ``"; did you mean 'a', 'b'?"`` for close matches, or ``""``."""
    matches = difflib.get_close_matches(name, list(known), n=n, cutoff=0.5)
    return f"; did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
