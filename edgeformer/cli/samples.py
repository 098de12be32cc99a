"""``edgeformer samples``: real held-out inputs (digit PNGs, keyword WAVs) to try the trained reference models on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..data.samples import DATASETS, reference_models_for, write_samples
from ..errors import BackendUnavailableError
from .common import JsonOpt, OverwriteOpt, command, console, print_json, table


@command
def samples_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write digits/ and keywords/ into.")] = Path(
        "samples"
    ),
    dataset: Annotated[
        list[str] | None,
        typer.Option("--dataset", "-d", help=f"Which samples, repeatable: {', '.join(DATASETS)} (default: all)."),
    ] = None,
    per_class: Annotated[int, typer.Option("--per-class", "-n", min=1, help="Samples per class.")] = 2,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Write held-out inputs of the trained reference models, true label first in each file name.

    \b
    digits/7-0.png      8x8 grayscale digits (digits_shvit, digits_efficientformerv2); needs scikit-learn
    keywords/yes-0.wav  1 s, 16 kHz keyword clips (keywords_audioformer)
    samples.json        every file with its label and the models it fits

    \b
    Example:
      edgeformer samples --out samples
      edgeformer export digits_shvit -o digits && edgeformer predict digits samples/digits/*.png -k 1
    """
    datasets = tuple(dataset or DATASETS)
    try:
        files = write_samples(out, datasets=datasets, per_class=per_class, overwrite=overwrite)
    except BackendUnavailableError as e:
        if "keywords" not in datasets or datasets == ("keywords",):
            raise
        raise BackendUnavailableError(f"{e} The keyword samples need nothing more: --dataset keywords.") from e
    if json_out:
        print_json([{"file": str(f.path), "label": f.label, "dataset": f.dataset} for f in files])
        return
    rows = []
    for name in dict.fromkeys(f.dataset for f in files):
        mine = [f for f in files if f.dataset == name]
        labels = ", ".join(dict.fromkeys(f.label for f in mine))
        rows.append((f"{out / name}/", len(mine), labels, ", ".join(reference_models_for(name))))
    title = f"samples in {out} (held-out: never seen in training; the true label starts each file name)"
    console.print(table(title, ("folder", "files", "labels", "for"), rows))
