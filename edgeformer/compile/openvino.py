"""ONNX artifact -> OpenVINO IR artifact (``model.xml`` + ``model.bin``), fidelity-checked against the ONNX.

Precisions, and where each one's numerics come from:

* ``fp32``: ``ov.convert_model`` of the ONNX, saved with ``compress_to_fp16=False`` (OpenVINO's default
  would store the weights as fp16) and run with an explicit f32 inference precision (OpenVINO's CPU
  plugin otherwise picks bf16 by itself on CPUs with AMX).
* ``bf16``: the same IR; bf16 is OpenVINO's *inference precision hint*, applied when a session compiles
  the IR for a device. It is recorded in the manifest (``runtime``) and the session sets it
  and reads it back. A CPU without AVX512_BF16/AMX cannot honour it: the IR is still written (it is for
  the device that can), the fidelity check is skipped with that reason, and a session there refuses it.
* ``int8`` from a QDQ artifact (``edgeformer quantize``): OpenVINO reads QuantizeLinear/DequantizeLinear
  pairs as FakeQuantize and runs those layers in int8, so ORT and OpenVINO share the same scales. (Not
  always the same numerics: on SHViT, OpenVINO 2026.4's int8 path on an AVX2 CPU measured cosine ~0 vs ORT
  running the same QDQ model, while NNCF's placement measured 0.99; the fidelity check flags such an IR.)
* ``int8`` with ``nncf=True`` from an fp32 artifact: NNCF post-training quantization (transformer model
  type: attention's Softmax/MatMul inputs stay float where int8 hurts) calibrated on ``calib``, or on
  seeded synthetic inputs with a loud warning when none is given.

Example::

    art = compile_openvino(Artifact.load("build/l1"), OpenVinoConfig(precision="int8", nncf=True, calib=Path("imgs")),
                           out=Path("build/l1-openvino-int8"))
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..artifact import Artifact, Manifest, input_paths
from ..compare import CheckRecord, min_cosine_problem, ort_runner
from ..errors import (
    BackendUnavailableError,
    CalibrationError,
    ConfigError,
    DynamicShapeError,
    ModelFileError,
    QualityGateError,
)
from ..export.parity import compare_on, parity_inputs
from ..manifest import CalibrationRecord, RuntimeSettings
from ..modelfile import load_onnx
from ..quant.calibration import open_calibration
from ..quant.config import QuantConfig
from ..records import Record
from ..runtimes.base import SessionOptions, TensorInfo
from ..runtimes.feeds import concrete_shape
from ..runtimes.openvino import (
    INFERENCE_PRECISION,
    PERFORMANCE_HINTS,
    OpenVinoSession,
    available,
    device_facts,
    import_openvino,
    precision_problem,
    probe_in_subprocess,
)
from ..runtimes.unsupported import describe, openvino_unsupported
from ..steps import USE_DEFAULT_CACHE, StepSpec, artifact_sha, data_fingerprint, run_step

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")
# below this the compiled model is not a lower-precision copy of its parent but a different function (int8 of
# trained models measures > 0.98); without a --min-cosine gate it is still written, with a warning recorded.
# Measured: OpenVINO 2026.4's int8 path on an AVX2 CPU turns ORT-style QDQ of SHViT (Q/DQ on an Add of two
# convs feeding a depthwise conv) into cosine ~0 vs ORT running the same QDQ model; NNCF's placement is fine
SUSPECT_COSINE = 0.9
NNCF_PRESETS = ("mixed", "performance")  # mixed: asymmetric activations (better for GELU/Softmax outputs)
_QUANT = ("int8", "mixed")


@dataclass(frozen=True, kw_only=True)
class OpenVinoConfig(Record):
    """How to build an OpenVINO IR. Invalid values raise :class:`ConfigError` listing every problem.

    ``device``, ``num_streams`` and ``performance_hint`` are recorded for the runtime (the IR itself is
    device-neutral). ``nncf`` quantizes an fp32 artifact with NNCF on ``calib_size`` samples from
    ``calib`` (a folder of images or wavs, or a ``.npy``/``.npz`` of preprocessed inputs, read as
    ``edgeformer quantize`` reads it); ``compress_to_fp16`` stores
    weights as fp16 (half the file, decompressed at load; compute keeps the inference precision).
    ``min_cosine`` turns the recorded fidelity into a gate (``None``: record only).
    """

    precision: Literal["fp32", "bf16", "int8"] = "fp32"
    device: str = "CPU"
    num_streams: int = 1
    performance_hint: Literal["LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"] = "LATENCY"
    nncf: bool = False
    calib: Path | None = None
    calib_size: int = 300
    nncf_preset: Literal["mixed", "performance"] = "mixed"
    compress_to_fp16: bool = False
    check_fidelity: bool = True
    fidelity_samples: int = 3
    min_cosine: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.calib, str):  # a str path means the same file; keep the field a Path
            object.__setattr__(self, "calib", Path(self.calib))
        problems = []
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)} (--precision)")
        if self.performance_hint not in PERFORMANCE_HINTS:
            problems.append(f"performance_hint {self.performance_hint!r} is not one of {', '.join(PERFORMANCE_HINTS)}")
        if self.nncf_preset not in NNCF_PRESETS:
            problems.append(f"nncf_preset {self.nncf_preset!r} is not one of {', '.join(NNCF_PRESETS)}")
        if not isinstance(self.device, str) or not self.device:
            problems.append(f"device must be an OpenVINO device name such as 'CPU', got {self.device!r}")
        elif self.device.split(":")[0] in ("AUTO", "MULTI", "HETERO", "BATCH"):
            problems.append(f"device {self.device!r} lets OpenVINO pick devices at run time; name one (CPU, GPU, NPU)")
        for name in ("num_streams", "calib_size", "fidelity_samples", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
                problems.append(f"{name} must be an int >= {0 if name == 'seed' else 1}, got {value!r}")
        for name in ("nncf", "compress_to_fp16", "check_fidelity"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.nncf and self.precision != "int8":
            problems.append(f"nncf quantizes to int8; it does not apply to precision {self.precision!r}")
        if self.calib is not None and not self.nncf:
            problems.append("calib is read by NNCF only; pass nncf=True (--nncf) or drop it")
        if self.calib is not None and not isinstance(self.calib, Path):
            problems.append(f"calib must be a path, got {self.calib!r}")
        if problem := min_cosine_problem(self.min_cosine):
            problems.append(problem)
        if problems:
            raise ConfigError("invalid OpenVINO config: " + "; ".join(problems) + ".")


def check_source(artifact: Artifact, config: OpenVinoConfig) -> None:
    """Refuse a source that cannot give ``config.precision``, naming the command that makes the right one."""
    m, where = artifact.manifest, artifact.path
    if m.format != "onnx":
        raise ModelFileError(
            f"{where}: OpenVINO compiles ONNX artifacts, this one is {m.format!r}; pass the ONNX artifact "
            "`edgeformer export` (or `edgeformer quantize`) wrote."
        )
    quantized = m.precision in _QUANT
    if m.precision not in ("fp32", *_QUANT):
        raise ConfigError(f"{where} is {m.precision}; OpenVINO compiles fp32 or int8 (QDQ) ONNX models.")
    if config.precision == "int8":
        if quantized and config.nncf:
            raise ConfigError(
                f"{where} is already quantized ({m.precision}); drop --nncf to compile its Q/DQ scales as they are, "
                "or pass the fp32 parent to quantize it with NNCF."
            )
        if not quantized and not config.nncf:
            raise ConfigError(
                f"{where} is fp32; OpenVINO int8 comes from a QDQ model (`edgeformer quantize {where}`, then "
                "compile its output) or from NNCF: pass --nncf with --calib DIR."
            )
    elif quantized:
        raise ConfigError(
            f"{where} is quantized ({m.precision}, Q/DQ nodes), which OpenVINO runs in int8 whatever the flag: "
            "pass --precision int8, or compile the float parent for fp32/bf16."
        )


def feed_shapes(artifact: Artifact) -> dict[str, tuple[int, ...]]:
    """Batch-1 shapes of every input; symbolic image sides take the recorded preprocessing resolution."""
    resolution = getattr(artifact.manifest.preprocessing, "resolution", None)
    try:
        infos = [TensorInfo(name=t.name, shape=t.shape, dtype=t.dtype) for t in artifact.manifest.inputs]
        return {i.name: concrete_shape(i, batch=1, resolution=resolution) for i in infos}
    except DynamicShapeError as e:  # its own hint names export flags; compile has none for shapes
        raise DynamicShapeError(
            f"{artifact.path}: sample inputs need concrete shapes, and the artifact records no resolution for its "
            f"symbolic dims ({e}). Re-export with a fixed resolution: `edgeformer export MODEL --resolution N`."
        ) from e


def fidelity_inputs(artifact: Artifact, samples: int, seed: int = 1) -> dict[str, dict[str, np.ndarray]]:
    """Seeded batch-1 inputs for a fidelity check (plus a natural one for images and audio)."""

    kind = getattr(artifact.manifest.preprocessing, "kind", None)
    dtypes = {t.name: t.dtype for t in artifact.manifest.inputs}
    return parity_inputs(feed_shapes(artifact), kind=kind, samples=samples, seed=seed, dtypes=dtypes)


# --- calibration for NNCF ------------------------------------------------------------------------------
def calibration_feeds(
    artifact: Artifact, config: OpenVinoConfig
) -> tuple[list[dict[str, np.ndarray]], CalibrationRecord]:
    """Up to ``calib_size`` feeds for NNCF and a record of where they came from.

    ``calib`` (a folder of images or wavs, a ``.npy``/``.npz``) is read by :mod:`edgeformer.quant.calibration`,
    the same reader ``edgeformer quantize`` uses, through the artifact's preprocessing. Without ``calib`` the
    feeds are seeded synthetic inputs, and the record (and the log) say loudly that the scales fit noise.
    """
    if config.calib is None:
        n = min(config.calib_size, 64)  # noise carries no more information past a few dozen samples
        # the last one is the natural input (a smooth gradient): keep it, it spans the range real inputs reach
        feeds = list(fidelity_inputs(artifact, n, seed=config.seed).values())[-n:]
        warning = (
            f"NNCF calibrated on {len(feeds)} seeded SYNTHETIC inputs because no --calib was given: the int8 scales "
            "fit random noise, not your data, so accuracy will be lower than with real samples. Pass --calib "
            "DIR (a few hundred representative images) for a deployable model."
        )
        log.warning(warning)
        return feeds, CalibrationRecord(
            source="synthetic", kind="synthetic", samples=len(feeds), seed=config.seed, warning=warning
        )

    # the same seeded draw as `edgeformer quantize`, holding out the same samples: NNCF never calibrates on
    # the ones edgeformer's fidelity checks (and bench's parity rows) are measured on
    reading = QuantConfig(calib_size=config.calib_size, seed=config.seed)
    data = open_calibration(
        config.calib, inputs=artifact.manifest.inputs, preprocessing=artifact.manifest.preprocessing, config=reading
    )
    feeds = []
    for _ in range(config.calib_size):  # the reader ends with None; calib_size bounds a reader that never does
        batch = data.reader.get_next()
        if batch is None:
            break
        feeds.append(batch)
    if not feeds:
        raise CalibrationError(f"{config.calib}: no usable calibration samples; pass a folder of real samples.")
    # dtypes are settled by the reader: other float widths are converted, integer arrays (raw pixels) refused
    summary = data.summary.to_dict()
    record = {k: summary[k] for k in ("source", "kind", "found", "used", "skipped", "skipped_samples") if k in summary}
    return feeds, CalibrationRecord.from_dict({**record, "samples": len(feeds)})


def _nncf_quantize(
    model: Any, feeds: list[dict[str, np.ndarray]], config: OpenVinoConfig, source: Path
) -> tuple[Any, str]:
    try:
        import nncf
    except ImportError as e:
        raise BackendUnavailableError(f"NNCF quantization needs nncf: pip install 'edgeformer[openvino]' ({e})") from e
    preset = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    sink = io.StringIO()
    try:
        # NNCF draws progress bars on stdout/stderr; a library must not, so they go to the debug log
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            quantized = nncf.quantize(
                model,
                nncf.Dataset(feeds),
                preset=preset[config.nncf_preset],
                model_type=nncf.ModelType.TRANSFORMER,
                subset_size=len(feeds),
            )
    except KeyError as e:
        # NNCF 3.4 was seen failing this way on a Gather node of a TorchScript-exported EfficientFormer while the
        # dynamo export quantized fine. Not reproduced with today's exporter (optimized or not), but the way out
        # is the same whenever NNCF's graph builder meets a node it cannot map
        raise ModelFileError(
            f"NNCF {nncf.__version__} failed on {source} (KeyError {e}), a failure seen on TorchScript-exported "
            "graphs (Gather nodes). Re-export with the dynamo exporter (the default: `edgeformer export --exporter "
            "dynamo`), or quantize "
            "with `edgeformer quantize` and compile the QDQ model with --precision int8."
        ) from e
    except Exception as e:  # NNCF's failures share no base class; keep the cause chained for a bug report
        raise ModelFileError(
            f"NNCF {nncf.__version__} could not quantize {source} ({type(e).__name__}: {_first_line(e)}); quantize "
            "it with `edgeformer quantize` and compile the QDQ model with --precision int8 instead."
        ) from e
    finally:
        if sink.getvalue():
            log.debug("nncf output:\n%s", sink.getvalue()[-4000:])
    return quantized, nncf.__version__


# --- the build -----------------------------------------------------------------------------------------
def compile_openvino(
    artifact: Artifact, config: OpenVinoConfig, out: Path, overwrite: bool = False, *, cache: Any = USE_DEFAULT_CACHE
) -> Artifact:
    """Convert an ONNX artifact to an OpenVINO IR artifact at ``out``, with fidelity vs the ONNX recorded.

    Cached by the input's sha256, ``config`` and a fingerprint of ``config.calib`` (:mod:`edgeformer.steps`);
    ``cache=None`` rebuilds.

    Raises:
        ConfigError: bad config, or a precision the source cannot give (int8 needs QDQ or ``nncf``).
        ModelFileError: not an ONNX artifact, or OpenVINO/NNCF cannot convert it.
        CalibrationError: an unreadable or mis-shaped ``calib``.
        BackendUnavailableError: openvino (or nncf) not installed (exit 5).
        QualityGateError: fidelity below ``config.min_cosine``; nothing is written.
    """
    if not isinstance(config, OpenVinoConfig):
        raise ConfigError(f"compile_openvino takes an OpenVinoConfig, got {type(config).__name__}.")
    check_source(artifact, config)
    key = {**config.to_dict(), "calib_data": data_fingerprint(config.calib) if config.calib is not None else None}
    spec = StepSpec(step="compile:openvino", input_sha=artifact_sha(artifact), config=key)

    def build(folder: Path) -> Manifest:
        return _build(artifact, config, folder)

    return run_step(spec, build, out=out, guard=input_paths(artifact), overwrite=overwrite, cache=cache)


def _build(artifact: Artifact, config: OpenVinoConfig, folder: Path) -> Manifest:
    """Convert (and with ``nncf`` quantize) into ``folder``, check fidelity; the manifest to commit."""
    reason = available()
    if reason:
        raise BackendUnavailableError(f"OpenVINO compile cannot run here: {reason}")

    load_onnx(artifact.model_path)  # external data is vetted here, before OpenVINO reads any of it
    extra: dict[str, Any] = {"source_precision": artifact.precision}
    if config.precision == "int8":
        extra["int8_from"] = "nncf" if config.nncf else "qdq"
    feeds: list[dict[str, np.ndarray]] = []
    calibration = None
    if config.nncf:  # read the calibration data first: a bad --calib fails in a second, not after conversion
        feeds, calibration = calibration_feeds(artifact, config)
    ov = import_openvino()
    core = ov.Core()
    started = time.perf_counter()
    try:
        model = ov.convert_model(str(artifact.model_path))
    except Exception as e:  # OpConversionFailure and friends share no public base class but Exception
        nodes = openvino_unsupported(artifact.model_path, config.device)
        what = f"has no conversion for {describe(nodes)}" if nodes else f"cannot convert it: {_first_line(e)}"
        raise ModelFileError(
            f"{artifact.model_path}: OpenVINO {ov.__version__.split('-')[0]} {what}; these ops are unsupported by "
            "OpenVINO's ONNX frontend: use --format ort, or change the model."
        ) from e
    if config.nncf:
        model, version = _nncf_quantize(model, feeds, config, artifact.model_path)
        extra["nncf"] = {"version": version, "preset": config.nncf_preset, "model_type": "transformer"}
    extra["convert_seconds"] = round(time.perf_counter() - started, 2)
    facts = _facts(core, config.device)
    runtime = RuntimeSettings(
        device=config.device,
        inference_precision=INFERENCE_PRECISION[config.precision],
        performance_hint=config.performance_hint,
        num_streams=config.num_streams,
    )
    extra["compile_machine"] = facts
    ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=config.compress_to_fp16)
    m = artifact.manifest
    manifest = artifact.child_manifest(
        step="compile",
        format="openvino",
        precision=m.precision if m.precision in _QUANT else config.precision,
        main_file="model.xml",
        step_config=config.to_dict(),
        calibration=calibration,
        runtime=runtime,
        extra=extra,
    )
    report = _fidelity(artifact, Artifact(folder, manifest), config, core, facts.get("reason"))
    return dataclasses.replace(manifest, fidelity=report)


def _facts(core: Any, device: str) -> dict[str, Any]:
    try:
        return device_facts(core, device)
    except BackendUnavailableError as e:  # the IR is device-neutral: compiling for a device elsewhere is fine
        return {"device": device, "present": False, "reason": str(e)}


def _fidelity(parent: Artifact, ir: Artifact, config: OpenVinoConfig, core: Any, absent: str | None) -> CheckRecord:
    """Cosine / max abs / top-1 agreement of the IR on ``config.device`` (at the manifest's ``runtime``
    inference precision) vs ORT on the parent ONNX."""
    if not config.check_fidelity:
        return CheckRecord(skipped="check_fidelity=False")
    hint = INFERENCE_PRECISION[config.precision]
    why = absent or precision_problem(core, config.device, hint)
    try:
        inputs = fidelity_inputs(parent, config.fidelity_samples)
    except DynamicShapeError as e:
        why = why or str(e)
    if why:
        log.warning("OpenVINO %s fidelity not checked on this machine: %s", config.precision, why)
        if config.min_cosine is not None:
            raise QualityGateError(
                f"min_cosine {config.min_cosine} was asked for but the {config.precision} IR cannot run here ({why}); "
                "drop --min-cosine or compile on the target device."
            )
        return CheckRecord(skipped=why)

    if config.precision == "int8":  # a native crash in OpenVINO's int8 kernels must fail the step, not the caller
        probe_in_subprocess(ir.model_path, config.device, hint, inputs)
    session = OpenVinoSession(ir, SessionOptions(providers=(config.device,)))
    try:
        agreement = compare_on(ort_runner(parent.model_path), session.run, inputs)
    finally:
        session.close()
    report = agreement.to_record(sample_names=list(inputs), min_cosine=config.min_cosine)
    log.info(
        "OpenVINO %s IR: worst cosine %.6f vs the ONNX parent%s",
        config.precision,
        agreement.cosine,
        f" ({agreement.problem})" if agreement.problem else "",
    )
    # meets(), not a bare `<`, for both bars: a NaN output would pass `nan < bar`
    if config.min_cosine is None and (suspect := agreement.meets(min_cosine=SUSPECT_COSINE)):
        qdq = config.precision == "int8" and not config.nncf
        hint_int8 = " For int8 from a QDQ model, try NNCF on the fp32 parent (--nncf)." if qdq else ""
        report = dataclasses.replace(
            report,
            warning=(
                f"the {config.precision} IR disagrees with its parent ({suspect}); do not deploy it without checking "
                f"accuracy.{hint_int8}"
            ),
        )
        log.warning("OpenVINO: %s", report.warning)
    if config.min_cosine is not None and (reason := agreement.meets(min_cosine=config.min_cosine)):
        raise QualityGateError(
            f"the OpenVINO {config.precision} IR disagrees with the ONNX parent: {reason}; nothing was written. Try "
            "another precision, real --calib data, or a QDQ model from `edgeformer quantize`."
        )
    return report


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.strip().startswith("Exception from")]
    return lines[0] if lines else type(e).__name__


__all__ = [
    "NNCF_PRESETS",
    "PRECISIONS",
    "OpenVinoConfig",
    "available",
    "calibration_feeds",
    "check_source",
    "compile_openvino",
    "feed_shapes",
    "fidelity_inputs",
]
