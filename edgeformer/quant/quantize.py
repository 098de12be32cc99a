"""``quantize()``: the one quantize step, the same for the API and ``edgeformer quantize``.

``QuantConfig.search`` chooses what runs between one calibration pass and the commit: the placement search
(sensitivity analysis, latency-aware placement, the ``max_drop`` accuracy budget on ``eval_data``, and a report
in the artifact: :mod:`.search`), or with ``SearchConfig(enabled=False)`` and no budget, the core: the
transformer-aware default plan or ``plan`` (:func:`~.core.quantize_core`). Either way the step runs through
:func:`~edgeformer.steps.run_step`, so the same inputs give the same artifact, from the cache the second time.

Example::

    int8 = quantize("build/l1", QuantConfig.for_target("ort-cpu"), calib="imagenet_val/", out="build/l1-int8")
    fast = quantize("build/l1", QuantConfig(search=SearchConfig(enabled=False)), calib="imgs/", out="build/q")
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import onnx

from ..artifact import Artifact, Manifest, input_paths
from ..cache import StepCache
from ..errors import ConfigError
from ..scratch import scratch_dir
from ..steps import USE_DEFAULT_CACHE, StepSpec, artifact_sha, data_fingerprint, run_step
from .config import QuantConfig
from .core import (
    MODEL_FILE,
    Calibration,
    calibrate,
    check_calibration,
    checked_config,
    checked_io,
    fallback_latency,
    fidelity_check,
    quantize_core,
    source_artifact,
)
from .fallback import FidelityFallback, fit_fidelity, timed
from .ort_adapter import write_qdq
from .placement import LatencyFn
from .plan import check_plan
from .recipe import QuantPlan, default_plan
from .report import JSON_NAME, QuantReport, require_plotting, write_report
from .search import search_build


def quantize(
    artifact: Artifact | str | Path,
    config: QuantConfig | None = None,
    *,
    calib: Any = None,
    out: str | Path,
    overwrite: bool = False,
    eval_data: str | Path | None = None,
    max_drop: float | None = None,
    cache: StepCache | None = USE_DEFAULT_CACHE,
    calibration: Calibration | None = None,
    plan: QuantPlan | None = None,
    latency: LatencyFn | None = None,
) -> Artifact:
    """Quantize an FP32 ONNX artifact to INT8 (QDQ) and write it as a new artifact.

    Args:
        artifact: an ONNX artifact folder, a bare ``.onnx`` file, or a loaded :class:`Artifact`.
        config: quantization settings, the search included; ``QuantConfig()`` (the ``ort-cpu`` preset, with
            the placement search) by default.
        calib: an image or wav folder (decoded with the artifact's preprocessing), a ``.npy``/``.npz``
            file, ``"synthetic"`` (pipeline checks only), or a reader with ``get_next``/``rewind``.
        out: the artifact folder to write (atomically).
        overwrite: replace ``out`` if it exists.
        eval_data: labelled eval data (``.npz`` with ``x``/``y`` or a folder of class folders): the report gets
            FP32 and INT8 top-1, and ``max_drop`` is measured on it. Runs the search path even with the search off.
        max_drop: top-1 points the INT8 model may lose vs FP32 on ``eval_data``; sensitive groups go back to float.
        cache: the step cache; keyed by the input's sha256 and manifest, ``config``, ``plan``, ``max_drop`` and
            fingerprints of ``calib`` and ``eval_data`` (a reader, a ``calibration`` or a ``latency`` override has
            none: not cached). ``None`` turns it off (``--no-cache``).
        calibration: instead of ``calib``, what :func:`calibrate` made for this artifact's model with this
            ``config`` (search settings aside); the data is not read for ranges again and the result is
            byte-identical to passing ``calib``.
        plan: the placement to use, made for the *pre-processed* graph (:func:`~.plan.load_plan` reads an
            artifact's ``plan.json``); :func:`default_plan` if omitted. A given plan skips the search.
        latency: the search's timing function (tests, a remote device); :func:`~.placement.ort_latency` by default.

    Returns:
        The new artifact; its manifest's ``calibration`` and ``fidelity`` say what calibration used and how
        close the result is to FP32, ``extra`` holds the ``plan`` and ``ranges`` summaries (and with the search,
        ``placement``: the report's headline figures; the report is ``quant_report.{json,md,png}``), and
        ``fallback`` when the default plan missed the cosine bar: the ops kept float to reach it and their latency
        cost (:mod:`.fallback`; the bar is :meth:`QuantConfig.fidelity_bar`: 0.999 with the search, as
        ``edgeformer quantize`` runs, else ``config.min_cosine``).

    Raises:
        ConfigError: neither or both of ``calib`` and ``calibration``, a ``calibration`` made from another model
            or with other settings, ``max_drop`` without ``eval_data``, ``plan`` with ``eval_data``, or a ``plan``
            naming nodes the pre-processed graph does not have.
        InvalidInputError: the input is not ONNX or is already quantized.
        CalibrationError: unusable calibration data (empty, unreadable, NaN/Inf, too few samples).
        DynamicShapeError: synthetic calibration of a model with dynamic non-batch dimensions.
        BackendUnavailableError: the search's report plot needs matplotlib (the 'export' extra); checked before
            calibrating.
        QualityGateError: outputs diverge from FP32 below the bar even with ``config.fallback_max_ops`` of the
            most sensitive ops in float (the message names them), or below ``config.min_cosine`` with a given
            ``plan``; nothing is written.
        AccuracyBudgetError: no placement meets ``max_drop``.
        OutputExistsError: ``out`` exists (without ``overwrite``) or overlaps the input.
    """
    config = checked_config(config)
    if (calib is None) == (calibration is None):
        raise ConfigError(
            "pass calibration data as calib=... or a calibrate() result as calibration=..., not "
            f"{'both' if calib is not None else 'neither'}."
        )
    if max_drop is not None and eval_data is None:
        raise ConfigError("--max-drop needs labelled eval data (--eval DATA: an .npz with x/y or class folders).")
    if plan is not None and eval_data is not None:
        raise ConfigError(
            "plan= fixes the placement that the accuracy budget would choose on eval_data: pass one or the other "
            "(--plan, or --eval/--max-drop)."
        )
    # a given plan skips the search, whose settings stay in the config (and the model file's embedded manifest):
    # a model rebuilt from a searched artifact's plan.json is byte-identical to it
    searching = plan is None and (config.search.enabled or eval_data is not None)
    src = source_artifact(artifact)
    if calibration is not None:
        check_calibration(calibration, src, config)
    io = checked_io(src)
    calib_fp = data_fingerprint(calib) if calibration is None else None
    eval_fp = data_fingerprint(eval_data) if eval_data is not None else None
    keyed = calib_fp is not None and (eval_data is None or eval_fp is not None) and latency is None
    key = {
        **config.to_dict(),
        "search": config.search.to_dict() if searching else None,  # unused settings must not split the cache
        "calib": calib_fp,
        "eval": eval_fp,
        "max_drop": max_drop,
        "plan": plan.to_dict() if plan is not None else None,
    }
    spec = StepSpec(step="quantize", input_sha=artifact_sha(src) if keyed else None, config=key)

    def build(folder: Path) -> Manifest:
        if searching:
            require_plotting()  # before calibrating: a missing plotter must not cost the whole search
        with scratch_dir("quant") as tmp:
            cal = calibration or calibrate(
                src.model_path,
                calib,
                inputs=io[0],
                preprocessing=src.manifest.preprocessing,
                config=config,
                workdir=tmp,
            )
            if not searching:
                if plan is not None:
                    check_plan(plan, cal.model_path)  # before writing: name the nodes this graph lacks
                return quantize_core(src, config, cal, folder, io=io, plan=plan)
            # the fallback runs before the search, so that the search starts from a plan that meets its bar (its
            # own repair can only return whole groups to float)
            fallback = _search_fallback(src, config, cal, Path(tmp))
            manifest = search_build(
                src,
                config,
                cal,
                folder,
                io=io,
                eval_data=eval_data,
                max_drop=max_drop,
                latency=latency,
                workdir=Path(tmp),
                start=fallback.plan if fallback is not None else None,
            )
            if fallback is None:
                return manifest
            return _record_search_fallback(manifest, fallback, src, config, cal, folder, latency, Path(tmp))

    return run_step(spec, build, out=out, guard=input_paths(src), overwrite=overwrite, cache=cache)


def _search_fallback(src: Artifact, config: QuantConfig, cal: Calibration, tmp: Path) -> FidelityFallback | None:
    """The fidelity fallback on the default plan, at the bar of the search (:meth:`QuantConfig.fidelity_bar`)."""
    bar = config.fidelity_bar(searching=True)
    if bar is None:
        return None
    pre_model = onnx.load(str(cal.model_path))
    measure = fidelity_check(src.model_path, cal.data, config)
    folder = tmp / "fallback"
    folder.mkdir()
    return fit_fidelity(
        cal.model_path,
        cal.ranges,
        default_plan(pre_model, config),
        config,
        bar=bar,
        max_ops=config.fallback_max_ops,
        fidelity=measure,
        feeds=cal.data.fidelity_feeds(config.fidelity_samples)[0][:4],
        workdir=folder,
    )


def _record_search_fallback(
    manifest: Manifest,
    fallback: FidelityFallback,
    src: Artifact,
    config: QuantConfig,
    cal: Calibration,
    folder: Path,
    latency: LatencyFn | None,
    tmp: Path,
) -> Manifest:
    """Time the delivered model against the same placement with the fallback's ops in INT8 (rounds alternate),
    and put both the ops and that cost into the report and the manifest's ``extra["fallback"]``."""
    delivered = QuantPlan.from_dict(json.loads((folder / "plan.json").read_text(encoding="utf-8")))
    all_int8 = delivered.with_nodes(fallback.nodes)
    candidate = write_qdq(cal.model_path, cal.ranges, all_int8, config, tmp / "fallback" / "all_int8.onnx")
    fallback = dataclasses.replace(fallback, candidate=all_int8, candidate_path=candidate)
    fallback = timed(
        fallback, folder / MODEL_FILE, latency or fallback_latency(cal.data, config), threads=config.search.threads
    )
    report_path = folder / JSON_NAME
    extra = {**manifest.extra, "fallback": fallback.to_dict()}
    if report_path.is_file():
        report = QuantReport.from_dict(json.loads(report_path.read_text(encoding="utf-8")))
        report = dataclasses.replace(report, fallback=fallback.to_dict())
        write_report(folder, report)
        extra["placement"] = report.summary()
    return dataclasses.replace(manifest, extra=extra)


__all__ = ["quantize"]
