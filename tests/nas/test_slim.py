"""Slimming: the searches stay in the space and under budget, the accuracy signal is real, recovery is
deterministic, and `slim` delivers verified, resumable budget folders (on the digits model, a synthetic table of
this machine's fingerprint: the pipeline is real, the table's numbers are made up)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from edgeformer.errors import SearchInfeasibleError
from edgeformer.models.reference import load_reference
from edgeformer.nas import LatencyModel, SearchSpace, slim
from edgeformer.nas.data import reference_data
from edgeformer.nas.evaluate import Evaluator, top1
from edgeformer.nas.finetune import finetune
from edgeformer.nas.fit import fit_correction
from edgeformer.nas.search import evolution, greedy, pick, uniform
from edgeformer.nas.table import write_table

from .conftest import synthetic_table


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    space = SearchSpace.of("digits_shvit")
    table = synthetic_table(space)
    table = dataclasses.replace(table, correction=fit_correction(table, space))
    path = tmp_path_factory.mktemp("slim") / "t.json"
    write_table(path, table)
    parent, _ = load_reference("digits_shvit")
    data = reference_data("digits_shvit")
    return space, LatencyModel.load(path), path, parent, data


def test_greedy_walks_down_inside_the_space_and_every_budget_picks_a_fitting_point(setup):
    space, lm, _, parent, data = setup
    evaluate = Evaluator(parent, data)
    floor = lm.predict_ms(space.smallest())
    path, steps = greedy(space, lm, evaluate, floor * 1.1)
    ms = [p[1] for p in path]
    assert ms == sorted(ms, reverse=True) and ms[-1] <= floor * 1.1 and len(steps) == len(path) - 1
    assert all(space.contains(a) for a, _, _ in path)
    for budget in (ms[0] * 0.9, max(ms[0] * 0.7, floor * 1.1)):
        arch, pred, _ = pick(path, budget)
        assert pred <= budget and space.contains(arch)
    assert all(s.saved_ms > 0 for s in steps)


def test_evolution_is_seeded_and_under_budget(setup):
    space, lm, _, parent, data = setup
    evaluate = Evaluator(parent, data)
    floor, top = lm.predict_ms(space.smallest()), lm.predict_ms(space.parent)
    budget = floor + 0.6 * (top - floor)
    a = evolution(space, lm, evaluate, budget, population=6, generations=2, seed=1)
    b = evolution(space, lm, evaluate, budget, population=6, generations=2, seed=1)
    assert a == b and a[1] <= budget and space.contains(a[0])


def test_an_unreachable_budget_names_the_smallest_latency(setup):
    space, lm, _, parent, data = setup
    floor = lm.predict_ms(space.smallest())
    with pytest.raises(SearchInfeasibleError, match=f"{floor:.3f} ms"):
        greedy(space, lm, Evaluator(parent, data), floor / 2)


def test_re_estimating_batchnorm_is_what_makes_inherited_children_score(setup):
    space, _, _, parent, data = setup
    from edgeformer.models import slice_weights

    arch = uniform(space, 0.5)
    raw = slice_weights(parent, arch).eval()
    recal = Evaluator(parent, data).child(arch)
    assert top1(recal, *data.val) > top1(raw, *data.val) + 10


def test_recovery_is_deterministic_given_a_seed(setup):
    space, _, _, parent, data = setup
    from edgeformer.models import slice_weights

    arch = space.smallest()
    small = dataclasses.replace(data, train=lambda e: tuple(a[:128] for a in data.train(e)))
    one = finetune(slice_weights(parent, arch), parent, small, epochs=1, seed=3)
    two = finetune(slice_weights(parent, arch), parent, small, epochs=1, seed=3)
    for (k, v), (_, w) in zip(one.state_dict().items(), two.state_dict().items(), strict=True):
        assert torch.equal(v, w), k


@pytest.mark.slow  # two budgets, interrupted and resumed (~2 min); the CLI test runs one budget by default
def test_slim_delivers_a_verified_folder_per_budget_and_resumes(setup, tmp_path):
    space, lm, path, _, _ = setup
    floor, top = lm.predict_ms(space.smallest()), lm.predict_ms(space.parent)
    budget, second = floor + 0.7 * (top - floor), floor + 0.4 * (top - floor)
    out = tmp_path / "out"

    class Stop(Exception):
        pass

    calls = []

    def stop_in_second_budget(done, total, what):
        calls.append(what)
        if what.startswith(f"{second:g} ms: search"):
            raise Stop

    with pytest.raises(Stop):
        slim(
            "digits_shvit",
            table=path,
            budgets_ms=[budget, second],
            out=out,
            epochs=0,
            compare=False,
            progress=stop_in_second_budget,
        )
    first = out / f"budget-{budget:g}ms"
    assert (first / "slim.json").exists() and not (out / f"budget-{second:g}ms").exists()
    done_before = (first / "slim.json").read_text()
    report = slim("digits_shvit", table=path, budgets_ms=[budget, second], out=out, epochs=0, compare=False)
    assert (first / "slim.json").read_text() == done_before  # the finished budget was kept, not redone
    assert len(report.budgets) == 2
    for b in report.budgets:
        folder = out / f"budget-{b.budget_ms:g}ms"
        assert (folder / "model" / "model.onnx").exists() and (folder / "checkpoint.safetensors").exists()
        arch = json.loads((folder / "arch.json").read_text())
        assert space.contains(space.parent.replace(**arch))
        lineage = json.loads((folder / "lineage.json").read_text())
        assert lineage["parent"] == "digits_shvit" and lineage["parent_checkpoint"]["sha256"]
        assert b.met == (b.slim.measured_ms <= b.budget_ms * 1.05)
        assert b.slim.predicted_ms <= b.budget_ms and 0 <= b.slim.top1 <= 100 and b.uniform.measured_ms > 0
    for name in ("report.md", "report.html", "report.json", "pareto.csv", "pareto.png"):
        assert (out / name).stat().st_size > 0
    assert "Why blocks were cut" in (out / "report.md").read_text()
    assert len((out / "pareto.csv").read_text().splitlines()) == 1 + 1 + 2 * 2


@pytest.mark.slow  # slim twice (~3 min): the default run checks the candidate builds themselves on Ray
def test_slim_on_ray_builds_what_the_local_build_builds(setup, tmp_path):
    ray = pytest.importorskip("ray")
    from edgeformer.agent import RayExecutor

    space, lm, path, _, _ = setup
    floor, top = lm.predict_ms(space.smallest()), lm.predict_ms(space.parent)
    budget = floor + 0.6 * (top - floor)
    kw = {"table": path, "budgets_ms": [budget], "epochs": 0, "compare": False}
    local = slim("digits_shvit", out=tmp_path / "local", **kw)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        with RayExecutor() as ex:
            remote = slim("digits_shvit", out=tmp_path / "ray", executor=ex, **kw)
    finally:
        ray.shutdown()
    # what timing cannot change is the same: the parent's score, the search, the first pick and its score
    assert remote.parent.top1 == local.parent.top1 and remote.parent.arch == local.parent.arch
    (lb,), (rb,) = local.budgets, remote.budgets
    assert rb.greedy_val == lb.greedy_val and rb.attempts[0][0] == lb.attempts[0][0]
    if rb.slim.arch == lb.slim.arch:  # the same sub-network (no re-pick on either side): the same artifact score
        assert rb.slim.top1 == lb.slim.top1
    assert (tmp_path / "ray" / f"budget-{budget:g}ms" / "model" / "model.onnx").exists()
