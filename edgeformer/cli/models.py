"""``edgeformer models list|info``: browse the zoo and the trained reference models."""

from __future__ import annotations

import fnmatch
from typing import Annotated, Any

import typer

from ..data.labels import resolve_labels
from ..errors import UnknownModelError
from ..models import get_spec, list_models
from ..models.reference import build_reference, list_references, read_reference_meta, reference_arch
from .common import JsonOpt, ModelArg, command, console, print_json, table

app = typer.Typer(help="Browse the model zoo and the trained reference models.", no_args_is_help=True)

# what a zoo entry's weights are: edgeformer ships none for them (nothing is downloaded), so an export without
# --checkpoint has random weights and meaningless labels; a reference model ships trained weights
TRAINED, RANDOM_INIT = "trained", "random-init"


def _input_str(i) -> str:
    if i.kind == "image":
        return f"{i.channels}×{i.resolution}²"
    return f"{i.clip_seconds:g}s@{i.sample_rate // 1000}kHz"


def _labels_str(n: int, labels: tuple[str, ...] | None, label_set: str | None) -> str:
    """The count and the first few names, or the label set's name when it is not shipped (imagenet)."""
    if labels and n <= 12:
        return f"{n}: {' '.join(labels[:3])}{' …' if n > 3 else ''}"
    return f"{n} {label_set}" if label_set else str(n)


def _head(name: str, kind: str, spec, num_classes: int, label_set: str | None) -> dict[str, Any]:
    """The fields every listing and info of a model starts with; ``spec`` is its zoo variant's."""
    return {
        "name": name,
        "kind": kind,
        "family": spec.family,
        "task": spec.task,
        "num_classes": num_classes,
        "label_set": label_set,
    }


def _zoo_row(spec) -> dict[str, Any]:
    return {
        **_head(spec.name, "zoo", spec, spec.num_classes, spec.labels),
        "labels": _labels_str(spec.num_classes, resolve_labels(spec.labels, spec.num_classes), spec.labels),
        "heldout_top1": None,
        "weights": RANDOM_INIT,
        "params_m": spec.params_m,
        "macs_g": spec.macs_g,
        "input": _input_str(spec.input),
        "paper": spec.paper,
    }


def _reference_row(meta) -> dict[str, Any]:
    spec = get_spec(meta.model)
    measured = _measured(lambda: build_reference(meta), meta.input)
    return {
        **_head(meta.name, "reference", spec, len(meta.labels), meta.label_set),
        "labels": _labels_str(len(meta.labels), meta.labels, meta.label_set),
        "heldout_top1": meta.heldout_accuracy,
        "weights": TRAINED,
        "params_m": round(meta.training["params"] / 1e6, 3),
        "macs_g": measured["macs_g"],
        "input": _input_str(meta.input),
        "paper": spec.paper,
        "base": meta.model,
    }


@app.command("list")
@command
def list_cmd(
    pattern: Annotated[str, typer.Argument(help="Shell pattern, e.g. 'shvit_*'.")] = "*",
    json_out: JsonOpt = False,
) -> None:
    """List the trained reference models and the zoo: task, labels, held-out top-1, weights, size and cost.

    "weights" says what edgeformer ships: trained (reference models, exported with their weights) or random-init
    (zoo architectures: pass --checkpoint to export to get real predictions).

    Example: edgeformer models list 'digits*'
    """
    refs = [_reference_row(read_reference_meta(n)) for n in list_references() if fnmatch.fnmatch(n, pattern)]
    rows = refs + [_zoo_row(get_spec(n)) for n in list_models(pattern)]
    if json_out:
        print_json(rows)
        return
    # the family and the paper are in --json and `models info`; the table keeps what tells entries apart in 120 columns
    cols = ("name", "task", "labels", "top-1", "weights", "params (M)", "MACs (G)", "input")
    cells = [
        (
            r["name"],
            r["task"].removesuffix("-classification"),
            r["labels"],
            "—" if r["heldout_top1"] is None else f"{r['heldout_top1']:.1%}",
            r["weights"],
            r["params_m"],
            r["macs_g"],
            r["input"],
        )
        for r in rows
    ]
    title = f"{len(refs)} trained reference models, {len(rows) - len(refs)} zoo models (top-1: held-out accuracy)"
    console.print(table(title, cols, cells))


@app.command("info")
@command
def info_cmd(name: ModelArg, json_out: JsonOpt = False) -> None:
    """Show a model's architecture, input spec, labels, weights, export hints and measured size.

    Example: edgeformer models info shvit_s4 --json
    """
    if name in list_references():
        info = _reference_info(name)
    else:
        try:
            spec = get_spec(name)
        except UnknownModelError:
            raise UnknownModelError.for_name(name, [*list_models(), *list_references()]) from None
        info = _zoo_info(spec)
    if json_out:
        print_json(info)
        return
    rows = []
    for k, v in info.items():
        if isinstance(v, dict):
            rows.extend((f"{k}.{kk}", vv) for kk, vv in v.items())
        else:
            rows.append((k, v))
    console.print(table(name, ("field", "value"), rows))


def _measured(build, input_spec) -> dict[str, float]:
    """Parameters and MACs counted on the meta device (no weights are allocated)."""
    import torch

    from ..models.complexity import count_macs, count_params  # torch: `edgeformer --help` must not need it

    with torch.device("meta"):
        model = build()
    return {
        "params_m": round(count_params(model) / 1e6, 3),
        "macs_g": round(count_macs(build, input_spec.shape(1)) / 1e9, 4),
    }


def _zoo_info(spec) -> dict[str, Any]:
    return {
        **_head(spec.name, "zoo", spec, spec.num_classes, spec.labels),
        "weights": f"{RANDOM_INIT}: edgeformer ships none for zoo models; export with --checkpoint for real labels",
        "arch": spec.arch.to_dict(),
        "input": spec.input.to_dict(),
        "export": spec.export.__dict__,
        "published": {
            "params_m": spec.params_m,
            "macs_g": spec.macs_g,
            "counts_distillation_head": spec.counts_distillation_head,
        },
        "measured": _measured(lambda: spec.build(spec.arch), spec.input),
        "paper": spec.paper,
        "repo": spec.repo,
        "license": spec.license,
        "notes": spec.notes,
    }


def _reference_info(name: str) -> dict[str, Any]:
    meta = read_reference_meta(name)
    spec = get_spec(meta.model)
    return {
        **_head(meta.name, "reference", spec, len(meta.labels), meta.label_set),
        "base": meta.model,
        "labels": ", ".join(meta.labels),
        "weights": {"state": TRAINED, "file": meta.weights, "sha256": meta.weights_sha256},
        "heldout": {
            "top1": meta.heldout_accuracy,
            "samples": meta.heldout_samples,
            "dataset": meta.dataset.get("name"),
            "source": meta.dataset.get("source") or meta.dataset.get("synthesizer"),
        },
        "arch": reference_arch(meta).to_dict(),
        "input": meta.input.to_dict(),
        "export": spec.export.__dict__,
        "measured": _measured(lambda: build_reference(meta), meta.input),
        "training": {
            "seed": meta.seed,
            "command": meta.command,
            "epochs": meta.training.get("epochs"),
            "seconds": meta.training.get("seconds"),
        },
        "try": f"edgeformer samples -o samples && edgeformer export {meta.name} -o {meta.name}",
        "paper": spec.paper,
        "repo": spec.repo,
        "license": spec.license,
    }
