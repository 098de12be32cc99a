"""The quantize core: calibrate once, write the QDQ model for a plan, check it against FP32.

:func:`edgeformer.quant.quantize` runs these pieces as one step (and the placement search, :mod:`.search`,
between :func:`calibrate` and :func:`quantize_core`); they are public for callers that search placements of
their own: :func:`calibrate` once, then :func:`~.ort_adapter.write_qdq` for each candidate plan.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from ..artifact import Artifact, Manifest, TensorSpec, write_json_atomic
from ..compare import Agreement, compare_outputs, ort_runner, run_all
from ..errors import ConfigError, InvalidInputError, QualityGateError
from ..manifest import CalibrationRecord
from ..modelfile import QUANT_OPS, embed_manifest, graph_io, load_onnx
from ..scratch import scratch_dir
from .calibration import CalibrationData, open_calibration
from .config import QuantConfig
from .fallback import fit_fidelity, timed
from .ort_adapter import compute_ranges, preprocess, write_qdq
from .placement import LatencyFn, ort_latency
from .ranges import TensorRanges
from .recipe import QuantPlan, default_plan

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"


@dataclass(frozen=True, kw_only=True, eq=False)  # eq=False: held-out feeds are arrays, == would be ambiguous
class Calibration:
    """One calibration of one model, made by :func:`calibrate`, to hand to ``quantize(calibration=...)``.

    Attributes:
        source: the FP32 model file it was made from.
        config: the settings it was made with (the ranges and the pre-processed graph depend on them).
        model_path: the pre-processed graph the ranges (and any plan) belong to; the caller owns the file
            and keeps it until the last ``quantize`` that uses this calibration has returned.
        data: the opened calibration data: its reader, held-out feeds and summary.
        ranges: the activation range of every float tensor of ``model_path``.
    """

    source: Path
    config: QuantConfig
    model_path: Path
    data: CalibrationData
    ranges: TensorRanges


def calibrate(
    model_path: str | Path,
    calib: Any,
    *,
    inputs: Sequence[TensorSpec],
    preprocessing: Mapping[str, Any] | None,
    config: QuantConfig,
    workdir: str | Path,
) -> Calibration:
    """Open ``calib``, pre-process ``model_path`` into ``workdir/pre.onnx`` and compute the ranges (one data pass).

    Raises:
        CalibrationError, DynamicShapeError: as :func:`open_calibration` and :func:`compute_ranges`.
    """
    data = open_calibration(calib, inputs=inputs, preprocessing=preprocessing, config=config)
    pre = preprocess(model_path, Path(workdir) / "pre.onnx", config)
    ranges = compute_ranges(pre, data.reader, config, data.summary)
    return Calibration(source=Path(model_path), config=config, model_path=pre, data=data, ranges=ranges)


def quantize_core(
    src: Artifact,
    config: QuantConfig,
    cal: Calibration,
    folder: Path,
    *,
    io: tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]],
    plan: QuantPlan | None = None,
) -> Manifest:
    """Write the QDQ model of ``plan`` over ``cal``'s ranges into ``folder`` with its ``plan.json``, checked against
    FP32; the manifest to commit (``quantize()`` commits it, the search adds to it).

    Without ``plan``, the :func:`default_plan`; if that misses ``config.min_cosine``, the fewest most sensitive ops
    go back to float until it holds (:func:`~.fallback.fit_fidelity`), and ``extra["fallback"]`` says which and
    what they cost in latency against the all-INT8 plan. A given ``plan`` is written as it is.

    Raises:
        QualityGateError: outputs diverge from FP32 below ``config.min_cosine`` (with the fallback's ops in float).
    """
    data, pre, ranges = cal.data, cal.model_path, cal.ranges
    pre_model = onnx.load(str(pre))
    given = plan is not None
    plan = plan or default_plan(pre_model, config)
    fallback = None
    with scratch_dir("qdq") as tmp:
        staged = write_qdq(pre, ranges, plan, config, Path(tmp) / MODEL_FILE)
        measure = fidelity_check(src.model_path, data, config)
        fidelity = measure(staged)
        bar = config.fidelity_bar(searching=False)
        if not given and bar is not None and fidelity.samples and fidelity.meets(min_cosine=bar):
            fallback = fit_fidelity(
                pre,
                ranges,
                plan,
                config,
                bar=bar,
                max_ops=config.fallback_max_ops,
                fidelity=measure,
                feeds=data.fidelity_feeds(config.fidelity_samples)[0][:4],
                workdir=tmp,
                start=(staged, fidelity),
            )
            if fallback is not None and fallback.path is not None:
                plan, staged = fallback.plan, fallback.path
                fidelity = measure(staged)
                fallback = timed(fallback, staged, fallback_latency(data, config), threads=config.search.threads)
        gate_fidelity(fidelity, config)
        qmodel = onnx.load(str(staged))
    summary = data.summary
    manifest = Manifest(
        format="onnx",
        precision="int8",
        model_name=src.manifest.model_name,
        main_file=MODEL_FILE,
        task=src.manifest.task,
        inputs=io[0],
        outputs=io[1],
        preprocessing=src.manifest.preprocessing,
        labels=src.manifest.labels,
        step="quantize",
        step_config={**config.to_dict(), "calib": summary.source},
        parent_sha=src.sha,
        calibration=CalibrationRecord.from_dict(summary.to_dict()),
        fidelity=fidelity.to_record(min_cosine=config.min_cosine),
        extra={
            "plan": plan.summary(pre_model),
            "ranges": {
                "method": ranges.method,
                "num_samples": ranges.num_samples,
                "tensors": len(ranges),
                "widened": list(ranges.widened),
            },
            # timings vary run to run: the model file embeds the ops but not their latency cost, so that the same
            # inputs still give a byte-identical model (the cost is in artifact.json and the report)
            **({"fallback": {**fallback.to_dict(), "latency": None}} if fallback is not None else {}),
        },
    )
    embed_manifest(qmodel, dataclasses.replace(manifest, created="", tool_versions={}))
    if fallback is not None:
        manifest = dataclasses.replace(manifest, extra={**manifest.extra, "fallback": fallback.to_dict()})
    onnx.save(qmodel, str(folder / MODEL_FILE))
    write_json_atomic(folder / "plan.json", plan.to_dict())
    log.info(
        "quantized %s: cosine %.5f (min %.5f) vs FP32 on %d %s",
        src.manifest.model_name,
        fidelity.cosine_mean,
        fidelity.cosine,
        fidelity.samples,
        fidelity.on,
    )
    return manifest


def checked_config(config: QuantConfig | None) -> QuantConfig:
    config = config or QuantConfig()
    if not isinstance(config, QuantConfig):
        raise ConfigError(
            f"config must be a QuantConfig, got {type(config).__name__}; build one with QuantConfig(...)."
        )
    return config


def source_artifact(artifact: Artifact | str | Path) -> Artifact:
    """The artifact to quantize, loaded; anything but ONNX is refused."""
    src = artifact if isinstance(artifact, Artifact) else Artifact.load(artifact)
    if src.format != "onnx":
        raise InvalidInputError(
            f"{src.path}: quantize takes an ONNX artifact, got {src.format!r}; quantize the ONNX "
            "artifact this one was compiled from."
        )
    return src


def checked_io(src: Artifact) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The model's inputs and outputs (the manifest's, else the graph's), after refusing a quantized model."""
    proto = load_onnx(src.model_path, full_check=False)
    refuse_quantized(src, proto)
    inputs, outputs = src.manifest.inputs, src.manifest.outputs
    if not inputs or not outputs:
        graph_inputs, graph_outputs = graph_io(proto)
        inputs, outputs = inputs or graph_inputs, outputs or graph_outputs
    return tuple(inputs), tuple(outputs)


def check_fidelity(
    fp32_path: str | Path, int8_path: str | Path, data: CalibrationData, config: QuantConfig
) -> Agreement:
    """Compare ``int8_path`` with ``fp32_path`` on ORT CPU (full optimisation) over the held-out samples,
    each batch row on its own (one bad sample is not averaged away by the others in its batch).

    Raises:
        QualityGateError: the worst sample's cosine is below ``config.min_cosine``, or an output is NaN/Inf.
    """
    return gate_fidelity(fidelity_check(fp32_path, data, config)(int8_path), config)


def fidelity_check(fp32_path: str | Path, data: CalibrationData, config: QuantConfig) -> Callable[[Path], Agreement]:
    """A function comparing a model file with ``fp32_path`` on the held-out samples, as :func:`check_fidelity`
    does; FP32 runs once, however many candidates are compared."""
    feeds, on = data.fidelity_feeds(config.fidelity_samples)
    reference = run_all(ort_runner(fp32_path), feeds)

    def measure(int8_path: Path) -> Agreement:
        return compare_outputs(reference, run_all(ort_runner(int8_path), feeds), rows=True, on=on)

    return measure


def gate_fidelity(fidelity: Agreement, config: QuantConfig) -> Agreement:
    """``fidelity`` if it meets ``config.min_cosine`` (a far-off mean only warns).

    Raises:
        QualityGateError: it does not, or an output is NaN/Inf; the message says what to try.
    """
    if config.min_cosine is not None and (reason := fidelity.meets(min_cosine=config.min_cosine)):
        raise QualityGateError(
            f"the quantized model diverges from FP32 on {fidelity.samples} {fidelity.on}: {reason}; nothing was "
            "written. Keep more nodes float (keep_float_op_types / keep_float_nodes, fallback_max_ops), leave "
            "quantize_attention_matmuls off, or try method='percentile'."
        )
    if not fidelity.cosine_mean >= 0.99:  # NaN (no gate, an output with a problem) warns too
        log.warning(
            "quantized outputs are far from FP32 (mean cosine %.4f); check accuracy before deploying",
            fidelity.cosine_mean,
        )
    return fidelity


def fallback_latency(data: CalibrationData, config: QuantConfig) -> LatencyFn:
    """The timing of the fallback's cost: the search's ORT CPU rounds on the first held-out feed."""
    s = config.search
    feeds, _ = data.fidelity_feeds(config.fidelity_samples)
    return ort_latency(feeds[0], threads=s.threads, rounds=s.rounds, runs_per_round=s.runs_per_round, warmup=s.warmup)


def check_calibration(cal: Calibration, src: Artifact, config: QuantConfig) -> None:
    """A calibration belongs to one model and one config: ranges of another graph would quantize the wrong
    tensors (or none), and ranges from other settings (method, symmetry) would silently change the result. The
    search settings do not touch the ranges, so a calibration serves a search and the core alike."""
    if Path(cal.source).resolve() != Path(src.model_path).resolve():
        raise ConfigError(
            f"the calibration was made from {cal.source}, not {src.model_path}; run calibrate() on "
            "the model you quantize."
        )
    if cal.config.replace(search=config.search) != config:
        diff = sorted(k for k, v in config.to_dict().items() if cal.config.to_dict()[k] != v and k != "search")
        raise ConfigError(
            f"the calibration was made with other quantization settings ({', '.join(diff)} differ); "
            "pass the same QuantConfig to calibrate() and quantize()."
        )


def refuse_quantized(src: Artifact, proto) -> None:
    found = sorted({n.op_type for n in proto.graph.node if n.op_type in QUANT_OPS})
    if src.precision in ("int8", "mixed") or found:
        what = f"it contains {', '.join(found)} nodes" if found else f"its precision is {src.precision}"
        parent = f" (its parent artifact has sha256 {src.manifest.parent_sha[:12]}…)" if src.manifest.parent_sha else ""
        raise InvalidInputError(
            f"{src.model_path} is already quantized: {what}. Quantizing twice compounds the error; quantize the "
            f"FP32 artifact it came from{parent}."
        )


__all__ = [
    "MODEL_FILE",
    "QUANT_OPS",
    "Calibration",
    "calibrate",
    "check_calibration",
    "check_fidelity",
    "checked_config",
    "checked_io",
    "fallback_latency",
    "fidelity_check",
    "gate_fidelity",
    "quantize_core",
    "refuse_quantized",
    "source_artifact",
]
