"""``edgeformer predict``: run an artifact on images or wavs, with its recorded preprocessing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..runtimes import load
from .common import (
    ArtifactArg,
    BackendOpt,
    JsonOpt,
    ThreadsOpt,
    VerboseOpt,
    command,
    console,
    print_json,
    setup_logging,
    table,
)


@command
def predict_cmd(
    artifact: ArtifactArg,
    inputs: Annotated[list[Path], typer.Argument(help="Image or .wav files (or .npy preprocessed arrays).")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Labels to show per input.")] = 5,
    backend: BackendOpt = "ort",
    threads: ThreadsOpt = None,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Classify inputs with an artifact; preprocessing and labels come from its manifest (no torch needed).

    Example: edgeformer predict build/l1 cat.jpg dog.png --top-k 3
    """
    import numpy as np

    setup_logging(verbose)
    predictor = load(artifact, backend=backend, threads=threads)
    results = {}
    for path in inputs:
        x = np.load(path, allow_pickle=False) if path.suffix == ".npy" else path
        results[str(path)] = [p.to_dict() for p in predictor.predict(x, top_k=top_k)]
    if json_out:
        print_json(results)
        return
    for path, preds in results.items():
        rows = [(p["label"], p["index"], f"{p['score']:.4f}") for p in preds]
        console.print(table(path, ("label", "index", "score"), rows))
