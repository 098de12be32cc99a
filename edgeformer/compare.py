"""How close a candidate model's outputs are to a reference's: the one measure of parity, fidelity and bench.

Each output is compared on each sample in float64 and reduced to its worst case: the smallest cosine
(which catches a flipped sign or permuted classes that a loose error bound lets through), the largest
absolute error, and the largest error relative to the reference's scale (``max |reference|``, so one
tolerance serves logits of any magnitude), plus top-1 agreement for ``(batch, classes)`` outputs.

One rule for zeros and non-finite values (:func:`cosine`): two numerically zero arrays agree (1.0), one
against a non-zero array does not (0.0). A NaN anywhere, or an Inf the reference lacks at that place,
makes an output unusable: its figures are NaN, ``problem`` says why and every gate fails. Gate through
:meth:`Agreement.meets`, never on a bare figure: ``nan < min_cosine`` is False. What a manifest keeps of a
comparison is :meth:`Agreement.to_record`: a :class:`CheckRecord`, the figures rounded plus the gate applied.

Example::

    agreement = compare_outputs(reference, run_all(ort_runner("build/l1/model.onnx"), feeds))
    if reason := agreement.meets(min_cosine=0.99999, rtol=1e-4):
        raise ParityError(f"the export differs from torch: {reason}", failures=agreement.failing(rtol=1e-4))
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelFileError
from .records import Record

Feeds = Mapping[str, np.ndarray]
Outputs = Mapping[str, np.ndarray] | Sequence[np.ndarray]  # by name, or in the model's output order
Runner = Callable[[Feeds], dict[str, np.ndarray]]

# float32's resolution at unit scale: outputs come from float32 kernels, so a magnitude below it next to
# an exact zero is rounding noise, and dividing by a smaller scale would turn that noise into huge ratios.
_TINY = float(np.finfo(np.float32).eps)
_NAN = float("nan")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays, flattened, in float64.

    Two numerically zero arrays (every ``|x| <= float32 eps``) give 1.0, exactly one gives 0.0, and any
    NaN or Inf gives NaN. Rounding can push a dot product past the norms, so the result is clipped to [-1, 1].

    Raises:
        ValueError: the arrays have different sizes.
    """
    x, y = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if x.size != y.size:
        raise ValueError(f"cosine of arrays with {x.size} and {y.size} elements")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return _NAN
    if np.array_equal(x, y):  # exactly 1, not 1 - 1e-16 from the norms' rounding: bit-exact gates use 1.0
        return 1.0
    x_zero, y_zero = np.abs(x).max(initial=0.0) <= _TINY, np.abs(y).max(initial=0.0) <= _TINY
    if x_zero or y_zero:
        return 1.0 if x_zero and y_zero else 0.0
    return float(np.clip(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)), -1.0, 1.0))


@dataclass(frozen=True, kw_only=True)
class OutputAgreement:
    """One output's worst case over the samples; figures are NaN when ``problem`` is set."""

    name: str
    cosine: float  # smallest over the samples
    cosine_mean: float
    max_abs: float
    max_rel: float  # max_abs / max |reference|, per sample
    top1_agreement: float | None  # share of rows with the reference's arg-max; 2-D outputs only
    samples: int
    worst: str = ""  # the sample with the problem, else the one with the smallest cosine
    problem: str | None = None  # shape mismatch, NaN/Inf, missing from the candidate

    def meets(
        self, *, min_cosine: float | None = None, atol: float | None = None, rtol: float | None = None
    ) -> str | None:
        """:meth:`Agreement.meets` for this output alone: ``"logits: cosine 0.9876543 < 0.999 (worst on s1)"``."""
        if self.problem:
            return f"{self.name}: {self.problem}" + (f" on {self.worst}" if self.worst else "")
        failed = []
        if min_cosine is not None and self.cosine < min_cosine:
            failed.append(f"cosine {self.cosine:.7f} < {min_cosine}")
        if atol is not None and self.max_abs > atol:
            failed.append(f"max_abs {self.max_abs:.3g} > {atol}")
        if rtol is not None and self.max_rel > rtol:
            failed.append(f"max_rel {self.max_rel:.3g} > {rtol}")
        return f"{self.name}: {', '.join(failed)} (worst on {self.worst})" if failed else None


@dataclass(frozen=True, kw_only=True)
class Agreement:
    """A candidate's agreement with the reference: the worst figure of any output, and each output's detail."""

    cosine: float
    cosine_mean: float  # the worst output's mean over the samples
    max_abs: float
    max_rel: float
    top1_agreement: float | None  # the first classifier-like output's (models put their logits first)
    samples: int  # feeds, or batch rows with compare_outputs(..., rows=True)
    outputs: tuple[OutputAgreement, ...]
    on: str = ""  # which samples, for reports ("8 held-out samples of imagenet_val/")
    problem: str | None = None

    def meets(
        self, *, min_cosine: float | None = None, atol: float | None = None, rtol: float | None = None
    ) -> str | None:
        """Why the candidate fails the gate, every failing output listed, or None if it passes.

        Args:
            min_cosine: smallest allowed cosine; None skips the check.
            atol: largest allowed absolute error; None skips it.
            rtol: largest allowed error relative to the reference's scale (what ``ExportHints.atol`` bounds).
        """
        if not self.outputs:
            return self.problem or "no outputs compared"
        reasons = [r for o in self.outputs if (r := o.meets(min_cosine=min_cosine, atol=atol, rtol=rtol))]
        return "; ".join(reasons) or None

    def failing(self, **gate: float | None) -> tuple[OutputAgreement, ...]:
        """The outputs that fail ``meets(**gate)``, e.g. for ``ParityError(failures=...)``."""
        return tuple(o for o in self.outputs if o.meets(**gate))

    def to_record(
        self,
        *,
        sample_names: Sequence[str] = (),
        min_cosine: float | None = None,
        atol: float | None = None,
        rtol: float | None = None,
        ndigits: int = 6,
    ) -> CheckRecord:
        """The written form: figures rounded so that manifests stay byte-identical across runs despite float
        noise, NaN and Inf as None (JSON has neither; ``problem`` says why), ``outputs`` keyed by name, and the
        gate (as :meth:`meets` takes it) with whether it passed; no gate leaves ``ok`` None (recorded only)."""
        gate = {"min_cosine": min_cosine, "atol": atol, "rtol": rtol}
        figures = {f.name: _rounded(getattr(self, f.name), ndigits) for f in fields(self) if f.name != "outputs"}
        outputs = {
            o.name: OutputFigures(
                **{f.name: _rounded(getattr(o, f.name), ndigits) for f in fields(o) if f.name != "name"}
            )
            for o in self.outputs
        }
        ok = self.meets(**gate) is None if any(v is not None for v in gate.values()) else None
        return CheckRecord(**figures, outputs=outputs, sample_names=tuple(sample_names), ok=ok, **gate)

    def to_dict(self, ndigits: int = 6) -> dict[str, Any]:
        """The figures of :meth:`to_record` alone (no gate), as JSON (reports, bench rows)."""
        written = self.to_record(ndigits=ndigits).to_dict()
        return {f.name: written[f.name] for f in fields(self)}


@dataclass(frozen=True, kw_only=True)
class OutputFigures(Record):
    """One output's :class:`OutputAgreement` as written: rounded, NaN/Inf as None."""

    cosine: float | None = None
    cosine_mean: float | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    top1_agreement: float | None = None
    samples: int = 0
    worst: str = ""
    problem: str | None = None


@dataclass(frozen=True, kw_only=True)
class CheckRecord(Record):
    """A comparison as a manifest keeps it (``parity``, ``fidelity``, ``extra["source_check"]``).

    The figures are :class:`Agreement`'s, rounded (None: not measurable, ``problem`` says why; or not measured,
    ``skipped`` says why). The gate is what the check was held to: ``ok`` is whether it passed, None when there
    was no gate (record only) or nothing was measured. Made by :meth:`Agreement.to_record`, or
    ``CheckRecord(skipped=...)`` when the check could not run here.

    Example::

        record = agreement.to_record(sample_names=list(inputs), min_cosine=0.99999, rtol=1e-4)
        manifest = dataclasses.replace(manifest, parity=record)
    """

    cosine: float | None = None  # the worst output's smallest cosine over the samples
    cosine_mean: float | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    top1_agreement: float | None = None
    samples: int = 0
    on: str = ""  # which samples, for reports
    problem: str | None = None
    outputs: dict[str, OutputFigures] = field(default_factory=dict)
    sample_names: tuple[str, ...] = ()
    ok: bool | None = None
    min_cosine: float | None = None
    atol: float | None = None  # bound on max_abs
    rtol: float | None = None  # bound on max_rel (what ExportHints.atol and --atol bound)
    skipped: str | None = None  # why nothing was measured (not on this OS or device, check turned off)
    warning: str | None = None  # a figure no gate refused but nobody should deploy without a look
    other_files: dict[str, CheckRecord] = field(default_factory=dict)  # the same check on other model files


def compare_outputs(
    reference: Sequence[Outputs],
    candidate: Sequence[Outputs],
    *,
    rows: bool = False,
    sample_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    on: str = "",
) -> Agreement:
    """Compare the candidate's outputs with the reference's, sample by sample, output by output.

    Args:
        reference, candidate: one entry per sample (e.g. from :func:`run_all` on the same feeds), each
            ``{output name: array}`` or a list in output order. Outputs only the candidate has are ignored.
        rows: score each batch row (axis 0) as its own sample, so that one bad row is not averaged away
            by the others and ``samples`` counts rows.
        sample_names: names for messages; ``"0"``, ``"1"``, ... by default.
        output_names: names of positional outputs; ``"output0"``, ... by default.
        on: what the samples are, carried into the result for reports.

    Raises:
        ValueError: ``reference`` and ``candidate`` hold different numbers of samples.
    """
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference samples but {len(candidate)} candidate samples")
    names = list(sample_names) if sample_names is not None else [str(i) for i in range(len(reference))]
    units: dict[str, list[tuple[str, float, float, float, str | None]]] = {}
    top1: dict[str, list[int]] = {}  # output name: [rows that agree, rows]
    for sample, ref_outs, got_outs in zip(names, reference, candidate, strict=True):
        got_named = _named(got_outs, output_names)
        for name, ref in _named(ref_outs, output_names).items():
            ref = np.asarray(ref)
            got = np.asarray(got_named[name]) if name in got_named else None
            pairs = [(sample, ref, got)]
            if rows and ref.ndim and got is not None and got.shape == ref.shape:
                pairs = [(f"{sample}[{i}]", ref[i], got[i]) for i in range(ref.shape[0])]
            scored = [(unit, *_figures(r, g)) for unit, r, g in pairs]
            units.setdefault(name, []).extend(scored)
            if ref.ndim == 2 and ref.shape[1] > 1:
                # a sample with a problem has rows but no agreement: its arg-max means nothing
                agree = 0 if any(s[4] for s in scored) else int((ref.argmax(1) == got.argmax(1)).sum())
                counts = top1.setdefault(name, [0, 0])
                counts[0], counts[1] = counts[0] + agree, counts[1] + ref.shape[0]
    outputs = tuple(_reduce(name, scored, top1.get(name)) for name, scored in units.items())
    problems = [f"{o.name}: {o.problem}" for o in outputs if o.problem]
    if not outputs:
        problems = ["no samples compared" if not names else "the reference has no outputs"]
    return Agreement(
        cosine=_worst((o.cosine for o in outputs), min),
        cosine_mean=_worst((o.cosine_mean for o in outputs), min),
        max_abs=_worst((o.max_abs for o in outputs), max),
        max_rel=_worst((o.max_rel for o in outputs), max),
        top1_agreement=next((o.top1_agreement for o in outputs if o.top1_agreement is not None), None),
        samples=max((o.samples for o in outputs), default=0),
        outputs=outputs,
        on=on,
        problem="; ".join(problems) or None,
    )


def ort_runner(path: str | Path, threads: int | None = None) -> Runner:
    """A feeds -> ``{output name: array}`` function over an ONNX Runtime CPU session of ``path``, fully
    optimised: agreement must be measured on the kernels that will run (fused int8 kernels can be wrong).

    Raises:
        ModelFileError: onnxruntime cannot load the model (typically an op or type it has no kernel for).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # QDQ models log a warning per node; errors still raise
    # comparisons are not timed: spin-waiting workers would only take cores from whatever runs alongside
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises Fail/NotImplemented/InvalidGraph, which share no useful base class
        text = (str(e).strip().splitlines() or [type(e).__name__])[0]
        text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
        raise ModelFileError(
            f"{path}: onnxruntime {ort.__version__} cannot load it: {text[:400]}. Export at another --opset, or "
            "replace the op it names with one onnxruntime implements."
        ) from e
    names = [o.name for o in session.get_outputs()]

    def run(feeds: Feeds) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, dict(feeds)), strict=True))

    return run


def run_all(runner: Callable[[Feeds], Mapping[str, np.ndarray]], feeds: Iterable[Feeds]) -> list[dict[str, np.ndarray]]:
    """``runner`` on each feed dict, in order: the per-sample outputs :func:`compare_outputs` takes."""
    return [dict(runner(f)) for f in feeds]


def min_cosine_problem(value: object) -> str | None:
    """The config problem of a ``min_cosine`` gate (a number in [-1, 1], or None for record-only), if any."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not -1 <= value <= 1):
        return f"min_cosine must be a number in [-1, 1] or None, got {value!r}"
    return None


def _named(outputs: Outputs, names: Sequence[str] | None) -> Mapping[str, np.ndarray]:
    if isinstance(outputs, Mapping):
        return outputs
    return {names[i] if names is not None else f"output{i}": o for i, o in enumerate(outputs)}


def _figures(reference: np.ndarray, candidate: np.ndarray | None) -> tuple[float, float, float, str | None]:
    """``(cosine, max_abs, max_rel, problem)`` of one output on one sample."""
    if candidate is None:
        return _NAN, _NAN, _NAN, "missing from the candidate's outputs"
    ref, got = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    if ref.shape != got.shape:
        return _NAN, _NAN, _NAN, f"shape {got.shape} != the reference's {ref.shape}"
    ref_bad, got_bad = ~np.isfinite(ref), ~np.isfinite(got)
    # the same ±Inf on both sides (a -inf mask logit) is agreement; NaN != NaN keeps any NaN a problem
    if (ref_bad != got_bad).any() or (ref[ref_bad] != got[got_bad]).any():
        got_nan, ref_nan = int(np.isnan(got).sum()), int(np.isnan(ref).sum())
        problem = (
            f"NaN/Inf: {got_nan} NaN and {int(got_bad.sum()) - got_nan} Inf in the candidate, "
            f"{ref_nan} NaN and {int(ref_bad.sum()) - ref_nan} Inf in the reference"
        )
        return _NAN, _NAN, _NAN, problem
    ref, got = np.where(ref_bad, 0.0, ref), np.where(got_bad, 0.0, got)
    max_abs = float(np.abs(ref - got).max(initial=0.0))
    return cosine(ref, got), max_abs, max_abs / max(float(np.abs(ref).max(initial=0.0)), _TINY), None


def _reduce(
    name: str, scored: list[tuple[str, float, float, float, str | None]], top1: list[int] | None
) -> OutputAgreement:
    bad = next((s for s in scored if s[4]), None)
    worst = bad or min(scored, key=lambda s: (s[1], -s[3]))  # equal cosines (a scaled output): the larger error
    return OutputAgreement(
        name=name,
        cosine=_NAN if bad else worst[1],
        cosine_mean=_NAN if bad else float(np.mean([s[1] for s in scored])),
        max_abs=_NAN if bad else max(s[2] for s in scored),
        max_rel=_NAN if bad else max(s[3] for s in scored),
        top1_agreement=top1[0] / top1[1] if top1 and top1[1] else None,
        samples=len(scored),
        worst=worst[0],
        problem=bad[4] if bad else None,
    )


def _worst(values: Iterable[float], pick: Callable[..., float]) -> float:
    """``pick`` (min or max) of the values, NaN if any is NaN: Python's min/max let NaN through by position."""
    values = list(values)
    return _NAN if not values or any(math.isnan(v) for v in values) else float(pick(values))


def _rounded(value: Any, ndigits: int) -> Any:
    if isinstance(value, float):
        return round(value, ndigits) if math.isfinite(value) else None
    return value
