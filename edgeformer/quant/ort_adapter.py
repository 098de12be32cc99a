"""The one module that speaks ONNX Runtime's quantization dialect.

Everything ORT-specific lives here: ``quant_pre_process``, the ``QuantType``/``QuantFormat``/
``CalibrationMethod`` enums and the ``extra_options`` keys. The rest of :mod:`edgeformer.quant` passes
typed objects (:class:`QuantConfig`, :class:`QuantPlan`, :class:`TensorRanges`).

Calibration is split from writing so that a placement search calibrates once and writes many plans::

    pre = preprocess(model_path, tmp / "pre.onnx", config)
    ranges = compute_ranges(pre, reader, config)            # the expensive pass over the data
    for plan in candidate_plans:
        write_qdq(pre, ranges, plan, config, tmp / f"{i}.onnx")  # seconds each, no data needed
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx

from ..errors import CalibrationError, ConfigError, ModelFileError
from ..scratch import disk_full, is_disk_full, scratch_dir
from .calibration import CalibrationReader, CalibrationSummary
from .config import QuantConfig
from .graph import fuse_gelu
from .ranges import RangeCollector, TensorRanges
from .recipe import QuantPlan

log = logging.getLogger(__name__)

_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)


def preprocess(model_path: str | Path, out_path: str | Path, config: QuantConfig) -> Path:
    """ORT's quantization pre-processing (symbolic shape inference, ORT basic graph optimisations, ONNX
    shape inference), then the GELU fusion for ``ort-cpu``; writes ``out_path`` as one file.

    Without it, quantized models ran up to 4.7x slower on this project's CI CPU (ORT's quantizer needs
    the inferred shapes and the folded graph to place Q/DQ where ORT's int8 fusions can find them).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path, model_path = Path(out_path), Path(model_path).resolve()  # before the chdir below: a relative path
    with scratch_dir("pre") as tmp:
        staged = Path(tmp) / "pre.onnx"
        try:
            # on failure ORT's symbolic inference saves its partial model (plus external data) as
            # sym_shape_infer_temp.onnx in the *working directory*: run it from the scratch folder instead
            with _quiet_ort(), _working_dir(tmp):
                quant_pre_process(str(model_path), str(staged), skip_symbolic_shape=False)
        except Exception as e:  # ORT's symbolic inference raises a bare Exception on ops it cannot follow
            if is_disk_full(e):  # not a shape inference problem: the fallback would fail the same way
                raise disk_full(e, staged, 0) from e
            # ONNX's own shape inference still gives the quantizer the shapes it needs; only symbolic dims
            # (e.g. a dynamic batch through a Reshape) stay unknown, which costs nothing at a static shape
            log.warning(
                "ORT symbolic shape inference failed on %s (%s); pre-processing with ONNX shape inference only",
                model_path,
                e,
            )
            try:
                with _quiet_ort(), _working_dir(tmp):
                    quant_pre_process(str(model_path), str(staged), skip_symbolic_shape=True)
            except Exception as e2:
                raise ModelFileError(
                    f"{model_path}: ONNX Runtime's quantization pre-processing failed ({type(e2).__name__}: {e2}); "
                    "re-export the model (`edgeformer export`) or report the graph that fails."
                ) from e2
        model = onnx.load(str(staged))
    _restore_node_metadata(model, onnx.load(str(model_path), load_external_data=False))
    if config.gelu_fusion:
        fuse_gelu(model)
    onnx.save(model, str(out_path))
    return out_path


@contextlib.contextmanager
def _working_dir(path: str | Path) -> Iterator[None]:
    """Run the block with ``path`` as the working directory and as the temp root of ``tempfile``.

    ORT's ``quant_pre_process`` makes its own ``pre.quant.*`` folder under the system temp folder (and, on a
    failed symbolic inference, writes into the working directory): both land in our owned scratch folder
    instead, which the next run removes when this one was killed. ``tempfile.tempdir`` is process-global;
    quantization does not run it from several threads.
    """
    previous, previous_tmp = os.getcwd(), tempfile.tempdir
    os.chdir(path)
    tempfile.tempdir = str(path)
    try:
        yield
    finally:
        tempfile.tempdir = previous_tmp
        os.chdir(previous)


def compute_ranges(
    model_path: str | Path, reader: CalibrationReader, config: QuantConfig, summary: CalibrationSummary | None = None
) -> TensorRanges:
    """Run the model once over ``reader`` and return the activation range of every float tensor.

    Every float tensor gets a range (not only those the current plan quantizes), so one calibration
    serves every plan. The reader is consumed once, batch by batch; memory stays constant.

    Raises:
        CalibrationError: NaN/Inf activations (naming tensor and sample), no samples, or fewer samples
            than entropy/percentile need with ``too_few_samples="fail"``.
    """
    import onnxruntime as ort

    method = config.method
    if summary is not None:
        summary.method_requested = method
    expected = len(getattr(reader, "indices", ())) or None
    if expected is not None and _too_few(config, expected):
        method = _fallback(config, expected, summary)
    model = onnx.load(str(model_path))
    names = _float_tensors(model)
    with scratch_dir("calib") as tmp:
        augmented = Path(tmp) / "augmented.onnx"
        _expose(model, names)  # graph inputs are read from the feeds instead
        onnx.save(model, str(augmented))
        so = ort.SessionOptions()
        # no fusions: the tensors we read must be the graph's own, not those of a rewritten graph
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.log_severity_level = 3
        session = ort.InferenceSession(str(augmented), so, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    collector = RangeCollector(method=method, percentile=config.percentile, symmetric=config.symmetric_activations)
    reader.rewind()
    for k in range(10**9):  # bounded by the reader; the bound only guards against a reader that never ends
        feeds = reader.get_next()
        if feeds is None:
            break
        produced = dict(zip(outputs, session.run(outputs, feeds), strict=True))
        produced.update(feeds)
        batch = int(next(iter(feeds.values())).shape[0]) if feeds else 1
        current = getattr(reader, "current", None) or f"batch {k}"
        # graph order, so a NaN is reported at the first tensor that has it, where it arises
        collector.update({n: produced[n] for n in names if n in produced}, sample=current, batch=batch)
    if collector.num_samples == 0:
        raise CalibrationError("the calibration reader yielded no samples; pass a folder or array file with data.")
    if method != "minmax" and _too_few(config, collector.num_samples):
        method = _fallback(config, collector.num_samples, summary)
        collector.method = method
    if summary is not None:
        summary.method = method
    return collector.result(min_range=config.min_range)


def write_qdq(
    model_path: str | Path, ranges: TensorRanges, plan: QuantPlan, config: QuantConfig, out_path: str | Path
) -> Path:
    """Write the QDQ model quantizing exactly ``plan.nodes_to_quantize`` with ``ranges``.

    Raises:
        ConfigError: an empty plan (ORT would read an empty node list as "quantize everything") or one
            naming nodes that are not in the graph (a plan made for another graph).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    if not plan.nodes_to_quantize:
        raise ConfigError("the quantization plan selects no nodes; widen QuantConfig.op_types or pass another plan.")
    model = onnx.load(str(model_path), load_external_data=False)
    by_name = {n.name: n.op_type for n in model.graph.node}
    unknown = [n for n in plan.nodes_to_quantize if n not in by_name]
    if unknown:
        raise ConfigError(
            f"the plan names {len(unknown)} node(s) not in {model_path} (e.g. {', '.join(unknown[:3])}); plans "
            "belong to the pre-processed graph they were made from: rebuild it with default_plan()."
        )
    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    extra = {
        "ActivationSymmetric": config.symmetric_activations,
        "WeightSymmetric": config.symmetric_weights,
        "DedicatedQDQPair": config.dedicated_qdq_pair,
        "AddQDQPairToWeight": config.weight_qdq_pair,
        "MinimumRealRange": config.min_range,  # second guard (after TensorRanges) against zero scales
    }
    data = {
        name: TensorData(lowest=np.array(lo, dtype=np.float32), highest=np.array(hi, dtype=np.float32))
        for name, (lo, hi) in ranges.ranges.items()
    }
    out_path = Path(out_path)
    with scratch_dir("qdq") as tmp:
        cache = Path(tmp) / "ranges.json"
        # the final ranges are already computed; ORT's MinMax path just reads them back from the cache
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), cache)
        staged = Path(tmp) / "model.onnx"
        with _quiet_ort():
            quantize_static(
                str(model_path),
                str(staged),
                calibration_data_reader=None,
                calibration_cache_path=str(cache),
                quant_format=QuantFormat.QOperator if config.quant_format == "qoperator" else QuantFormat.QDQ,
                op_types_to_quantize=sorted({by_name[n] for n in plan.nodes_to_quantize}),
                nodes_to_quantize=list(plan.nodes_to_quantize),
                per_channel=config.per_channel,
                reduce_range=config.reduce_range,
                activation_type=qtype[config.activation_type],
                weight_type=qtype[config.weight_type],
                calibrate_method=CalibrationMethod.MinMax,
                extra_options=extra,
            )
        out_path.write_bytes(staged.read_bytes())  # ORT's output is deterministic; tests pin it byte for byte
    return out_path


def quantize_qdq(
    model_path: str | Path, out_path: str | Path, plan: QuantPlan, reader: CalibrationReader, config: QuantConfig
) -> None:
    """Calibrate on ``reader`` and write the QDQ model in one call (:func:`compute_ranges` + :func:`write_qdq`)."""
    write_qdq(model_path, compute_ranges(model_path, reader, config), plan, config, out_path)


# --- helpers -----------------------------------------------------------------------------------
def _too_few(config: QuantConfig, n: int) -> bool:
    return config.method != "minmax" and n < config.min_samples_for_method


def _fallback(config: QuantConfig, n: int, summary: CalibrationSummary | None) -> str:
    if config.too_few_samples == "fail":
        raise CalibrationError(
            f"{config.method} calibration needs at least {config.min_samples_for_method} samples for a usable "
            f"histogram, but only {n} are available; add samples, use --method minmax, or allow the fallback "
            "with --too-few-samples minmax."
        )
    msg = (
        f"only {n} calibration samples (< {config.min_samples_for_method}): {config.method} falls back to "
        "minmax as configured (too_few_samples='minmax')"
    )
    log.warning(msg)
    if summary is not None:
        summary.warnings.append(msg)
    return "minmax"


def _float_tensors(model: onnx.ModelProto) -> dict[str, int]:
    """Every float activation and its element type: graph inputs and node outputs (not weights or Constants)."""
    inits = {t.name for t in model.graph.initializer}
    types = {
        v.name: v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.value_info, *model.graph.output)
    }
    names = [i.name for i in model.graph.input if i.name not in inits and types.get(i.name) in _FLOAT_TYPES]
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        names.extend(o for o in node.output if o and types.get(o) in _FLOAT_TYPES and o not in inits)
    return {n: types[n] for n in dict.fromkeys(names)}


def _expose(model: onnx.ModelProto, names: Mapping[str, int]) -> None:
    present = {o.name for o in model.graph.output} | {i.name for i in model.graph.input}
    for name, elem_type in names.items():
        if name not in present:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, elem_type, None))


def _restore_node_metadata(model: onnx.ModelProto, original: onnx.ModelProto) -> None:
    """Copy the exporter's per-node metadata (module paths) that ORT's optimizer dropped, by node name:
    :func:`~edgeformer.quant.recipe.node_groups` names blocks from it."""
    meta = {n.name: n.metadata_props for n in original.graph.node if n.name and len(n.metadata_props)}
    for node in model.graph.node:
        if not len(node.metadata_props) and node.name in meta:
            node.metadata_props.extend(meta[node.name])


@contextlib.contextmanager
def _quiet_ort():
    """ORT's quantization tools log advice at WARNING through the root logger; keep it at DEBUG for us."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)
