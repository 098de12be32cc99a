"""``slim``: cut a trained model down to device latency budgets, recover it by distillation, and verify on the device.

For each budget: the search (greedy by default; evolution for comparison) picks a sub-network on the latency
table's predictions and inherited-weight validation accuracy; it is fine-tuned with distillation from the parent,
exported through the normal steps (INT8 too when the table is INT8), and re-measured here, interleaved with the
uniformly width-scaled baseline candidates, which get the same inheritance and fine-tuning. A budget is met when
the measured p50 is at most budget × 1.05; a miss is reported as a miss. Each budget folder is committed whole
(temp + rename) as soon as it is done, so Ctrl-C keeps finished budgets and a rerun skips them.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..agent import Executor
from ..artifact import sha256_file, write_json_atomic
from ..errors import ConfigError, LatencyTableError
from ..models import create_model, get_spec
from ..models.complexity import count_params
from ..models.reference import list_references, load_reference, read_reference_meta
from ..records import Record
from ..scratch import scratch_dir
from .candidates import CandidateJob, build_candidates, candidate_executor
from .data import SlimData, npz_data, reference_data
from .evaluate import Evaluator
from .finetune import finetune
from .model import LatencyModel
from .search import Step, check_feasible, evolution, greedy, pick, uniform
from .slim_report import write_reports
from .space import SearchSpace
from .table import arch_dict, read_table
from .timing import TimingConfig, make_timer

log = logging.getLogger(__name__)

TOLERANCE = 1.05  # a budget is met when measured p50 <= budget * TOLERANCE
# a pick measured over budget is replaced by one predicted faster by the factor it missed by, at most this often
MAX_ATTEMPTS = 3
HEADROOM = 0.6  # the greedy trajectory runs on to this fraction of the smallest budget, for those re-picks
UNIFORM_FRACTIONS = (0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95)
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True, kw_only=True)
class SlimModel(Record):
    kind: str  # "parent", "slim" or "uniform"
    arch: dict[str, Any]
    params: int
    predicted_ms: float | None  # None: widths outside the table (the uniform baseline)
    measured_ms: float
    measured_noise: float
    val_inherited: float | None  # validation top-1 of the inherited weights, before fine-tuning
    top1: float  # test top-1 of the delivered artifact, run by ONNX Runtime
    folder: str | None = None


@dataclass(frozen=True, kw_only=True)
class BudgetResult(Record):
    budget_ms: float
    search: str
    slim: SlimModel
    uniform: SlimModel
    met: bool
    greedy_val: float
    evolution_val: float | None
    better_search: str  # which search found the more accurate (validation, inherited) sub-network
    search_s: float
    breakdown: tuple[tuple[str, float, float], ...]  # (segment, parent ms, slim ms) predicted; 0 = cut
    attempts: tuple[tuple[float, float], ...] = ()  # (predicted, measured) ms of each sub-network tried


@dataclass(frozen=True, kw_only=True)
class SlimReport(Record):
    model: str
    table: str
    device: str
    precision: str
    epochs: int
    seed: int
    parent: SlimModel
    budgets: tuple[BudgetResult, ...]
    greedy_steps: tuple[Step, ...]
    out: str


def _parent(model: str, checkpoint: str | Path | None) -> torch.nn.Module:
    if model in list_references():
        if checkpoint is not None:
            raise ConfigError(f"{model} is a trained reference model with its own weights; drop --checkpoint.")
        return load_reference(model)[0]
    if checkpoint is None:
        raise ConfigError(f"slimming {model} needs its trained weights: pass --checkpoint (zoo weights are random).")
    return create_model(model, checkpoint=checkpoint).eval()


def _data(model: str, data: str | Path | SlimData, num_classes: int, seed: int) -> SlimData:
    if isinstance(data, SlimData):
        return data
    if str(data) == "reference":
        if model not in list_references():
            raise ConfigError(f"--data reference needs a trained reference model, not {model}; pass --data FILE.npz.")
        return reference_data(model, seed)
    return npz_data(data, num_classes, seed)


def _input_spec(model: str) -> Any:
    if model in list_references():
        return read_reference_meta(model).input
    return get_spec(model).input


def _jobs(model: str, space: SearchSpace, data: SlimData, dev: Any) -> Callable[..., CandidateJob]:
    """``job(name, module, scored)``: a candidate job with what every export of this slim run shares."""
    calib = None
    if dev.precision == "int8":
        x, _ = data.train(0)
        calib = x[np.random.default_rng(0).permutation(len(x))[:128]]
    shared = {
        "zoo_model": space.zoo_model,
        "input_spec": _input_spec(model),
        "example": data.val[0][:1].copy(),
        "precision": dev.precision,
        "backend": dev.backend,
        "calib": calib,
    }

    def job(name: str, module: torch.nn.Module, scored: bool = True) -> CandidateJob:
        return CandidateJob(name=name, module=module, test=data.test if scored else None, **shared)

    return job


def _save_checkpoint(module: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}, str(path))


def slim(
    model: str,
    *,
    table: str | Path,
    budgets_ms: Sequence[float],
    out: str | Path,
    data: str | Path | SlimData = "reference",
    checkpoint: str | Path | None = None,
    search: str = "greedy",
    compare: bool = True,
    epochs: int = 3,
    seed: int = 0,
    progress: Progress | None = None,
    device: str | None = None,
    token: str | None = None,
    executor: Executor | None = None,
) -> SlimReport:
    """Slim ``model`` to each of ``budgets_ms`` (see the module docstring); returns the typed report, also written
    to ``out`` (``report.json``/``.md``/``.html``, ``pareto.csv``/``.png``, one folder per budget).

    ``executor`` builds the candidates (export -> quantize -> evaluate, :mod:`.candidates`): one at a time here by
    default; a :class:`~edgeformer.agent.RayExecutor` builds each batch as parallel Ray tasks. The artifacts are
    the same either way; timing always runs here (or on the agent), after a batch is built.
    """
    if search not in ("greedy", "evolution"):
        raise ConfigError(f"--search must be greedy or evolution, not {search!r}.")
    if not budgets_ms or any(b <= 0 for b in budgets_ms):
        raise ConfigError(f"give one or more positive --budget-ms, got {list(budgets_ms)}.")
    if epochs < 0:
        raise ConfigError(f"--epochs must be >= 0, got {epochs}.")
    out = Path(out)
    t = read_table(table)
    if t.model != model:
        raise LatencyTableError(f"{table} is the latency table of {t.model}, not {model}; build one for {model}.")
    dev = t.device
    timing = TimingConfig(threads=dev.threads, rounds=7)
    where = device if device is not None else (None if dev.host == "local" else dev.host)
    timer = make_timer(where, dev.backend, dev.threads, dev.precision, timing, token)  # re-measures on the device
    lm = LatencyModel.load(table, device=timer.device)
    space = lm.space
    for b in budgets_ms:
        check_feasible(space, lm, b)  # every budget is checked before any work
    parent = _parent(model, checkpoint)
    data = _data(model, data, space.parent.num_classes, seed)
    evaluate = Evaluator(parent, data, seed=seed)
    say = progress or (lambda d, n, w: None)
    job = _jobs(model, space, data, dev)
    out.mkdir(parents=True, exist_ok=True)
    ex = executor if executor is not None else candidate_executor()  # local: nothing to close
    with scratch_dir("slim") as tmp:
        work = Path(tmp)
        say(0, len(budgets_ms) + 1, "measuring the parent")
        ((parent_path, parent_top1),) = build_candidates([job("parent", parent)], ex, work)
        (pt,) = timer.time([parent_path])
        parent_rec = SlimModel(
            kind="parent",
            arch=arch_dict(space.parent),
            params=count_params(parent),
            predicted_ms=lm.predict_ms(space.parent),
            measured_ms=pt.p50_ms,
            measured_noise=pt.noise,
            val_inherited=evaluate(space.parent),
            top1=parent_top1,
        )
        started = time.perf_counter()
        floor = lm.predict_ms(space.smallest())
        path, steps = greedy(
            space,
            lm,
            evaluate,
            max(floor, HEADROOM * min(budgets_ms)),
            progress=lambda i, w: say(0, len(budgets_ms) + 1, f"greedy step {i}: {w}"),
        )
        greedy_s = (time.perf_counter() - started) / len(budgets_ms)

        def report_of(results: list[BudgetResult]) -> SlimReport:
            return SlimReport(
                model=model,
                table=str(table),
                device=dev.summary(),
                precision=dev.precision,
                epochs=epochs,
                seed=seed,
                parent=parent_rec,
                budgets=tuple(results),
                greedy_steps=tuple(steps),
                out=str(out),
            )

        results = []
        for i, budget in enumerate(sorted(budgets_ms, reverse=True)):
            folder = out / f"budget-{budget:g}ms"
            if (folder / "slim.json").exists():
                results.append(BudgetResult.from_json((folder / "slim.json").read_text(), where=str(folder)))
                continue
            say(i + 1, len(budgets_ms) + 1, f"{budget:g} ms: search")
            g_arch, _g_ms, g_val = pick(path, budget)
            e_val, search_s = None, greedy_s
            chosen = g_arch
            if compare or search == "evolution":
                started = time.perf_counter()
                e_arch, _, e_val = evolution(space, lm, evaluate, budget, seed=seed, seeds=[g_arch])
                if search == "evolution":
                    chosen, search_s = e_arch, time.perf_counter() - started
            better = (
                "tie" if e_val is None or abs(e_val - g_val) < 1e-9 else ("evolution" if e_val > g_val else "greedy")
            )
            say(i + 1, len(budgets_ms) + 1, f"{budget:g} ms: fine-tuning")

            def repick(target: float) -> Any:
                if search == "evolution":
                    return evolution(space, lm, evaluate, max(target, floor), seed=seed)[0]
                return pick(path, target)[0] if target >= path[-1][1] else path[-1][0]

            result = _deliver(
                repick,
                parent_path,
                job,
                ex,
                space,
                lm,
                parent,
                data,
                evaluate,
                chosen,
                budget,
                work / f"b{i}",
                timer,
                epochs,
                seed,
                search,
                g_val,
                e_val,
                better,
                search_s,
            )
            lineage = {
                "parent": model,
                "parent_checkpoint": _checkpoint_record(model, checkpoint),
                "parent_arch": arch_dict(space.parent),
                "arch": result.slim.arch,
                "latency_table": str(table),
                "device": dev.to_dict(),
                "search": search,
                "epochs": epochs,
                "seed": seed,
                "distillation": "soft KD from the parent, T=2, alpha 0.5 (edgeformer.nas.finetune)",
            }
            _commit(work / f"b{i}" / "folder", folder, result, lineage)
            results.append(result)
            write_reports(out, report_of(results))  # after every budget: Ctrl-C keeps a report of what is done
    report = report_of(results)
    write_reports(out, report)
    return report


def _checkpoint_record(model: str, checkpoint: str | Path | None) -> dict[str, str] | None:
    if checkpoint is not None:
        return {"file": Path(checkpoint).name, "sha256": sha256_file(Path(checkpoint))}
    if model in list_references():
        meta = read_reference_meta(model)
        return {"file": meta.weights, "sha256": meta.weights_sha256}
    return None


def _deliver(
    repick,
    parent_path,
    job,
    ex,
    space,
    lm,
    parent,
    data,
    evaluate,
    arch,
    budget,
    work,
    timer,
    epochs,
    seed,
    search,
    g_val,
    e_val,
    better,
    search_s,
) -> BudgetResult:
    staged = work / "folder"
    staged.mkdir(parents=True)
    # closed loop: a pick the device runs over budget is replaced by one predicted faster by the factor it missed by
    attempts: list[tuple[float, float]] = []
    target = budget
    for attempt in range(MAX_ATTEMPTS):
        child = finetune(evaluate.child(arch), parent, data, epochs=epochs, seed=seed)
        ((child_path, child_top1),) = build_candidates([job(f"slim{attempt}", child)], ex, work)
        # timed beside the parent, as in the final measurement below: the budget is judged on one protocol
        t, _ = timer.time([child_path, parent_path])
        attempts.append((lm.predict_ms(arch), t.p50_ms))
        if t.p50_ms <= budget * TOLERANCE or attempt == MAX_ATTEMPTS - 1:
            break
        target *= budget / t.p50_ms
        nxt = repick(target)
        if nxt == arch:  # nothing faster is left to try
            break
        log.info("%g ms: measured %.3f ms, re-picking for a predicted %.3f ms", budget, t.p50_ms, target)
        arch = nxt
    # uniform baseline candidates, inherited and BN-recalibrated, timed in one interleaved batch with the slim model
    cands = [uniform(space, f) for f in UNIFORM_FRACTIONS]
    # only timed, so not scored; built in one batch (in parallel on Ray), then timed together
    built = build_candidates([job(f"u{j}", evaluate.child(a), False) for j, a in enumerate(cands)], ex, work)
    cand_paths = [path for path, _ in built]
    timed = timer.time([child_path, *cand_paths])  # only to pick the candidate of the nearest latency
    slim_t, cand_t = timed[0], timed[1:]
    j = min(range(len(cands)), key=lambda k: abs(cand_t[k].p50_ms - slim_t.p50_ms))
    u_arch = cands[j]
    # the same start as the slimmed model: inherited weights with BatchNorm re-estimated, then the same fine-tuning
    u_child = evaluate.child(u_arch)
    if epochs:
        u_child = finetune(u_child, parent, data, epochs=epochs, seed=seed)
    ((u_path, u_top1),) = build_candidates([job("uniform", u_child)], ex, work)
    s_t2, u_t, _ = timer.time([child_path, u_path, parent_path])
    slim_rec = SlimModel(
        kind="slim",
        arch=arch_dict(arch),
        params=count_params(child),
        predicted_ms=lm.predict_ms(arch),
        measured_ms=s_t2.p50_ms,
        measured_noise=s_t2.noise,
        val_inherited=evaluate(arch),
        top1=child_top1,
        folder="model",
    )
    try:
        u_pred = lm.predict_ms(u_arch)
    except LatencyTableError:
        u_pred = None  # uniform widths need not be in the table's width steps
    uni_rec = SlimModel(
        kind="uniform",
        arch=arch_dict(u_arch),
        params=count_params(u_child),
        predicted_ms=u_pred,
        measured_ms=u_t.p50_ms,
        measured_noise=u_t.noise,
        val_inherited=evaluate(u_arch),
        top1=u_top1,
        folder="uniform",
    )
    shutil.copytree(child_path, staged / "model")
    shutil.copytree(u_path, staged / "uniform")
    _save_checkpoint(child, staged / "checkpoint.safetensors")
    _save_checkpoint(u_child, staged / "uniform" / "checkpoint.safetensors")
    write_json_atomic(staged / "arch.json", arch_dict(arch))
    parent_rows = {r.path: r.ms for r in lm.breakdown(space.parent).rows}
    child_rows = {r.path: r.ms for r in lm.breakdown(arch).rows}
    breakdown = tuple((p, parent_rows[p], child_rows.get(p, 0.0)) for p in parent_rows)
    return BudgetResult(
        budget_ms=budget,
        search=search,
        slim=slim_rec,
        uniform=uni_rec,
        met=slim_rec.measured_ms <= budget * TOLERANCE,
        greedy_val=g_val,
        evolution_val=e_val,
        better_search=better,
        search_s=search_s,
        breakdown=breakdown,
        attempts=tuple(attempts),
    )


def _commit(staged: Path, folder: Path, result: BudgetResult, lineage: dict[str, Any]) -> None:
    """Write the records into the staged folder and move it into place in one rename."""
    write_json_atomic(staged / "lineage.json", lineage)
    write_json_atomic(staged / "slim.json", result.to_dict())
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(staged, tmp)
    tmp.rename(folder)
