"""Slimming candidates built as independent jobs: export -> quantize -> (compile) -> evaluate, on an executor.

Each candidate is self-contained (:class:`CandidateJob` carries the module and the arrays it needs, nothing that
points at this machine), and :func:`build_candidate` hands the finished artifact folder back as bytes. That is
what lets the same jobs run as Ray tasks on another node of a cluster, whose disk the driver cannot see, and
still land as ordinary artifact folders here, where they are timed. Timing never happens in a job: the driver
times on the device (or its agent) with nothing of ours building beside it.

:func:`candidate_executor` gives the executor to build them on: locally one at a time (``torch.export`` keeps
global tracing state and two exports in one process at once fail), or Ray, each in its own worker process, in
parallel.

Example::

    jobs = [CandidateJob(name=f"u{j}", module=m, ...) for j, m in enumerate(children)]
    with candidate_executor("ray", ray_address="auto") as ex:
        built = build_candidates(jobs, ex, work)   # [(artifact folder here, top-1 or None), ...]
"""

from __future__ import annotations

import copy
import io
import shutil
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..agent import Executor, make_executor
from ..compile import compile as compile_artifact
from ..errors import ModelFileError
from ..export.onnx import OnnxExportConfig, export_onnx
from ..inputs import AudioInput, ImageInput
from ..models import get_spec
from ..quant import quantize
from ..quant.config import QuantConfig, SearchConfig
from ..runtimes import Session
from ..scratch import scratch_dir


@dataclass(frozen=True, kw_only=True)
class CandidateJob:
    """One candidate: ``module`` (unfused; the job fuses a copy) exported with ``input_spec``, quantized on
    ``calib`` when ``precision`` is int8, compiled for OpenVINO when that is the ``backend``, and scored on
    ``test`` (``None``: not scored; the candidate is only timed)."""

    name: str  # the folder it lands in, under the driver's work folder
    module: torch.nn.Module
    zoo_model: str
    input_spec: ImageInput | AudioInput
    example: np.ndarray  # one model input, batch 1
    precision: str  # fp32 | int8
    backend: str  # ort | openvino
    calib: np.ndarray | None = None
    test: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True)
class BuiltCandidate:
    name: str
    archive: bytes  # the final artifact folder as an uncompressed tar
    top1: float | None


def candidate_executor(kind: str = "local", ray_address: str | None = None) -> Executor:
    """``"local"``: one candidate at a time in this process; ``"ray"``: Ray tasks (``ray_address`` as
    :func:`~edgeformer.agent.make_executor` takes it)."""
    return make_executor(kind, ray_address=ray_address, max_workers=1)


def export_candidate(job: CandidateJob, work: Path) -> Path:
    """The artifact folder of ``job``'s module under ``work``: export, quantize for int8, compile for OpenVINO."""
    module = copy.deepcopy(job.module).eval().fuse()  # fusing is in place; the caller keeps an unfused model
    hints = get_spec(job.zoo_model).export
    art = export_onnx(
        module,
        out=work / "fp32",
        example_inputs=(torch.from_numpy(np.ascontiguousarray(job.example)),),
        input_spec=job.input_spec,
        config=OnnxExportConfig(dynamo=hints.dynamo, opset=hints.opset),
        cache=None,
    )
    if job.precision == "int8":
        if job.calib is None:
            raise ValueError(f"candidate {job.name}: an int8 candidate needs calibration inputs")
        calib = work / "calib.npy"
        np.save(calib, job.calib)
        art = quantize(art, QuantConfig(search=SearchConfig(enabled=False)), calib=calib, out=work / "int8", cache=None)
        calib.unlink()
    if job.backend == "openvino":
        art = compile_artifact(art, target="openvino", out=work / "openvino", cache=None)
    return art.path


def top1(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Test top-1 (%) of an artifact, run by its runtime in batches of 64."""
    with Session(path) as s:
        name, out = s.inputs[0].name, s.outputs[0].name
        pred = np.concatenate([s.run({name: x[i : i + 64]})[out].argmax(1) for i in range(0, len(x), 64)])
    return float((pred == y).mean() * 100)


def build_candidate(job: CandidateJob) -> BuiltCandidate:
    """Build and score one candidate in a scratch folder of this process; module level, as Ray pickles it."""
    with scratch_dir("slim-candidate") as tmp:
        path = export_candidate(job, Path(tmp))
        score = top1(path, *job.test) if job.test is not None else None
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(path, arcname=".")
    return BuiltCandidate(job.name, buf.getvalue(), score)


def unpack(built: BuiltCandidate, dest: Path) -> Path:
    """``built``'s artifact folder at ``dest`` (which must not exist), members checked by tarfile's data filter."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.unpacking")
    try:
        with tarfile.open(fileobj=io.BytesIO(built.archive), mode="r") as tar:
            tar.extractall(tmp, filter="data")  # refuses absolute paths, '..', links out and device files
    except (tarfile.TarError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelFileError(f"candidate {built.name}: its artifact came back unreadable ({e})") from e
    tmp.rename(dest)
    return dest


def build_candidates(jobs: Sequence[CandidateJob], executor: Executor, work: Path) -> list[tuple[Path, float | None]]:
    """Every job built on ``executor`` (its plain parallel map), then unpacked under ``work/<name>``, in order:
    ``[(artifact folder, top-1 or None), ...]``. The first job that failed raises its own error."""
    built = executor.map(build_candidate, list(jobs))
    return [(unpack(b, work / b.name), b.top1) for b in built]
