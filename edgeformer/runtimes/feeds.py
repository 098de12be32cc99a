"""Feed checking: catch wrong names, ranks, shapes, dtypes and layouts before a native runtime does.

Native runtimes answer a bad feed with an error about an internal node (or, for some backends, a
crash). :func:`check_feeds` compares every feed with the model's inputs first and raises one
:class:`~edgeformer.errors.InputMismatchError` whose message is a table of expected vs given for
*every* problem, so a user fixes them all in one go.

Example::

    feeds = check_feeds(session.inputs, {"pixels": x})  # contiguous arrays, or InputMismatchError
    shape = concrete_shape(session.inputs[0], batch=8)   # (8, 3, 224, 224), or DynamicShapeError
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import DynamicShapeError, InputMismatchError, InvalidInputError, did_you_mean
from .base import TensorInfo

_CHANNEL_COUNTS = (1, 3, 4)  # channel dims for which a channels-last guess is meaningful


@dataclass(frozen=True)
class FeedProblem:
    """One row of the mismatch table: which input, what the model expects, what was given, what is wrong."""

    name: str
    expected: str
    given: str
    problem: str


def check_feeds(inputs: Sequence[TensorInfo], feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check ``feeds`` against the model's ``inputs`` and return them as C-contiguous arrays.

    Nothing is cast: a float64 array for a float32 input is an error, because a silent cast hides a
    preprocessing bug (and doubles memory traffic on the device).

    Args:
        inputs: the model's inputs (``Session.inputs``).
        feeds: input name to numpy array.

    Returns:
        The same feeds, each made C-contiguous (a no-op for arrays that already are).

    Raises:
        InputMismatchError: unknown or missing names, wrong rank, static dim, dtype or layout; the
            message ends with a table listing every problem.
        InvalidInputError: a float feed holding NaN or Inf (the tensor is named).
    """
    if not isinstance(feeds, Mapping):
        raise InputMismatchError(
            f"feeds must be a dict of input name to numpy array, got {type(feeds).__name__}; "
            f"the model takes {', '.join(repr(i.name) for i in inputs)}."
        )
    expected = {i.name: i for i in inputs}
    problems: list[FeedProblem] = []
    symbols: dict[str, tuple[int, str]] = {}  # symbolic dim -> (size, first input that set it)
    out: dict[str, np.ndarray] = {}
    for name, value in feeds.items():
        info = expected.get(name)
        if not isinstance(value, np.ndarray):
            problems.append(
                FeedProblem(str(name), _fmt_info(info), type(value).__name__, "not a numpy array; pass np.asarray(x)")
            )
            continue
        if info is None:
            unknown = sorted(set(expected) - set(feeds))
            hint = did_you_mean(str(name), unknown) or f"; the model takes {', '.join(repr(n) for n in expected)}"
            problems.append(FeedProblem(str(name), "-", _fmt_array(value), f"unknown input{hint}"))
            continue
        problems.extend(_check_one(info, value, symbols))
        out[name] = np.ascontiguousarray(value)
    for name, info in expected.items():
        if name not in feeds:
            problems.append(FeedProblem(name, _fmt_info(info), "-", "missing"))
    if problems:
        raise mismatch_error(problems)
    for name, value in out.items():
        _check_finite(name, value)
    return out


def _check_one(info: TensorInfo, x: np.ndarray, symbols: dict[str, tuple[int, str]]) -> list[FeedProblem]:
    row = _fmt_info(info), _fmt_array(x)
    problems = []
    if x.dtype.name != info.dtype:
        problems.append(
            FeedProblem(
                info.name, *row, f"dtype {x.dtype.name}, expected {info.dtype}; cast with .astype({info.dtype})"
            )
        )
    if x.ndim != len(info.shape):
        problems.append(FeedProblem(info.name, *row, f"rank {x.ndim}, expected {len(info.shape)}"))
        return problems
    layout = _layout_hint(info.shape, x.shape)
    if layout:
        problems.append(FeedProblem(info.name, *row, layout))
        return problems
    for axis, (want, got) in enumerate(zip(info.shape, x.shape, strict=True)):
        if isinstance(want, int) and want != got:
            problems.append(FeedProblem(info.name, *row, f"dim {axis} is {got}, expected {want}"))
        elif isinstance(want, str):  # a symbol shared by several inputs (e.g. "batch") must agree
            size, first = symbols.setdefault(want, (got, info.name))
            if size != got:
                problems.append(
                    FeedProblem(info.name, *row, f"dim {axis} ({want}) is {got}, but {first!r} gave {want}={size}")
                )
    return problems


def _layout_hint(want: Sequence[int | str | None], got: Sequence[int]) -> str:
    """Name a channels-last/channels-first mix-up of a rank-4 feed, or return ``""``."""
    if len(want) != 4:
        return ""
    # the model wants NCHW: a feed (N, H, W, C) with C at the end and something else at axis 1
    if _static_channels(want[1]) and got[3] == want[1] and got[1] != want[1] and _fits(want, (0, 3, 1, 2), got):
        return "channels-last (NHWC) given, the model wants NCHW; pass x.transpose(0, 3, 1, 2)"
    if _static_channels(want[3]) and got[1] == want[3] and got[3] != want[3] and _fits(want, (0, 2, 3, 1), got):
        return "channels-first (NCHW) given, the model wants NHWC; pass x.transpose(0, 2, 3, 1)"
    return ""


def _static_channels(dim: int | str | None) -> bool:
    return isinstance(dim, int) and dim in _CHANNEL_COUNTS


def _fits(want: Sequence[int | str | None], perm: tuple[int, ...], got: Sequence[int]) -> bool:
    """Whether ``got`` transposed by ``perm`` would satisfy every static dim of ``want``."""
    moved = [got[p] for p in perm]
    return all(not isinstance(w, int) or w == g for w, g in zip(want, moved, strict=True))


def _check_finite(name: str, x: np.ndarray) -> None:
    if x.dtype.kind not in "fc":
        return
    finite = np.isfinite(x)  # SIMD and ~3x faster than sum/min/max shortcuts on a 224x224 image
    if finite.all():
        return
    n_nan = int(np.isnan(x).sum())
    n_inf = int(x.size - finite.sum()) - n_nan
    first = tuple(int(i) for i in np.argwhere(~finite)[0])
    raise InvalidInputError(
        f"input {name!r} holds {n_nan} NaN and {n_inf} Inf value(s) (first at index {first}); "
        "the preprocessing or the source data is broken, fix it before running the model."
    )


def mismatch_error(problems: Sequence[FeedProblem]) -> InputMismatchError:
    """An :class:`InputMismatchError`: a one-line summary, then a table of expected vs given per problem."""
    header = FeedProblem("input", "expected", "given", "problem")
    rows = [header, *problems]
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("name", "expected", "given")]
    lines = [
        "  "
        + "  ".join(v.ljust(w) for v, w in zip((r.name, r.expected, r.given), widths, strict=True))
        + "  "
        + r.problem
        for r in rows
    ]
    summary = f"{len(problems)} input problem(s): the feeds do not match the model's inputs; fix them and run again."
    err = InputMismatchError(summary + "\n" + "\n".join(lines))
    err.problems = list(problems)
    return err


def _fmt_shape(shape: Sequence[int | str | None]) -> str:
    dims = ["?" if d is None else str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _fmt_info(info: TensorInfo | None) -> str:
    return "-" if info is None else f"{_fmt_shape(info.shape)} {info.dtype}"


def _fmt_array(x: np.ndarray) -> str:
    return f"{_fmt_shape(x.shape)} {x.dtype.name}"


def concrete_shape(info: TensorInfo, batch: int = 1, resolution: int | None = None) -> tuple[int, ...]:
    """A fully static shape for ``info``: the leading symbolic dim becomes ``batch``.

    Args:
        info: a model input.
        batch: size for a symbolic (or unnamed) axis 0.
        resolution: size for symbolic spatial axes (2 and 3) of a rank-4 image input.

    Raises:
        DynamicShapeError: another axis is symbolic; the message lists each symbolic dim and the flag
            that sets it.
    """
    dims: list[int] = []
    unresolved: list[str] = []
    for axis, d in enumerate(info.shape):
        if isinstance(d, int) and d >= 0:
            dims.append(d)
        elif axis == 0:
            dims.append(batch)
        elif resolution is not None and len(info.shape) == 4 and axis in (2, 3):
            dims.append(resolution)
        else:
            dims.append(-1)
            unresolved.append(f"{d or '?'} (axis {axis})")
    if unresolved:
        spatial = len(info.shape) == 4 and all(not isinstance(info.shape[a], int) for a in (2, 3))
        how = (
            "pass --resolution (resolution= in the API) to set them"
            if spatial
            else "re-export with a static shape (--resolution sets image sides, --batch the batch)"
        )
        raise DynamicShapeError(
            f"input {info.name!r} {_fmt_shape(info.shape)} has symbolic dim(s) {', '.join(unresolved)} with no "
            f"concrete size; {how}."
        )
    return tuple(dims)
