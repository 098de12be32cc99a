"""What every bench row shares: :class:`BenchContext` (the model, the artifacts made so far, the parity
reference) and :class:`RowProducer` (one target x precision x backend of the table)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..agent import AgentClient
from ..artifact import Artifact
from ..compare import Agreement, CheckRecord, compare_outputs
from ..errors import BackendUnavailableError, ConfigError
from ..export import export
from ..export.onnx import OnnxExportConfig
from ..export.source import prepare_source
from ..models import get_spec
from ..profiling import ProfileConfig, build_feeds
from ..profiling.interleave import Contender, InterleaveConfig
from ..profiling.side_by_side import artifact_contender, model_size_bytes
from ..quant import QuantConfig, open_calibration
from ..runtimes import Session
from .report import BenchConfig, BenchRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timed:
    """A row's timing handle: its contender (named by the driver) and what it times."""

    contender: Contender
    artifact: Artifact | None
    backend: str


def _nothing() -> None:
    return None


@dataclass
class BenchContext:
    """What every producer shares: the model, the output folder, the settings and the artifacts made so far."""

    model: Any  # zoo name or torch.nn.Module
    out: Path
    batch: int
    threads: int | None
    resolution: int | None
    config: BenchConfig
    profile_config: ProfileConfig
    example_inputs: tuple[Any, ...] | None = None
    calib: Any = None  # calibration data of the INT8 rows; None: synthetic (pipeline check, says so in the row)
    _made: dict[str, Any] = field(default_factory=dict)  # results (or errors) of _once, by key
    parity_on: str = ""
    agent: AgentClient | None = None  # --device: rows are timed there; built, checked for parity here
    pending: Timed | None = None  # the last producer's contender, taken by the driver

    def remote_unavailable(self, backend: str, precision: str) -> str | None:
        """Why ``backend`` at ``precision`` cannot run (usefully) on the agent's device, or ``None``."""
        assert self.agent is not None
        found = self.agent.info().backend(backend)
        if found is None or found.reason:
            return f"not on {self.agent.device}: {found.reason if found else 'the agent does not know it'}"
        if precision not in found.precisions:
            return f"{precision} does not run usefully on {self.agent.device} (it runs {', '.join(found.precisions)})"
        return None

    @property
    def model_name(self) -> str:
        return self.model if isinstance(self.model, str) else type(self.model).__name__

    def _once(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()`` once per ``key``; later calls (from other producers) reuse the result or re-raise its error."""
        if key not in self._made:
            try:
                self._made[key] = make()
            except Exception as e:  # remembered so that dependent rows fail with the same reason, without redoing it
                self._made[key] = e
        made = self._made[key]
        if isinstance(made, BaseException):
            raise made
        return made

    def artifact(self, key: str, make: Callable[[Path], Artifact]) -> Artifact:
        """``make(self.out / key)`` once, shared by every producer that asks for ``key``."""
        return self._once(f"artifact:{key}", lambda: make(self.out / key))

    def onnx_fp32(self) -> Artifact:
        """The FP32 ONNX export (made once, parity-checked by the exporter)."""
        return self.artifact("onnx-fp32", self._export_onnx)

    def _export_onnx(self, dest: Path) -> Artifact:

        # a user module's example inputs fix its shape; a zoo model is exported at the bench's batch
        batch = self.batch if isinstance(self.model, str) else None
        config = OnnxExportConfig(batch=batch, resolution=self.resolution)
        return export(
            self.model, fmt="onnx", out=dest, overwrite=True, example_inputs=self.example_inputs, config=config
        )

    def torch_model(self) -> tuple[Any, tuple[Any, ...]]:
        """The fused eval-mode PyTorch model and its timing inputs (built once)."""
        return self._once("torch", lambda: _torch_model_and_inputs(self))

    def profile_row(self, artifact: Artifact, *, backend: str) -> BenchRow:
        """Check ``artifact`` on ``backend`` against PyTorch and return its ``ok`` row, not timed yet.

        The timing happens later, for every row at once, in interleaved rounds (:func:`edgeformer.bench.pipeline.
        bench`); this registers the row's :class:`~edgeformer.profiling.interleave.Contender` in :attr:`pending`.
        """
        self.pending = Timed(self._contender(artifact, backend), artifact, backend)
        fid, problem = self.parity(artifact, backend)
        reason = f"parity vs PyTorch not measured: {problem}" if problem else ""
        if fid is not None and fid.problem:  # NaN/Inf or a missing output: no cosine to rank the row by
            reason = f"parity vs PyTorch unusable: {fid.problem}"
        return BenchRow(
            name="",  # set by the driver from the producer
            format=artifact.format,
            precision=artifact.precision,
            backend=backend,
            status="ok",
            reason=reason,
            size_mb=model_size_bytes(artifact) / 1e6,
            parity_cosine=None if fid is None or fid.problem else fid.cosine,
            top1_agreement=None if fid is None else fid.top1_agreement,
            parity_samples=None if fid is None else fid.samples,
            artifact_path=str(artifact.path),
        )

    def _contender(self, artifact: Artifact, backend: str, name: str = "") -> Contender:
        pc = self.profile_config
        if self.agent is None:
            return artifact_contender(
                name, artifact, backend, threads=pc.threads, batch=pc.batch, resolution=pc.resolution, seed=pc.seed
            )
        agent = self.agent

        def time_round(cfg: InterleaveConfig) -> list[float]:
            # one profile job per round on the device: the agent runs one job at a time, so rows still take turns
            runs = cfg.min_calls if cfg.min_calls == cfg.max_calls else None  # BenchConfig.runs: exact calls
            job = dataclasses.replace(pc, warmup=cfg.warmup, runs=runs, min_time_s=cfg.round_time_s, max_rel_spread=10)
            return [agent.profile(artifact, job, backend=backend).latency.p50_ms]

        return Contender(name, lambda: (_nothing, _nothing), time_round=time_round)

    def aa_contender(self, timed: Timed, name: str) -> Contender:
        """A second, independent session of the same artifact: the A/A row."""
        return self._contender(timed.artifact, timed.backend, name)

    def parity(self, artifact: Artifact, backend: str) -> tuple[Agreement | None, str]:
        """``(agreement with PyTorch, "")`` for ``artifact`` run on ``backend`` (each batch row a sample), or
        ``(None, why not)``.

        A parity failure does not fail the row (the timing is still a fact); the row says why it has no
        cosine, and without one it can never get the fidelity marker.
        """

        try:
            feeds = self._feeds_for(artifact)
            reference = self._reference_outputs(feeds, [t.name for t in artifact.manifest.inputs])
            with Session(artifact, backend=backend, threads=self.threads) as session:
                names = [o.name for o in session.outputs]
                outputs = [[np.asarray(out[n]) for n in names] for out in map(session.run, feeds)]
            return compare_outputs(reference, outputs, rows=True, output_names=names, on=self.parity_on), ""
        except Exception as e:
            log.info("parity of %s on %s not measured", artifact.path, backend, exc_info=True)
            return None, f"{type(e).__name__}: {e}"

    def _feeds_for(self, artifact: Artifact) -> list[dict[str, np.ndarray]]:
        """The parity inputs, made once and shared by every row so that each is judged on the same data.

        With ``calib``: the calibration split's held-out samples (the INT8 rows never calibrated on them,
        and ``QuantConfig``'s seeded split makes them the same ones the quantizer held out). Without:
        seeded standard-normal inputs shaped from the artifact's manifest.
        """
        return self._once("parity-feeds", lambda: self._make_feeds(artifact))

    def _make_feeds(self, artifact: Artifact) -> list[dict[str, np.ndarray]]:
        inputs = artifact.manifest.inputs
        n = self.config.parity_samples
        if self.calib is not None:
            data = open_calibration(
                self.calib,
                inputs=inputs,
                preprocessing=artifact.manifest.preprocessing,
                config=QuantConfig(fidelity_samples=n),
            )
            feeds = list(data.holdout)[:n]
            self.parity_on = f"{len(feeds)} held-out samples of {data.summary.source}"
        else:
            feeds = [
                build_feeds(inputs, batch=self.batch, resolution=self.resolution, seed=self.config.seed + 1 + i)
                for i in range(n)
            ]
            self.parity_on = f"{n} seeded random inputs (pass --calib for real samples and a meaningful top-1)"
        if not feeds:
            raise ConfigError(f"{self.calib}: no held-out samples to check parity on; give more samples.")
        return feeds

    def _reference_outputs(self, feeds: list[dict[str, np.ndarray]], names: list[str]) -> list[list[np.ndarray]]:
        """PyTorch's outputs on the parity feeds (computed once)."""

        def run() -> list[list[np.ndarray]]:
            import torch

            model, _ = self.torch_model()
            with torch.inference_mode():
                return [_flatten(model(*(torch.from_numpy(np.ascontiguousarray(f[n])) for n in names))) for f in feeds]

        return self._once("reference", run)


@dataclass(frozen=True)
class RowProducer:
    """One row of the bench table: ``run(ctx)`` returns its :class:`BenchRow` or raises.

    A row is an artifact ``format`` (``pytorch``, ``onnx``, ``ort``, ``openvino``, ``tensorrt``, ``coreml``) at a
    ``precision`` run by a ``backend`` (``eager``, ``ort``, ``openvino``, ``tensorrt``, ``coreml``); ``variant``
    tells apart rows with the same three (``static-defaults``, ``nncf``). The name is derived from them, once
    (:attr:`name`). ``tools`` are the Python distributions whose versions the row reports; ``peer`` marks a
    baseline a user gets without edgeformer.
    """

    format: str
    precision: str
    backend: str
    run: Callable[[BenchContext], BenchRow]
    tools: tuple[str, ...] = ()
    peer: bool = False
    variant: str = ""

    @property
    def name(self) -> str:
        """``format-precision[-backend][-variant]``; the backend is left out where it is the format's own."""
        backend = [self.backend] if self.backend != self.format else []
        return "-".join([self.format, self.precision, *backend, *([self.variant] if self.variant else [])])


def parity_cosine(parity: Any) -> float | None:
    """The worst measured cosine in a parity report (a manifest's :class:`CheckRecord`, or ``cosine`` keys at any
    depth of dicts and lists), or None when none was measured or a ``problem`` (NaN/Inf, a missing output)
    anywhere leaves the worst unknown."""
    if isinstance(parity, CheckRecord):
        parity = parity.to_dict()
    found: list[float] = []
    problems: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("problem"):
                problems.append(node["problem"])
            for key, value in node.items():
                # "cosine" is a measured value; "min_cosine" next to it is the threshold, not a result
                if key == "cosine" and isinstance(value, int | float) and not isinstance(value, bool):
                    found.append(float(value))
                else:
                    walk(value)
        elif isinstance(node, list | tuple):
            for item in node:
                walk(item)

    walk(parity)
    return min(found) if found and not problems else None


def torch_contender(model: Any, inputs: tuple[Any, ...], threads: int | None) -> Contender:
    """``model(*inputs)`` under ``inference_mode`` with ``threads`` torch threads while open (restored on close)."""
    import torch

    def open_() -> tuple[Callable[[], object], Callable[[], None]]:
        previous = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)

        def call() -> object:
            with torch.inference_mode():
                return model(*inputs)

        return call, lambda: torch.set_num_threads(previous)

    return Contender("", open_)


def _flatten(out: Any) -> list[np.ndarray]:
    """A module's outputs (tensor, tuple/list, dict) as a flat list of arrays, in the order ONNX export uses."""
    if isinstance(out, dict):
        return [a for v in out.values() for a in _flatten(v)]
    if isinstance(out, list | tuple):
        return [a for v in out for a in _flatten(v)]
    return [out.detach().float().cpu().numpy()]


def _torch_model_and_inputs(ctx: BenchContext) -> tuple[Any, tuple[Any, ...]]:
    """The module the ONNX export is made from (same seed, so random-init weights are identical), fused."""
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise BackendUnavailableError("the PyTorch reference row needs torch: pip install torch") from e

    if not isinstance(ctx.model, str) and ctx.example_inputs is None:
        raise ConfigError("benching a user module needs example_inputs (a tuple of tensors shaped like its input).")
    source = prepare_source(
        ctx.model,
        example_inputs=ctx.example_inputs,
        input_spec=None,
        checkpoint=None,
        batch=ctx.batch if isinstance(ctx.model, str) else None,
        resolution=ctx.resolution,
        seed=OnnxExportConfig().seed,
        arch_overrides={},
    )
    return source.module, tuple(source.example_inputs)


def arch_for_resolution(name: str, resolution: int | None) -> dict[str, Any]:
    """Architecture overrides that build zoo model ``name`` for ``resolution`` (``{}`` when none are needed).

    Families whose attention-bias tables depend on the input size carry a ``resolution`` arch field;
    the others take any input size as is.
    """

    if resolution is None:
        return {}
    spec = get_spec(name)
    if spec.input.kind != "image":
        raise ConfigError(f"{name} takes {spec.input.kind} input; --resolution applies to image models only.")
    return {"resolution": resolution} if "resolution" in {f.name for f in dataclasses.fields(spec.arch)} else {}
