"""``edgeformer predict``: run an artifact on images or wavs, with its recorded preprocessing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..artifact import Artifact
from ..errors import InvalidInputError
from ..runtimes import backend_for, load
from ..runtimes.arrays import ARRAY_SUFFIXES, read_array_file
from ..runtimes.isolation import probe_before_loading
from .common import (
    ArtifactArg,
    BackendOpt,
    JsonOpt,
    ThreadsOpt,
    VerboseOpt,
    command,
    console,
    err_console,
    print_json,
    setup_logging,
    table,
)


@command
def predict_cmd(
    artifact: ArtifactArg,
    inputs: Annotated[
        list[Path], typer.Argument(help="Image or .wav files, or preprocessed arrays (.npy, or .npz with one array).")
    ],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Labels to show per input.")] = 5,
    backend: BackendOpt = "auto",
    threads: ThreadsOpt = None,
    isolate: Annotated[
        bool,
        typer.Option(
            help="Load and run the model once in a child process first, so that a model that crashes or hangs the "
            "native runtime is an error (exit 3) instead of the end of this command; costs one more load of the model "
            "(about 0.6 s for a small one). The limit is $EDGEFORMER_PROBE_TIMEOUT seconds (default 300)."
        ),
    ] = True,
    verbose: VerboseOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Classify inputs with an artifact; preprocessing and labels come from its manifest (no torch needed).

    The backend defaults to the one the artifact's format implies (an OpenVINO IR runs on OpenVINO, ...).

    \b
    Examples:
      edgeformer predict build/l1 cat.jpg dog.png --top-k 3
      edgeformer samples -o samples && edgeformer export digits_shvit -o digits
      edgeformer predict digits samples/digits/*.png -k 1
    """
    setup_logging(verbose)
    art = Artifact.load(artifact)
    if isolate:  # a refusal (an op the runtime lacks) is left to the load below, which names the op and node
        probe_before_loading(art, backend_for(art, backend), refusal_ok=True)
    predictor = load(art, backend=None if backend == "auto" else backend, threads=threads)
    results = {}
    for path in inputs:
        try:
            x = read_array_file(path, predictor.input.name) if path.suffix.lower() in ARRAY_SUFFIXES else path
            results[str(path)] = [p.to_dict() for p in predictor.predict(x, top_k=top_k)]
        except InvalidInputError as e:
            raise _naming(e, path) from e
    if predictor.random_init:  # one line on stderr, once the inputs ran (an error stays the first line there)
        err_console.print(
            f"warning: {artifact} has random-init weights: labels are noise; export a trained model "
            "(edgeformer models list) or export with --checkpoint",
            markup=False,
            highlight=False,
        )
    if json_out:
        print_json(results)
        return
    rows = [
        (path if i == 0 else "", p["label"], p["index"], f"{p['score']:.4f}")
        for path, preds in results.items()
        for i, p in enumerate(preds)
    ]
    m = predictor.session.artifact.manifest
    title = f"{m.model_name} · {m.format}/{m.precision} on {predictor.session.backend}, top-{top_k}"
    console.print(table(title, ("input", "label", "index", "score"), rows))


def _naming(e: InvalidInputError, path: Path) -> InvalidInputError:
    """``e`` with the input file first, as every exit-3 message of predict reads (with several inputs, an array
    of the wrong shape must say which one)."""
    if str(path) in str(e).partition("\n")[0]:
        return e
    named = InvalidInputError(f"{path}: {e}")
    named.__class__ = type(e)  # keep the subclass (InputMismatchError...) and its exit code
    return named
