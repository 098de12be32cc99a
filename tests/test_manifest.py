"""The typed manifest: strict round trips, and manifests of the previous schema still load."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from edgeformer.artifact import Artifact
from edgeformer.compare import CheckRecord, OutputFigures
from edgeformer.errors import ModelFileError
from edgeformer.inputs import AudioInput, ImageInput
from edgeformer.manifest import SCHEMA_VERSION, Checkpoint, Lineage, Manifest, RuntimeSettings, TensorSpec

V1 = Path(__file__).parent / "fixtures" / "manifest_v1.json"  # written by edgeformer 0.1.0 (schema 1)


def test_a_schema_1_manifest_loads_with_its_extra_keys_moved_to_typed_fields():
    d = json.loads(V1.read_text())
    assert d["schema_version"] == 1 and "arch" in d["extra"] and isinstance(d["preprocessing"], dict)
    m = Manifest.load(d, source=str(V1))
    assert m.schema_version == SCHEMA_VERSION
    assert m.preprocessing == ImageInput(resolution=224, crop_pct=0.875, interpolation="bicubic")
    assert m.lineage.arch["embed_dims"] == [128, 224, 320] and m.lineage.label_set == "imagenet"
    assert m.lineage.checkpoint == Checkpoint(file="ck.safetensors", sha256=d["extra"]["checkpoint"]["sha256"])
    # the old parity record does not fit CheckRecord: it is kept in extra as it was written, not in the typed field
    assert m.parity is None and m.extra["parity_v1"] == d["extra"]["parity"]
    assert not {"arch", "label_set", "checkpoint", "parity"} & set(m.extra)
    assert m.extra["exporter"] == "dynamo" and m.files == d["files"]
    assert m.inputs == (TensorSpec(name="input", shape=("batch", 3, 224, 224), dtype="float32"),)


def test_a_schema_2_manifest_round_trips_exactly():
    m = Manifest(
        format="openvino",
        precision="int8",
        model_name="m",
        main_file="model.xml",
        inputs=(TensorSpec(name="wave", shape=("batch", 16000), dtype="float32"),),
        preprocessing=AudioInput(frontend="graph"),
        labels=("yes", "no"),
        lineage=Lineage(family="audio", arch={"depths": [2, 2]}, checkpoint=Checkpoint(file="w.pt", sha256="ab")),
        runtime=RuntimeSettings(device="CPU", inference_precision="bf16", num_streams=1),
        fidelity=CheckRecord(
            cosine=0.99,
            samples=2,
            outputs={"logits": OutputFigures(cosine=0.99, samples=2)},
            min_cosine=0.9,
            ok=True,
            other_files={"model.ort": CheckRecord(skipped="not here")},
        ),
        extra={"convert_seconds": np.float32(1.5)},  # numpy scalars from a step are written as numbers
    )
    back = Manifest.load(json.loads(m.to_json()))
    assert back == dataclasses.replace(m, extra={"convert_seconds": 1.5})
    assert isinstance(back.preprocessing, AudioInput) and back.lineage.checkpoint.sha256 == "ab"
    assert back.fidelity.outputs["logits"].cosine == 0.99 and back.fidelity.other_files["model.ort"].skipped


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.update(colour="red"), r"unknown key 'colour'"),
        (lambda d: d["lineage"].update(arhc={}), r"Manifest\.lineage: unknown key 'arhc'.*did you mean 'arch'"),
        (lambda d: d.update(inputs=[{"name": "x", "shape": [1.5], "dtype": "float32"}]), r"inputs\[0\]\.shape\[0\]"),
        (lambda d: d["preprocessing"].update(kind="video"), r"not an image or audio spec"),
        (lambda d: d["preprocessing"].pop("mean"), r"lacks mean"),
        (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), r"newer than this edgeformer understands"),
    ],
)
def test_a_broken_manifest_is_invalid_input_naming_the_field(edit, match):
    d = Manifest(
        format="onnx", precision="fp32", model_name="m", main_file="model.onnx", preprocessing=ImageInput()
    ).to_dict()
    edit(d)
    with pytest.raises(ModelFileError, match=match) as e:
        Manifest.load(json.loads(json.dumps(d)), source="artifact.json")
    assert e.value.exit_code == 3


def test_an_artifact_folder_with_a_schema_1_manifest_loads(tmp_path):
    (tmp_path / "artifact.json").write_text(V1.read_text())
    art = Artifact.load(tmp_path, verify=False)  # the fixture has no model file beside it
    assert art.manifest.lineage.family is None and art.manifest.preprocessing.resolution == 224
