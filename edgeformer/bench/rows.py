"""The bench table: one :class:`~edgeformer.bench.pipeline.RowProducer` per target x precision x backend.

Add a target by writing one producer (usually :func:`compiled`) and one line in :data:`ROW_PRODUCERS`.
Sources are shared through :class:`~edgeformer.bench.pipeline.BenchContext`: the FP32 export is made
once, each quantization preset once, so the OpenVINO, ORT and TensorRT int8 rows of one preset reuse
one QDQ model.

A compiled row checks first whether its runtime can run here at all, so a CoreML row off macOS or a
TensorRT row without a GPU is skipped at once with the reason, instead of after a minute of conversion
whose result cannot be timed.

Peers (``peer=True``) are what a user gets without edgeformer: eager PyTorch, plain ORT FP32,
``quantize_static`` with its defaults, OpenVINO FP32/BF16 straight from the ONNX, and NNCF's INT8.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..artifact import Artifact, ArtifactWriter
from ..compare import compare_outputs, ort_runner, run_all
from ..compile import compile
from ..errors import BackendUnavailableError
from ..manifest import CalibrationRecord
from ..profiling import precision_unavailable
from ..profiling.side_by_side import ort_format_artifact
from ..quant import QuantConfig, SearchConfig, open_calibration, quantize
from ..quant.ort_adapter import preprocess
from ..runtimes import get_backend
from ..scratch import scratch_dir
from .context import BenchContext, RowProducer, Timed, torch_contender
from .report import BenchRow

ORT = ("onnxruntime",)
OPENVINO = ("openvino",)
# the search's wall-clock budget inside bench: enough to try the big groups, short enough for a table
SEARCH_BUDGET_S = 60.0


def _onnx_fp32_ort(ctx: BenchContext) -> BenchRow:
    return ctx.profile_row(ctx.onnx_fp32(), backend="ort")


def _pytorch_eager(ctx: BenchContext) -> BenchRow:
    """PyTorch eager, fused, same seeded input and thread count: the reference the others are judged against."""
    if ctx.agent is not None:  # the agent runs artifacts; eager PyTorch would time this machine, not the device
        raise BackendUnavailableError(f"PyTorch eager runs on the build machine, not on {ctx.agent.device}")
    model, inputs = ctx.torch_model()
    ctx.pending = Timed(torch_contender(model, inputs, ctx.threads), None, "eager")
    n_bytes = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    return BenchRow(
        name="",
        format="pytorch",
        precision="fp32",
        backend="eager",
        status="ok",
        reason="the reference; size = weights in memory",
        size_mb=n_bytes / 1e6,
        parity_cosine=1.0,
    )


def int8_placement(ctx: BenchContext) -> Artifact:
    """edgeformer INT8 for ORT CPU: the transformer-aware plan refined by the latency-aware placement search."""

    fp32 = ctx.onnx_fp32()
    search = SearchConfig(
        threads=ctx.threads or 2, time_budget_s=SEARCH_BUDGET_S, max_candidates=12, max_sensitivity_groups=0
    )
    config = QuantConfig(search=search)
    # with --device the search times its candidates there: a placement is only as good as the device it was timed on
    # one profile per call: the search's comparator calls it once per round and pairs the rounds itself
    latency = None if ctx.agent is None else ctx.agent.latency_fn(ctx.profile_config, backend="ort", rounds=1)
    return ctx.artifact(
        "onnx-int8",
        lambda dest: quantize(fp32, config, calib=ctx.calib or "synthetic", out=dest, overwrite=True, latency=latency),
    )


def int8_preset(target: str) -> Callable[[BenchContext], Artifact]:
    """edgeformer INT8 with the QDQ preset of ``target`` (``"openvino"``, ``"tensorrt"``) and its default plan."""

    def make(ctx: BenchContext) -> Artifact:

        fp32 = ctx.onnx_fp32()
        # the default plan: the search times on ORT CPU, which says nothing about OpenVINO or TensorRT kernels
        config = QuantConfig.for_target(target, search=SearchConfig(enabled=False))
        return ctx.artifact(
            f"onnx-int8-{target}",
            lambda dest: quantize(fp32, config, calib=ctx.calib or "synthetic", out=dest, overwrite=True),
        )

    return make


def _int8_ort(ctx: BenchContext) -> BenchRow:
    return _noted(ctx.profile_row(int8_placement(ctx), backend="ort"), "edgeformer placement", ctx)


def _int8_static_defaults(ctx: BenchContext) -> BenchRow:
    """The peer: ``onnxruntime.quantization.quantize_static`` with its defaults, same calibration data."""
    fp32 = ctx.onnx_fp32()
    art = ctx.artifact("onnx-int8-static-defaults", lambda dest: quantize_static_defaults(fp32, ctx.calib, dest))
    return _noted(ctx.profile_row(art, backend="ort"), "ORT quantize_static defaults", ctx)


def _noted(row: BenchRow, what: str, ctx: BenchContext) -> BenchRow:
    calib = "synthetic inputs (pipeline check; pass --calib)" if ctx.calib is None else str(ctx.calib)
    return dataclasses.replace(row, reason=f"{what}; calibrated on {calib}; {row.reason}".strip("; "))


def compiled(
    target: str,
    precision: str,
    source: Callable[[BenchContext], Artifact],
    what: str = "",
    *,
    key: str | None = None,
    **options: Any,
) -> Callable[[BenchContext], BenchRow]:
    """A row that compiles ``source(ctx)`` for ``target`` at ``precision`` and times it on that target's runtime.

    ``key`` names the artifact's folder in the report (default ``<target>-<precision>``); ``options`` are fields
    of the target's compile config. Whether the backend and the precision can run here at all is asked of the same
    functions ``edgeformer doctor`` reports from (``available()``, :func:`~edgeformer.profiling.precision_unavailable`).
    """
    backend = "ort" if target == "ort" else target

    def run(ctx: BenchContext) -> BenchRow:
        if ctx.agent is not None:
            reason = ctx.remote_unavailable(backend, precision)
        else:
            reason = get_backend(backend).available() or precision_unavailable(backend, precision)
        if reason:  # before building anything: the artifact could not be timed here, or not usefully
            raise BackendUnavailableError(f"{target} cannot run here: {reason}")  # one reason, one shared footnote
        src = source(ctx)
        opts = {**options, **({"threads": ctx.threads} if target == "ort" else {})}
        art = ctx.artifact(
            key or f"{target}-{precision}",
            lambda dest: compile(src, target=target, precision=precision, out=dest, overwrite=True, **opts),
        )
        row = ctx.profile_row(art, backend=backend)
        return dataclasses.replace(row, reason=f"{what}; {row.reason}".strip("; ")) if what else row

    return run


def _openvino_nncf(ctx: BenchContext) -> BenchRow:
    """The peer: NNCF's post-training INT8 (transformer preset) on the same calibration data, run by OpenVINO."""
    calib = Path(ctx.calib) if ctx.calib is not None else None  # None: NNCF on seeded synthetic inputs

    # as many samples as edgeformer's own INT8 rows calibrate on, drawn by the same seeded split
    row = compiled(
        "openvino", "int8", _fp32, key="openvino-int8-nncf", nncf=True, calib=calib, calib_size=QuantConfig().calib_size
    )(ctx)
    return _noted(row, "NNCF INT8 (transformer model type)", ctx)


def quantize_static_defaults(fp32: Artifact, calib: Any, dest: Path) -> Artifact:
    """Quantize ``fp32`` with ``quantize_static``'s defaults (QDQ, s8/s8, per-tensor, every op type) as an artifact.

    The comparison point for edgeformer's recipe: what a user gets from ORT without tuning. Calibrated on
    the same samples (``calib``, synthetic when ``None``) and checked against FP32 on the same held-out ones.
    """
    import onnx
    from onnxruntime.quantization import quantize_static

    config = QuantConfig()
    data = open_calibration(
        calib or "synthetic", inputs=fp32.manifest.inputs, preprocessing=fp32.manifest.preprocessing, config=config
    )
    with ArtifactWriter(dest, overwrite=True, inputs=[fp32.path]) as w, scratch_dir("bench-static") as tmp:
        pre = preprocess(fp32.model_path, Path(tmp) / "pre.onnx", dataclasses.replace(config, fuse_gelu=False))
        data.reader.rewind()
        quantize_static(str(pre), str(w.dir / "model.onnx"), data.reader)
        fid = compare_outputs(
            run_all(ort_runner(fp32.model_path), data.holdout),
            run_all(ort_runner(w.dir / "model.onnx"), data.holdout),
            rows=True,
            on=data.summary.fidelity_on,
        )
        onnx.checker.check_model(str(w.dir / "model.onnx"))
        manifest = dataclasses.replace(
            fp32.manifest,
            precision="int8",
            main_file="model.onnx",
            step="quantize",
            parent_sha=fp32.sha,
            files={},
            created="",
            tool_versions={},
            step_config={"peer": "onnxruntime.quantization.quantize_static defaults"},
            parity=None,
            fidelity=fid.to_record(),
            calibration=CalibrationRecord.from_dict(data.summary.to_dict()),
            extra={},
        )
        return w.commit(manifest)


def _fp32(ctx: BenchContext) -> Artifact:
    return ctx.onnx_fp32()


def _ort_fp32(ctx: BenchContext) -> Artifact:
    """The ORT-optimized FP32 artifact with ``model.ort`` beside it: the compile the ``ort-fp32`` row makes (same
    key, same options), so the two rows share it whichever runs first."""
    return ctx.artifact(
        "ort-fp32",
        lambda dest: compile(
            ctx.onnx_fp32(),
            target="ort",
            precision="fp32",
            out=dest,
            overwrite=True,
            threads=ctx.threads,
            save_ort_format=True,
        ),
    )


def _ort_format(ctx: BenchContext) -> BenchRow:
    """The same optimized graph saved in ORT's flatbuffer format (``model.ort``): what it saves at start-up."""
    art = ort_format_artifact(_ort_fp32(ctx))
    if art is None:
        raise BackendUnavailableError("the ORT compile wrote no model.ort (save_ort_format)")
    row = ctx.profile_row(art, backend="ort")
    return dataclasses.replace(row, reason=f"ORT format (model.ort); {row.reason}".strip("; "))


# The bench table, in display order. Add a target by writing one producer and one line here.
ROW_PRODUCERS: tuple[RowProducer, ...] = (
    RowProducer("pytorch", "fp32", "eager", _pytorch_eager, ("torch",), peer=True),
    RowProducer("onnx", "fp32", "ort", _onnx_fp32_ort, ORT, peer=True),
    RowProducer("onnx", "int8", "ort", _int8_ort, ORT),
    RowProducer("onnx", "int8", "ort", _int8_static_defaults, ORT, peer=True, variant="static-defaults"),
    RowProducer("ort", "fp32", "ort", compiled("ort", "fp32", _fp32, "ORT-optimized", save_ort_format=True), ORT),
    RowProducer("ort", "fp32", "ort", _ort_format, ORT, variant="ort-format"),
    RowProducer("ort", "fp16", "ort", compiled("ort", "fp16", _fp32, "ORT-optimized"), ORT),
    RowProducer("ort", "int8", "ort", compiled("ort", "int8", int8_placement, "ORT-optimized"), ORT),
    RowProducer("openvino", "fp32", "openvino", compiled("openvino", "fp32", _fp32), OPENVINO, peer=True),
    RowProducer("openvino", "bf16", "openvino", compiled("openvino", "bf16", _fp32), OPENVINO, peer=True),
    RowProducer(
        "openvino",
        "int8",
        "openvino",
        compiled("openvino", "int8", int8_preset("openvino"), "edgeformer QDQ (openvino preset)"),
        OPENVINO,
    ),
    RowProducer("openvino", "int8", "openvino", _openvino_nncf, (*OPENVINO, "nncf"), peer=True, variant="nncf"),
    RowProducer("tensorrt", "fp32", "tensorrt", compiled("tensorrt", "fp32", _fp32), ("tensorrt",)),
    RowProducer("tensorrt", "fp16", "tensorrt", compiled("tensorrt", "fp16", _fp32), ("tensorrt",)),
    RowProducer(
        "tensorrt",
        "int8",
        "tensorrt",
        compiled("tensorrt", "int8", int8_preset("tensorrt"), "edgeformer QDQ (tensorrt preset)"),
        ("tensorrt",),
    ),
    RowProducer("coreml", "fp32", "coreml", compiled("coreml", "fp32", _fp32), ("coremltools",)),
    RowProducer("coreml", "fp16", "coreml", compiled("coreml", "fp16", _fp32), ("coremltools",)),
    RowProducer("coreml", "int8", "coreml", compiled("coreml", "int8", _fp32), ("coremltools",)),
)
