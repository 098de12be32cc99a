"""Artifacts: a folder holding model file(s) plus ``artifact.json``, written atomically.

Every step (export, quantize, compile) reads an :class:`Artifact` and writes a *new* one with
:class:`ArtifactWriter`: files go into a temporary folder beside the destination, the manifest is
written last with the sha256 of every file, and the folder is renamed into place. A reader verifies
the hashes, so a half-copied or edited artifact is detected instead of silently run.

The manifest is also embedded in ONNX ``metadata_props`` (minus the file hashes, which cannot include
the file itself), so a bare ``.onnx`` still loads with the right preprocessing and labels.

Example::

    with ArtifactWriter(out_dir, overwrite=False, inputs=[src.path]) as w:
        onnx.save(proto, w.dir / "model.onnx")
        artifact = w.commit(manifest)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInputError, ModelFileError, OutputExistsError
from .manifest import MANIFEST_NAME as MANIFEST_NAME
from .manifest import ONNX_METADATA_KEY as ONNX_METADATA_KEY
from .manifest import SCHEMA_VERSION as SCHEMA_VERSION
from .manifest import Manifest as Manifest
from .manifest import TensorSpec as TensorSpec
from .manifest import now_iso as now_iso
from .manifest import sha256_file as sha256_file
from .manifest import tool_versions as tool_versions
from .modelfile import manifest_for_bare_file
from .scratch import disk_full, folder_size, is_disk_full, make_scratch_dir, owner_prefix, prune_dead
from .scratch import scratch_dir as scratch_dir  # for steps that need a system temp folder: the owner is in its name


@dataclass(frozen=True)
class Artifact:
    """A loaded artifact: its folder and manifest. Use :meth:`load`; steps create new ones."""

    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.main_file

    @property
    def sha(self) -> str | None:
        return self.manifest.sha

    @property
    def format(self) -> str:
        return self.manifest.format

    @property
    def precision(self) -> str:
        return self.manifest.precision

    def size_bytes(self) -> int:
        return sum((self.path / f).stat().st_size for f in self.manifest.files) or self.model_path.stat().st_size

    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> Artifact:
        """Load an artifact folder (verifying hashes) or a bare model file.

        A bare ``.onnx`` uses the manifest embedded in its metadata, or, for ONNX files from elsewhere,
        a minimal one read from the graph (no preprocessing known).
        """
        path = Path(path)
        if not path.exists():
            raise ModelFileError(f"{path}: no such file or folder.")
        if path.is_dir():
            mpath = path / MANIFEST_NAME
            if not mpath.is_file():
                raise ModelFileError(
                    f"{path}: folder has no {MANIFEST_NAME}; it is not an edgeformer artifact (or a write was "
                    "interrupted). Pass the model file itself, or re-run the step that made it."
                )
            try:
                data = json.loads(mpath.read_text(encoding="utf-8"))
            # ValueError: also an int past Python's 4300 digits; RecursionError: arrays nested thousands deep
            except (ValueError, RecursionError) as e:
                raise ModelFileError(f"{mpath}: corrupt manifest ({e}); re-run the step that made it.") from e
            artifact = cls(path, Manifest.load(data, source=str(mpath)))
            if verify:
                artifact.verify()
            return artifact
        return cls(path.parent, manifest_for_bare_file(path))

    def verify(self) -> None:
        """Check every file against its recorded sha256."""
        for rel, digest in self.manifest.files.items():
            f = _inside(self.path, rel)
            if not f.is_file():
                raise ModelFileError(f"{self.path}: file {rel} listed in the manifest is missing; re-run the step.")
            if sha256_file(f) != digest:
                raise ModelFileError(
                    f"{f}: sha256 does not match the manifest (file changed or truncated); "
                    "re-run the step that made it."
                )

    def child_manifest(self, *, step: str, **fields: Any) -> Manifest:
        """The manifest of an artifact a step derives from this one: what the model *is* (name, task, tensors,
        preprocessing, labels) carries over, lineage points here, and ``fields`` set the rest (format, ...)."""
        m = self.manifest
        inherited = dict(
            model_name=m.model_name,
            task=m.task,
            inputs=m.inputs,
            outputs=m.outputs,
            preprocessing=m.preprocessing,
            labels=m.labels,
            parent_sha=self.sha,
        )
        return Manifest(step=step, **(inherited | fields))

    def summary(self) -> str:
        m = self.manifest
        size = self.size_bytes() / 1e6
        return f"{m.model_name} · {m.format}/{m.precision} · {size:.1f} MB · {self.model_path}"


def _inside(root: Path, rel: str) -> Path:
    p = (root / rel).resolve()
    if root.resolve() not in p.parents and p != root.resolve():
        raise InvalidInputError(f"{root}: manifest names {rel!r}, which lies outside the artifact folder.")
    return p


def check_output_path(dest: Path, inputs: Iterable[Path] = (), overwrite: bool = False) -> None:
    """Refuse an output that is (or contains, or is inside) an input, or that exists without overwrite."""
    dest_r = dest.resolve()
    for src in inputs:
        src_r = Path(src).resolve()
        if dest_r == src_r or dest_r in src_r.parents or src_r in dest_r.parents:
            raise OutputExistsError(f"output {dest} overlaps the input {src}; choose another --out.")
    if dest.exists() and not overwrite:
        raise OutputExistsError(f"output {dest} exists; pass --overwrite to replace it, or choose another --out.")


def input_paths(artifact: Artifact) -> list[Path]:
    """What an output must not overlap: the artifact folder, or for a bare model file that file itself.

    A bare file's :class:`Artifact` has its *parent* folder as ``path``; guarding that folder would refuse
    every output beside the file, including the default one.
    """
    if (artifact.path / MANIFEST_NAME).is_file():
        return [artifact.path]
    return [artifact.path / rel for rel in artifact.manifest.files] or [artifact.model_path]


class ArtifactWriter:
    """Build an artifact in a temp folder beside ``dest`` and rename it into place on :meth:`commit`.

    If the block raises (or the process dies), ``dest`` keeps its previous content: an existing
    artifact is only moved aside after the new one is complete, then deleted. The temp folder is named after
    its owner (:mod:`edgeformer.scratch`), so the next write beside it removes it if the owner was killed; a
    full disk is a :class:`~edgeformer.errors.DiskFullError` naming ``dest``, with the temp folder removed.
    """

    def __init__(self, dest: str | Path, *, overwrite: bool = False, inputs: Iterable[Path] = ()) -> None:
        self.dest = Path(dest)
        check_output_path(self.dest, inputs, overwrite)
        self.overwrite = overwrite
        self.dir: Path = Path()
        self._committed = False

    def __enter__(self) -> ArtifactWriter:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.dir = make_scratch_dir("tmp", self.dest.parent, beside=self.dest.name)  # prunes dead owners' first
        return self

    def commit(self, manifest: Manifest) -> Artifact:
        files = {
            p.relative_to(self.dir).as_posix(): sha256_file(p)
            for p in sorted(self.dir.rglob("*"))
            if p.is_file() and p.name != MANIFEST_NAME
        }
        if manifest.main_file not in files:
            raise ModelFileError(f"internal: {manifest.main_file} was not written to {self.dir}")
        manifest = dataclasses.replace(
            manifest,
            files=files,
            created=manifest.created or now_iso(),
            tool_versions=manifest.tool_versions or tool_versions(),
        )
        for p in self.dir.rglob("*"):  # data must be on disk before the manifest that vouches for it
            if p.is_file():
                _fsync(p)
        write_text_atomic(self.dir / MANIFEST_NAME, manifest.to_json())
        old = None
        if self.dest.exists():
            if not self.overwrite:
                raise OutputExistsError(f"output {self.dest} appeared while writing; pass --overwrite.")
            # owned like a temp folder: if this process dies before the next rename, the next run puts it back
            old = self.dest.parent / owner_prefix("old", self.dest.name).rstrip("-")
            os.replace(self.dest, old)
        os.replace(self.dir, self.dest)
        self._committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(self.dest.parent)
        return Artifact(self.dest, manifest)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._committed:
            return
        written = folder_size(self.dir) if is_disk_full(exc) else 0
        shutil.rmtree(self.dir, ignore_errors=True)
        if is_disk_full(exc):
            raise disk_full(exc, self.dest, written) from exc


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # some filesystems refuse fsync on directories; the rename is still atomic
    with contextlib.suppress(OSError):
        _fsync(path)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` via temp + fsync + rename, so readers never see a torn file (nor a temp file left behind:
    a full disk is a :class:`~edgeformer.errors.DiskFullError`, the temp file of a killed writer is removed by
    the next write in that folder)."""
    path = Path(path)
    prune_dead(path.parent)
    tmp = path.with_name(owner_prefix("tmp", path.name).rstrip("-"))
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        written = tmp.stat().st_size if tmp.exists() else 0
        tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise disk_full(e, path, written) from e
        raise


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON via temp + rename, so readers never see a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable))


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    return str(obj)
