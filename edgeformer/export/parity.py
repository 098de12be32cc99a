"""Parity between a torch module and its exported graph: every output, on several inputs.

The error measure follows :class:`~edgeformer.models.spec.ExportHints`: ``max_rel`` is the largest
absolute difference divided by the output's scale (``max |torch output|``), so one tolerance serves
logits of any magnitude; the cosine between the flattened outputs catches a wrong sign or a permuted
class order that a loose absolute bound could miss. Inputs are seeded random tensors plus, for images
and waveforms, one "natural" input (a smooth gradient, a chirp): random noise exercises every value
range, natural inputs the statistics the model was trained on.

:func:`fidelity` is the measure the compile targets record: a compiled model against its parent, with no
tolerance (the targets gate on its ``min_cosine`` themselves).

Example::

    inputs = parity_inputs({"input": (1, 3, 64, 64)}, kind="image", samples=3, seed=0)
    report = check_parity(torch_fn, session_fn, inputs, atol=1e-4, min_cosine=0.99999)
    report.raise_if_failed("efficientformer_l1")
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFileError, ParityError

Feeds = Mapping[str, np.ndarray]
RunFn = Callable[[Feeds], Mapping[str, np.ndarray]]

# Below this scale an output is numerically zero; dividing by it would turn float32 noise into huge ratios.
_TINY = float(np.finfo(np.float32).eps)


@dataclass(frozen=True, kw_only=True)
class OutputParity:
    """Worst-case agreement of one output over all parity inputs."""

    name: str
    max_abs: float
    max_rel: float  # max_abs / max |torch output|
    cosine: float  # smallest over the inputs
    ok: bool
    sample: str = ""  # the input with the largest max_rel
    problem: str = ""  # shape mismatch, NaN/Inf, missing output

    def describe(self) -> str:
        text = f"{self.name}: max_abs={self.max_abs:.3g} max_rel={self.max_rel:.3g} cosine={self.cosine:.7f}"
        if self.sample:
            text += f" (worst on {self.sample})"
        return text + (f"; {self.problem}" if self.problem else "")


@dataclass(frozen=True, kw_only=True)
class ParityReport:
    """Agreement of every output; ``ok`` only if each one is within ``atol`` and ``min_cosine``."""

    outputs: tuple[OutputParity, ...]
    samples: tuple[str, ...]
    atol: float
    min_cosine: float

    @property
    def ok(self) -> bool:
        return bool(self.outputs) and all(o.ok for o in self.outputs)

    @property
    def failures(self) -> tuple[OutputParity, ...]:
        return tuple(o for o in self.outputs if not o.ok)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "atol": self.atol,
            "min_cosine": self.min_cosine,
            "samples": list(self.samples),
            "outputs": [dataclasses.asdict(o) for o in self.outputs],
        }

    def raise_if_failed(self, what: str = "exported model") -> None:
        """Raise :class:`ParityError` listing every failing output with its figures."""
        if self.ok:
            return
        listed = "; ".join(o.describe() for o in self.failures) or "no outputs compared"
        raise ParityError(
            f"{what} differs from torch beyond tolerance (max_rel <= {self.atol:g}, cosine >= {self.min_cosine}) "
            f"on {len(self.samples)} inputs: {listed}. Try another --opset or the TorchScript exporter "
            "(--exporter torchscript), or loosen the tolerance (--atol/--min-cosine) if the difference is expected.",
            failures=self.failures,
        )


def compare(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float, float, str]:
    """``(max_abs, max_rel, cosine, problem)`` of ``candidate`` against ``reference``."""
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64)
    if ref.shape != got.shape:
        return float("inf"), float("inf"), -1.0, f"shape {got.shape} != torch's {ref.shape}"
    ref_bad, got_bad = ~np.isfinite(ref), ~np.isfinite(got)
    if (ref_bad != got_bad).any() or (ref[ref_bad] != got[got_bad]).any():
        return (
            float("inf"),
            float("inf"),
            -1.0,
            f"{int(got_bad.sum())} NaN/Inf values where torch has {int(ref_bad.sum())}",
        )
    ref, got = np.where(ref_bad, 0.0, ref), np.where(got_bad, 0.0, got)
    if ref.size == 0:
        return 0.0, 0.0, 1.0, ""
    max_abs = float(np.abs(ref - got).max())
    scale = float(np.abs(ref).max())
    max_rel = max_abs / max(scale, _TINY)
    norms = float(np.linalg.norm(ref)) * float(np.linalg.norm(got))
    # two (numerically) zero outputs agree perfectly; the cosine of zero vectors is otherwise undefined
    cosine = float(np.dot(ref.ravel(), got.ravel()) / norms) if norms > _TINY**2 else (1.0 if max_abs <= _TINY else 0.0)
    return max_abs, max_rel, cosine, ""


def check_parity(
    torch_fn: RunFn,
    session_fn: RunFn,
    inputs: Mapping[str, Feeds],
    atol: float,
    min_cosine: float,
) -> ParityReport:
    """Run both functions on every named input and compare every output.

    Args:
        torch_fn: feeds -> ``{output name: array}`` from the source model (the reference).
        session_fn: feeds -> ``{output name: array}`` from the exported model.
        inputs: ``{sample name: feeds}``, e.g. from :func:`parity_inputs`.
        atol: largest allowed ``max_abs / max |reference|``.
        min_cosine: smallest allowed cosine between flattened outputs.

    Returns:
        A :class:`ParityReport` with the worst figures of each output; call ``raise_if_failed``.
    """
    worst: dict[str, OutputParity] = {}
    for sample, feeds in inputs.items():
        expected, got = torch_fn(feeds), session_fn(feeds)
        for name, ref in expected.items():
            if name in got:
                max_abs, max_rel, cosine, problem = compare(ref, got[name])
            else:
                max_abs, max_rel, cosine, problem = float("inf"), float("inf"), -1.0, "missing from the exported model"
            ok = not problem and max_rel <= atol and cosine >= min_cosine
            prev = worst.get(name)
            if prev is None:
                worst[name] = OutputParity(
                    name=name, max_abs=max_abs, max_rel=max_rel, cosine=cosine, ok=ok, sample=sample, problem=problem
                )
                continue
            worst[name] = OutputParity(
                name=name,
                max_abs=max(prev.max_abs, max_abs),
                max_rel=max(prev.max_rel, max_rel),
                cosine=min(prev.cosine, cosine),
                ok=prev.ok and ok,
                sample=sample if max_rel > prev.max_rel else prev.sample,
                problem=prev.problem or problem,
            )
    return ParityReport(outputs=tuple(worst.values()), samples=tuple(inputs), atol=atol, min_cosine=min_cosine)


def fidelity(reference: Any, candidate: Any, inputs: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, Any]:
    """Worst cosine and max abs error per output, plus top-1 agreement for ``(batch, classes)`` outputs.

    Args:
        reference, candidate: feeds -> ``{output name: array}`` functions (the parent and the compiled model).
        inputs: ``{sample name: feeds}``, e.g. from :func:`parity_inputs`.
    """
    stats: dict[str, dict[str, Any]] = {}
    for feeds in inputs.values():
        want, got = reference(feeds), candidate(feeds)
        for name, ref in want.items():
            s = stats.setdefault(name, {"cosine": 1.0, "max_abs": 0.0, "agree": 0, "rows": 0, "problem": ""})
            max_abs, _, cosine, problem = compare(ref, got[name]) if name in got else (np.inf, 0, -1.0, "missing")
            s["cosine"], s["max_abs"] = min(s["cosine"], cosine), max(s["max_abs"], max_abs)
            s["problem"] = s["problem"] or problem
            if not problem and ref.ndim == 2 and ref.shape[1] > 1:
                s["agree"] += int((ref.argmax(1) == np.asarray(got[name]).argmax(1)).sum())
                s["rows"] += ref.shape[0]
    out = {}
    for name, s in stats.items():
        out[name] = {"cosine": s["cosine"], "max_abs": s["max_abs"]}
        out[name]["top1_agreement"] = s["agree"] / s["rows"] if s["rows"] else None
        if s["problem"]:
            out[name]["problem"] = s["problem"]
    return {
        "samples": list(inputs),
        "outputs": out,
        "min_cosine": min((o["cosine"] for o in out.values()), default=1.0),
    }


def parity_inputs(
    shapes: Mapping[str, tuple[int, ...]],
    *,
    kind: str | None = None,
    samples: int = 3,
    seed: int = 0,
    dtypes: Mapping[str, str] | None = None,
    sample_rate: int = 16000,
) -> dict[str, dict[str, np.ndarray]]:
    """Seeded random feeds, plus one natural input for ``kind`` ``"image"`` (NCHW) or ``"audio"`` (waveform).

    Image tensors are drawn in normalized space (N(0, 1), what a normalized photo looks like); waveforms
    in [-1, 1]; integer inputs uniformly over 0..9.
    """
    rng = np.random.default_rng(seed)
    dtypes = dict(dtypes or {})
    out: dict[str, dict[str, np.ndarray]] = {}
    for i in range(samples):
        feeds = {}
        for name, shape in shapes.items():
            dtype = np.dtype(dtypes.get(name, "float32"))
            if dtype.kind in "iub":
                feeds[name] = rng.integers(0, 10 if dtype.kind != "b" else 2, size=shape).astype(dtype)
            elif kind == "audio":
                feeds[name] = rng.uniform(-1, 1, size=shape).astype(dtype)
            else:
                feeds[name] = rng.standard_normal(size=shape).astype(dtype)
        out[f"random-{i}"] = feeds
    if kind in ("image", "audio") and len(shapes) == 1:
        ((name, shape),) = shapes.items()
        maker = _gradient if kind == "image" else _chirp
        out["natural"] = {name: maker(shape, sample_rate).astype(np.dtype(dtypes.get(name, "float32")))}
    return out


def _gradient(shape: tuple[int, ...], _sample_rate: int) -> np.ndarray:
    """A smooth colour gradient with a soft blob, in normalized space (about [-2, 2] like ImageNet pixels)."""
    n, c, h, w = shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    blob = np.exp(-((xx - 0.3) ** 2 + (yy + 0.2) ** 2) * 4)
    channels = [np.sin(np.pi * (xx * (k + 1) / c + yy * 0.5) + k) + blob for k in range(c)]
    img = np.stack(channels) * 1.2
    return np.broadcast_to(img, (n, c, h, w)).copy()


def _chirp(shape: tuple[int, ...], sample_rate: int) -> np.ndarray:
    """A 100 Hz -> 4 kHz sweep at half scale: speech-band energy in every frame."""
    samples = shape[-1]
    t = np.arange(samples) / sample_rate
    duration = max(samples / sample_rate, 1e-3)
    f0, f1 = 100.0, 4000.0
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * duration))
    return np.broadcast_to(0.5 * np.sin(phase), shape).copy()


def ort_runner(path: str | Path, threads: int | None = None) -> RunFn:
    """A feeds -> outputs function over a CPU ``onnxruntime.InferenceSession`` of ``path``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT's Fail/NotImplemented/InvalidGraph: typically an op or type it has no kernel for
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


def min_cosine_problem(value: object) -> str | None:
    """The config problem of a ``min_cosine`` gate (a number in [-1, 1], or None for record-only), if any."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not -1 <= value <= 1):
        return f"min_cosine must be a number in [-1, 1] or None, got {value!r}"
    return None
