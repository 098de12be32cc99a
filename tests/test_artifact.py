"""Artifacts: manifest round trip, hash verification, embedded manifests, and atomic writes under SIGKILL."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgeformer
from edgeformer.artifact import (
    MANIFEST_NAME,
    ONNX_METADATA_KEY,
    Artifact,
    ArtifactWriter,
    Manifest,
    TensorSpec,
    check_output_path,
    input_paths,
)
from edgeformer.errors import ModelFileError, OutputExistsError
from edgeformer.inputs import ImageInput
from edgeformer.modelfile import embed_manifest, read_embedded_manifest

PREPROCESSING = ImageInput(resolution=32, channels=3, mean=(0.5, 0.5, 0.5), std=(0.25,) * 3)


def tiny_proto() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializer=[w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def manifest(**kw) -> Manifest:
    base = dict(
        format="onnx",
        precision="fp32",
        model_name="tiny",
        main_file="model.onnx",
        inputs=(TensorSpec(name="input", shape=("batch", 3), dtype="float32"),),
        outputs=(TensorSpec(name="logits", shape=("batch", 3), dtype="float32"),),
        preprocessing=PREPROCESSING,
        labels=("red", "green", "blue"),
        step_config={"opset": 18, "dynamic_batch": True},
        extra={"parity": {"ok": True}},
    )
    return Manifest(**{**base, **kw})


def write_artifact(dest: Path, m: Manifest | None = None, overwrite: bool = False) -> Artifact:
    m = m or manifest()
    with ArtifactWriter(dest, overwrite=overwrite) as w:
        proto = tiny_proto()
        embed_manifest(proto, m)
        onnx.save(proto, w.dir / m.main_file)
        return w.commit(m)


def test_manifest_round_trips_through_json():
    m = manifest(files={"model.onnx": "ab" * 32}, tool_versions={"onnx": onnx.__version__}, created="2024-01-01")
    again = Manifest.from_dict(json.loads(m.to_json()))
    assert again == m
    assert again.inputs[0].shape == ("batch", 3) and isinstance(again.labels, tuple)


def test_written_artifact_loads_with_its_manifest_and_hashes(tmp_path):
    art = write_artifact(tmp_path / "art")
    loaded = Artifact.load(tmp_path / "art")
    assert loaded.manifest == art.manifest
    assert set(loaded.manifest.files) == {"model.onnx"} and loaded.sha == art.sha and len(art.sha) == 64
    assert (tmp_path / "art" / MANIFEST_NAME).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left behind


def test_flipped_byte_is_detected_on_load(tmp_path):
    write_artifact(tmp_path / "art")
    model = tmp_path / "art" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256 does not match"):
        Artifact.load(tmp_path / "art")
    Artifact.load(tmp_path / "art", verify=False)  # the escape hatch still reads the manifest


def test_existing_output_is_refused_without_overwrite(tmp_path):
    write_artifact(tmp_path / "art")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_artifact(tmp_path / "art")
    replaced = write_artifact(tmp_path / "art", manifest(model_name="second"), overwrite=True)
    assert Artifact.load(tmp_path / "art").manifest.model_name == "second" == replaced.manifest.model_name


def test_input_paths_guard_the_artifact_folder_or_only_the_bare_file(tmp_path):
    from edgeformer.compile import targets as dispatch

    art = write_artifact(tmp_path / "art")
    assert input_paths(art) == [tmp_path / "art"]
    with pytest.raises(OutputExistsError, match="overlaps"):
        check_output_path(tmp_path / "art" / "inside", input_paths(art))
    bare = tmp_path / "net.onnx"
    bare.write_bytes(art.model_path.read_bytes())
    assert input_paths(Artifact.load(bare)) == [bare]  # not its folder: an output beside it is fine
    check_output_path(tmp_path / "net-ort-fp32", input_paths(Artifact.load(bare)))
    assert dispatch.input_paths is input_paths  # the old import path still works


def test_embedded_manifest_round_trips_without_file_hashes():
    proto = tiny_proto()
    m = manifest(files={"model.onnx": "00" * 32})
    embed_manifest(proto, m)
    embed_manifest(proto, m)  # replaces, never duplicates
    assert [p.key for p in proto.metadata_props].count(ONNX_METADATA_KEY) == 1
    assert read_embedded_manifest(proto) == dataclasses.replace(m, files={})
    assert read_embedded_manifest(tiny_proto()) is None


def test_corrupt_embedded_manifest_is_an_error():
    proto = tiny_proto()
    proto.metadata_props.add(key=ONNX_METADATA_KEY, value="{not json")
    with pytest.raises(ModelFileError, match="embedded edgeformer manifest is corrupt"):
        read_embedded_manifest(proto, source="x.onnx")


def test_bare_onnx_loads_with_its_embedded_manifest(tmp_path):
    art = write_artifact(tmp_path / "art")
    bare = tmp_path / "copied elsewhere.onnx"
    bare.write_bytes(art.model_path.read_bytes())
    loaded = Artifact.load(bare)
    m = loaded.manifest
    assert loaded.model_path == bare and m.main_file == bare.name
    assert m.preprocessing == PREPROCESSING and m.labels == ("red", "green", "blue") and m.model_name == "tiny"
    assert m.files == {bare.name: art.sha}  # the same bytes as the artifact's model file


def test_bare_onnx_from_elsewhere_gets_a_minimal_manifest(tmp_path):
    path = tmp_path / "foreign.onnx"
    onnx.save(tiny_proto(), path)
    m = Artifact.load(path).manifest
    assert m.preprocessing is None and m.labels is None and m.precision == "fp32" and m.model_name == "foreign"
    assert [(t.name, t.shape) for t in m.inputs] == [("input", ("batch", 3))]


_SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    from edgeformer.artifact import ArtifactWriter
    with ArtifactWriter(sys.argv[1], overwrite=True) as w:
        with open(w.dir / "model.onnx", "wb") as f:
            for i in range(10_000):  # ~10 GB at full speed; the parent kills us long before
                f.write(b"\\0" * (1 << 20))
                f.flush()
                if i == 2:
                    print("writing", flush=True)
                time.sleep(0.01)
    """
)


def test_sigkill_mid_save_leaves_the_previous_artifact_intact(tmp_path):
    dest = tmp_path / "art"
    before = write_artifact(dest)
    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(dest)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(edgeformer.__file__).parents[1])},  # this checkout's edgeformer
    )
    try:
        assert child.stdout.readline().strip() == "writing"
        temp = [p for p in tmp_path.iterdir() if p.name.startswith(".art.edgeformer-tmp-")]
        assert temp and (temp[0] / "model.onnx").stat().st_size >= 3 << 20  # really mid-write
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    after = Artifact.load(dest)  # verifies every hash
    assert after.manifest == before.manifest
    assert sorted(p.name for p in dest.iterdir()) == ["artifact.json", "model.onnx"]
