"""How far a quantized model's outputs are from FP32: small pure functions over output arrays.

Example::

    fid = compare_outputs(fp32_outputs, int8_outputs, on="held-out samples")
    assert fid.cosine_min >= 0.999
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, kw_only=True)
class Fidelity:
    """Agreement of a quantized model with its FP32 parent over ``samples`` inputs.

    Attributes:
        cosine_mean, cosine_min: cosine similarity of each sample's outputs (all outputs, flattened).
        top1_agreement: fraction of samples with the same arg-max class (first output, 2-D only).
        max_abs_error: largest absolute difference relative to the largest FP32 magnitude.
        on: which samples (``"held-out samples"`` or ``"calibration samples"``).
    """

    samples: int
    cosine_mean: float
    cosine_min: float
    top1_agreement: float | None
    max_abs_error: float
    on: str

    def to_dict(self) -> dict[str, Any]:
        return rounded_fields(self)


def rounded_fields(obj: Any, ndigits: int = 6) -> dict[str, Any]:
    """``dataclasses.asdict(obj)`` with each top-level float field rounded to ``ndigits`` (others as they are).

    The quantization results' ``to_dict``: they end up in manifests embedded in model files and in reports,
    which must be byte-identical across runs, and float noise in the last digits would break that.
    """
    return {k: round(v, ndigits) if isinstance(v, float) else v for k, v in dataclasses.asdict(obj).items()}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays, flattened, in float64; two all-zero arrays count as identical."""
    x, y = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx == 0.0 or ny == 0.0:
        return 1.0 if nx == ny else 0.0
    return float(np.dot(x, y) / (nx * ny))


def compare_outputs(reference: Sequence[Sequence[np.ndarray]], test: Sequence[Sequence[np.ndarray]],
                    on: str = "held-out samples") -> Fidelity:  # fmt: skip
    """Compare per-batch output lists (``[[out0, out1, ...], ...]``) sample by sample."""
    if len(reference) != len(test) or not reference:
        raise ValueError(f"need the same non-zero number of batches, got {len(reference)} and {len(test)}")
    cosines, agree, top1_total, scale, err = [], 0, 0, 0.0, 0.0
    for ref_outs, q_outs in zip(reference, test, strict=True):
        batch = ref_outs[0].shape[0] if ref_outs[0].ndim else 1
        for i in range(batch):
            r = np.concatenate([np.asarray(o[i] if o.ndim else o, np.float64).ravel() for o in ref_outs])
            q = np.concatenate([np.asarray(o[i] if o.ndim else o, np.float64).ravel() for o in q_outs])
            cosines.append(cosine(r, q))
            scale = max(scale, float(np.max(np.abs(r))) if r.size else 0.0)
            err = max(err, float(np.max(np.abs(r - q))) if r.size else 0.0)
        if ref_outs[0].ndim == 2 and ref_outs[0].shape[1] > 1:
            agree += int(np.sum(ref_outs[0].argmax(1) == q_outs[0].argmax(1)))
            top1_total += batch
    return Fidelity(
        samples=len(cosines),
        cosine_mean=float(np.mean(cosines)),
        cosine_min=float(np.min(cosines)),
        top1_agreement=agree / top1_total if top1_total else None,
        max_abs_error=err / scale if scale > 0 else err,
        on=on,
    )
