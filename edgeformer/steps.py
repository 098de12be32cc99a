"""The one step shape: an artifact (or a zoo model) in, a new artifact folder out, through :func:`run_step`.

Every step (export, quantize, each compile target, later slim) hands :func:`run_step` what identifies its
work and a ``build`` function that writes the model files into a folder and returns the manifest. The helper
owns what the steps used to do four ways: the output-path checks (before any slow work), the atomic writer
(temp folder beside the destination, manifest last, rename), lineage (parent sha, tool versions), the fidelity
gate (a step's ``build`` raises :class:`~edgeformer.errors.QualityGateError` and nothing is written), and the
content-addressed cache.

The cache key is (step, sha256 of the input, the config as JSON, the tool versions): a step run again on the
same input with the same settings returns the cached artifact instead of recomputing (slimming sweeps and
``bench`` re-run the same steps many times). Anything that changes the result must be in ``config`` —
including a fingerprint of calibration data (:func:`data_fingerprint`). ``cache=None``, ``--no-cache`` or
``EDGEFORMER_NO_CACHE=1`` turn it off.

Example::

    def build(folder: Path) -> Manifest:
        onnx.save(proto, folder / "model.onnx")
        return src.child_manifest(step="compile", format="ort", precision="fp32", main_file="model.onnx")

    art = run_step(StepSpec(step="compile:ort", input_sha=src.sha, config=cfg.to_dict()), build,
                   out=out, guard=input_paths(src), overwrite=False)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifact import Artifact, ArtifactWriter, check_output_path
from .cache import StepCache, step_key
from .errors import EdgeformerError
from .manifest import Manifest, sha256_file, tool_versions
from .scratch import scratch_dir

log = logging.getLogger(__name__)

USE_DEFAULT_CACHE: Any = object()  # run_step's default: StepCache.default() (env-configurable, None when off)


@dataclass(frozen=True, kw_only=True)
class StepSpec:
    """What identifies a step's work: same spec, same artifact (so a cached one can stand in).

    ``input_sha`` is the sha256 of what the step reads (an input artifact: :func:`artifact_sha`; an export:
    :func:`export_input_sha`); ``None`` means the input cannot be fingerprinted (your own ``nn.Module``, a
    calibration reader) and the step is never cached.
    """

    step: str  # "export:onnx", "quantize", "compile:openvino", ...
    input_sha: str | None
    config: Mapping[str, Any] = field(default_factory=dict)  # JSON-ready: every setting that changes the result

    def key(self) -> str | None:
        if self.input_sha is None:
            return None
        return step_key(step=self.step, input_sha=self.input_sha, config=self.config, tools=tool_versions())


def run_step(
    spec: StepSpec,
    build: Callable[[Path], Manifest],
    *,
    out: str | Path,
    guard: Iterable[Path] = (),
    overwrite: bool = False,
    cache: StepCache | None = USE_DEFAULT_CACHE,
) -> Artifact:
    """Run one step into the artifact folder ``out``, or copy its result from the cache.

    Args:
        spec: what identifies the work (see :class:`StepSpec`).
        build: writes the model files into the folder it is given and returns their manifest; raising
            (a fidelity gate, bad input) leaves ``out`` as it was.
        out: the artifact folder to write.
        guard: the input paths ``out`` must not be (or contain).
        overwrite: replace an existing ``out``.
        cache: the step cache; the default reads ``EDGEFORMER_CACHE_DIR`` / ``EDGEFORMER_NO_CACHE``.

    Raises:
        OutputExistsError: ``out`` exists without ``overwrite``, or is one of the inputs (before any work).
        EdgeformerError: whatever ``build`` raises.
    """
    out, guard = Path(out), list(guard)
    check_output_path(out, guard, overwrite)  # before the slow part
    cache = StepCache.default() if cache is USE_DEFAULT_CACHE else cache
    key = spec.key() if cache is not None else None
    if key is not None and (hit := _from_cache(cache, key, out, guard, overwrite)) is not None:
        log.info("%s: cached result %s (same input, config and tool versions)", spec.step, key[:12])
        return hit
    with ArtifactWriter(out, overwrite=overwrite, inputs=guard) as w:
        manifest = build(w.dir)
        artifact = w.commit(manifest)
    if key is not None:
        cache.put(key, artifact.path)
    return artifact


def _from_cache(cache: StepCache, key: str, out: Path, guard: list[Path], overwrite: bool) -> Artifact | None:
    with scratch_dir("hit", parent=_existing_parent(out), beside=out.name) as tmp:
        staged = Path(tmp) / "entry"
        if not cache.copy_out(key, staged):
            return None
        try:
            cached = Artifact.load(staged)  # verifies every file against the cached manifest's hashes
        except EdgeformerError as e:  # an entry that passed the cache's own check but is no artifact: rebuild
            log.warning("ignoring a cached step result that does not load (%s); recomputing", e)
            return None
        # through the same writer as a fresh result: atomic rename, the old artifact kept until the new is whole
        with ArtifactWriter(out, overwrite=overwrite, inputs=guard) as w:
            for rel in cached.manifest.files:
                (w.dir / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(staged / rel, w.dir / rel)
            return w.commit(cached.manifest)


def _existing_parent(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.parent


def artifact_sha(artifact: Artifact) -> str:
    """One sha256 over every file of ``artifact`` (a bare file: itself) and what its manifest says about the model,
    as a step's ``input_sha``.

    The manifest counts because a step's output inherits from it (preprocessing, labels, lineage, tensors): two
    artifacts with the same model bytes and other labels must not share a cached result. Its ``created``, tool
    versions and ``extra`` (timings and facts nothing reads back) are left out, so a cached copy keys alike.
    """
    files = artifact.manifest.files or {artifact.model_path.name: sha256_file(artifact.model_path)}
    described = {k: v for k, v in artifact.manifest.to_dict().items() if k not in _NOT_INHERITED}
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]}\n".encode())
    h.update(json.dumps(described, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()


_NOT_INHERITED = frozenset({"files", "created", "tool_versions", "extra"})


def export_input_sha(
    model: Any, checkpoint: str | os.PathLike | None, arch_overrides: Mapping[str, Any], *, weights: str | None = None
) -> str | None:
    """An export's ``input_sha``: sha256 of the model name, the weights (the checkpoint's sha256, else ``weights``,
    the sha256 of the weights the name brings, as a trained reference model does, else ``"random-init"``: the seed
    is in the config) and the architecture overrides as JSON; ``None`` (never cached) for your own ``nn.Module``,
    a checkpoint that is not a file (the export reports it) or overrides JSON cannot hold."""
    if not isinstance(model, str):
        return None
    if checkpoint is not None and not Path(checkpoint).is_file():
        return None
    weights = sha256_file(Path(checkpoint)) if checkpoint is not None else weights or "random-init"
    try:
        text = json.dumps(
            {"model": model, "checkpoint": weights, "arch": dict(arch_overrides)},
            sort_keys=True,
            separators=(",", ":"),
            allow_nan=False,
        )
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def data_fingerprint(source: Any) -> str | None:
    """A fingerprint of calibration or eval data for a step's config, cheap enough to take on every run.

    A file: its sha256. A folder: the relative path, size and modification time of every file (what ``make``
    trusts; reading every image would cost as much as calibrating). ``"synthetic"`` and ``None``: themselves.
    Anything else (a reader object), or a file that cannot be read: ``None``, which the caller turns into "do not
    cache".
    """
    if source is None or source == "synthetic":
        return str(source)
    if not isinstance(source, str | os.PathLike):
        return None
    path = Path(source)
    try:
        if path.is_file():
            return f"file:{sha256_file(path)}"
        if path.is_dir():
            h = hashlib.sha256()
            for p in sorted(path.rglob("*")):
                if p.is_file():
                    st = p.stat()
                    h.update(f"{p.relative_to(path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            return f"dir:{h.hexdigest()}"
    except OSError:  # unreadable: not cached, and the step's own reader reports it with the fix
        return None
    return f"missing:{path}"  # the step itself reports it; the key just must not collide with a real folder


__all__ = ["USE_DEFAULT_CACHE", "StepSpec", "artifact_sha", "data_fingerprint", "export_input_sha", "run_step"]
