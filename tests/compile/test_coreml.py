"""CoreML target: real coremltools conversions and spec checks (any OS); prediction only on macOS.

The default run converts one small variant per family (every block kind, a few seconds each) plus fp32,
int8, a user module and an ONNX parent; ``-m slow`` converts every zoo model at full size. Off macOS the
prediction tests skip with the reason the backend gives, and the backend refuses to open (exit 5).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeformer.artifact import ONNX_METADATA_KEY, Artifact, Manifest, TensorSpec
from edgeformer.compile.coreml import compile_coreml
from edgeformer.errors import (
    BackendUnavailableError,
    ConfigError,
    InvalidInputError,
    ModelFileError,
    OutputExistsError,
)
from edgeformer.export.coreml import (
    MAIN_FILE,
    CoreMlConfig,
    available,
    compile_coreml_module,
    export_coreml,
)
from edgeformer.inputs import ImageInput
from edgeformer.manifest import Lineage
from edgeformer.models import get_spec, list_models
from edgeformer.runtimes import Session
from edgeformer.runtimes import coreml as rt
from edgeformer.runtimes.base import SessionOptions

torch = pytest.importorskip("torch")
needs_coremltools = pytest.mark.skipif(available() is not None, reason=available() or "")
ON_MACOS = rt.available() is None

# One small variant per family, covering its block kinds (attention, pooling/conv mixers, downsampling)
FAST = {
    "efficientformer": (
        "efficientformer_l1",
        dict(
            widths=(16, 24, 32, 48),
            depths=(1, 1, 2, 2),
            mlp_ratios=((4,), (4,), (4, 4), (4, 4)),
            mixers=(("pool",), ("pool",), ("pool", "mlp"), ("pool", "attn")),
            num_heads=2,
            key_dim=8,
            val_dim=16,
            resolution=64,
            num_classes=10,
        ),
    ),
    "efficientformer_v2": (
        "efficientformerv2_s0",
        dict(
            widths=(16, 24, 32, 48),
            depths=(1, 1, 2, 2),
            mlp_ratios=((4,), (4,), (4, 3), (3, 4)),
            attn=((False,), (False,), (False, True), (False, True)),
            num_heads=2,
            key_dim=8,
            down_num_heads=2,
            down_key_dim=8,
            resolution=64,
            num_classes=10,
        ),
    ),
    "shvit": (
        "shvit_s1",
        dict(
            embed_dims=(32, 64, 96),
            depths=(1, 1, 1),
            partial_dims=(8, 16, 24),
            qk_dims=(16, 16, 16),
            mlp_ratios=((2.0,), (2.0,), (2.0,)),
            attention=((False,), (True,), (True,)),
            num_classes=10,
        ),
    ),
    "audioformer": (
        "audioformer_t",
        dict(depths=(1, 1, 1), mlp_ratios=((3.0,), (3.0,), (3.0,)), attn=((False,), (True,), (True,))),
    ),
}
FAST_RESOLUTION = {"shvit": 64}  # families without a resolution field take it from the config


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """``converted(family, precision)``: the small variant's artifact, converted once per module."""
    cache: dict[tuple[str, str], Artifact] = {}

    def get(family: str, precision: str = "fp16") -> Artifact:
        if reason := available():
            pytest.skip(reason)
        if (family, precision) not in cache:
            name, arch = FAST[family]
            cfg = CoreMlConfig(precision=precision, resolution=FAST_RESOLUTION.get(family))
            out = tmp_path_factory.mktemp("coreml") / f"{name}-{precision}"
            cache[family, precision] = export_coreml(name, out=out, config=cfg, **arch)
        return cache[family, precision]

    return get


def weight_bytes(artifact: Artifact) -> int:
    return (rt.package_path(artifact) / "Data/com.apple.CoreML/weights/weight.bin").stat().st_size


def check_package(artifact: Artifact, precision: str) -> rt.PackageInfo:
    """The package as saved: loads with verified hashes, float32 I/O as the manifest says, the precision inside."""
    loaded = Artifact.load(artifact.path)  # verifies the sha256 of every file in the package
    assert loaded.manifest.main_file == MAIN_FILE and loaded.model_path.is_file()
    info = rt.inspect_package(rt.package_path(loaded))
    assert info.model_type == "mlProgram" and info.opset == "CoreML6"  # iOS16's opset
    assert [(t.name, t.shape, t.dtype) for t in info.inputs] == [
        (t.name, tuple(t.shape), t.dtype) for t in loaded.manifest.inputs
    ]
    assert all(t.dtype == "float32" for t in (*info.inputs, *info.outputs))
    assert [o.name for o in info.outputs] == ["logits"]
    assert info.precision_problems(precision) == []
    assert loaded.manifest.precision == precision and loaded.manifest.format == "coreml"
    assert loaded.manifest.extra["spec"]["ops"] == info.ops
    return info


@pytest.mark.parametrize("family", sorted(FAST))
def test_small_variant_of_each_family_converts_to_fp16(family, converted):
    artifact = converted(family)
    info = check_package(artifact, "fp16")
    name, arch = FAST[family]
    assert artifact.manifest.outputs[0].shape == (1, arch.get("num_classes", get_spec(name).num_classes))
    assert info.ops.get("softmax", 0) >= 1 and info.ops.get("matmul", 0) >= 2  # attention survived as such
    assert info.compute_dtypes["float16"] > 10 * info.compute_dtypes.get("float32", 0)
    assert info.weight_dtypes.get("float32", 0) == 0 and info.weight_dtypes["float16"] > 1000
    if ON_MACOS:
        assert artifact.manifest.fidelity.cosine > 0.99
    else:
        assert artifact.manifest.fidelity.skipped == rt.available() and artifact.manifest.fidelity.cosine is None


def test_every_family_has_a_fast_representative():
    assert {get_spec(n).family for n in list_models()} == set(FAST)


@pytest.mark.slow
@needs_coremltools
@pytest.mark.parametrize("name", list_models())
def test_zoo_model_converts_to_fp16_at_full_size(name, tmp_path):
    artifact = export_coreml(name, out=tmp_path / name, config=CoreMlConfig(precision="fp16"))
    check_package(artifact, "fp16")
    spec = get_spec(name)
    assert artifact.manifest.inputs[0].shape == spec.input.shape(1)
    assert artifact.manifest.outputs[0].shape == (1, spec.num_classes)


def test_fp32_package_holds_no_fp16(converted):
    fp32, fp16 = converted("efficientformer", "fp32"), converted("efficientformer", "fp16")
    info = check_package(fp32, "fp32")
    assert set(info.compute_dtypes) <= {"float32", "int32", "bool"} and "float16" not in info.weight_dtypes
    assert info.ops.get("cast", 0) == 0  # float32 I/O needs no casts around an fp32 program
    assert info.weight_dtypes["float32"] == rt.inspect_package(rt.package_path(fp16)).weight_dtypes["float16"]
    assert weight_bytes(fp32) > 1.9 * weight_bytes(fp16)


def test_int8_package_stores_int8_weights_over_fp16_compute(converted):
    int8, fp16 = converted("efficientformer", "int8"), converted("efficientformer", "fp16")
    info = check_package(int8, "int8")
    n_quantized = info.quantized_weights["int8"]
    assert info.ops["constexpr_affine_dequantize"] == n_quantized >= 5
    weights = info.weight_dtypes
    assert weights["int8"] > 5 * weights["float16"]  # what stays fp16 is the small stuff (biases, norms)
    assert weights["int8"] + weights["float16"] == rt.inspect_package(rt.package_path(fp16)).weight_dtypes["float16"]
    assert weight_bytes(int8) < 0.65 * weight_bytes(fp16)  # int8 data plus fp16 scales and small tensors
    assert int8.manifest.extra["int8"]["granularity"] == "per_channel"


def test_package_metadata_carries_the_manifest(converted):
    artifact = converted("efficientformer")
    info = rt.inspect_package(rt.package_path(artifact))
    embedded = info.embedded_manifest()
    assert embedded == dataclasses.replace(Manifest.from_dict(json.loads(artifact.manifest.to_json())), files={})
    assert (embedded.preprocessing.kind, embedded.preprocessing.resolution) == ("image", 64)
    assert info.description["author"] == "edgeformer" and "efficientformer_l1" in info.description["short_description"]
    assert info.description["version"] == artifact.manifest.tool_versions["edgeformer"]
    assert info.metadata["com.github.apple.coremltools.source_dialect"] == "TorchScript"
    assert ONNX_METADATA_KEY not in info.to_dict()["metadata"]  # the manifest is recorded once, not twice


def test_edited_package_fails_verification(converted, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(converted("efficientformer").path, copy)
    with (copy / "model.mlpackage/Data/com.apple.CoreML/weights/weight.bin").open("r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ModelFileError, match="sha256 does not match"):
        Artifact.load(copy)


def test_audio_log_mel_front_end_converts_inside_the_graph(converted):
    artifact = converted("audioformer")
    info = check_package(artifact, "fp16")
    assert [(t.name, t.shape) for t in info.inputs] == [("waveform", (1, 16000))]
    assert info.ops["conv"] >= 3 and info.ops["log"] == 1 and info.ops["pad"] >= 1  # STFT as convs, then log-mel
    assert not [op for op in info.ops if "fft" in op or "stft" in op]
    assert artifact.manifest.preprocessing.kind == "audio"


class _Net(torch.nn.Module):
    """A small user module returning a dict, as user code often does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm, self.fc = (
            torch.nn.Conv2d(3, 8, 3, padding=1),
            torch.nn.LayerNorm(8),
            torch.nn.Linear(8, 4),
        )

    def forward(self, x):
        features = self.norm(self.conv(x).relu().mean((2, 3)))
        return {"scores": self.fc(features), "features": features}


@needs_coremltools
def test_user_module_with_dict_outputs_converts(tmp_path):
    artifact = compile_coreml_module(
        _Net(), (torch.randn(2, 3, 32, 32),), ImageInput(resolution=32), out=tmp_path / "n"
    )
    m = artifact.manifest
    assert (m.model_name, m.step, m.step_config["batch"]) == ("_Net", "export", 2)
    assert m.extra["weights"] == "the module's own"
    assert [(t.name, t.shape) for t in m.outputs] == [("logits", (2, 4)), ("output_1", (2, 8))]
    assert m.preprocessing.resolution == 32 and m.parent_sha is None
    assert rt.inspect_package(rt.package_path(artifact)).precision_problems("fp16") == []


@needs_coremltools
def test_torch_export_capture_gives_the_same_program(tmp_path):
    x = (torch.randn(1, 3, 16, 16),)
    traced = compile_coreml_module(_Net(), x, out=tmp_path / "trace")
    exported = compile_coreml_module(_Net(), x, config=CoreMlConfig(capture="export"), out=tmp_path / "export")
    assert exported.manifest.extra["capture"] == "export" and exported.manifest.step_config["capture"] == "export"
    ops = [{k: v for k, v in a.manifest.extra["spec"]["ops"].items() if k != "const"} for a in (traced, exported)]
    assert ops[0] == ops[1] and ops[0]["layer_norm"] == 1 and ops[0]["conv"] == 1
    assert [t.shape for t in exported.manifest.outputs] == [(1, 4), (1, 8)]


@needs_coremltools
def test_compile_rebuilds_a_checkpointed_onnx_parent(tmp_path):
    from safetensors.torch import save_file

    from edgeformer.compile.targets import compile as compile_artifact
    from edgeformer.export import export
    from edgeformer.export.onnx import OnnxExportConfig
    from edgeformer.models import create_model

    name, arch = FAST["efficientformer"]
    model = create_model(name, **arch)
    with torch.no_grad():  # trained-looking weights, so a rebuild with other weights could not pass
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ckpt = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    onnx_cfg = OnnxExportConfig(dynamo=False, optimize=False, parity_samples=1)  # the fastest honest parent
    parent = export(name, out=tmp_path / "onnx", config=onnx_cfg, checkpoint=ckpt, **arch)

    with pytest.raises(ConfigError, match=r"weights\.safetensors"):  # the checkpoint is not in the artifact
        compile_coreml(parent, CoreMlConfig(), tmp_path / "x")
    other = tmp_path / "other.safetensors"
    save_file({k: torch.zeros_like(v) for k, v in model.state_dict().items()}, str(other))
    with pytest.raises(ConfigError, match="is not the checkpoint"):
        compile_coreml(parent, CoreMlConfig(checkpoint=other), tmp_path / "x")

    child = compile_artifact(parent, target="coreml", precision="fp16", checkpoint=ckpt, out=tmp_path / "coreml")
    m = child.manifest
    assert (m.step, m.parent_sha, m.model_name) == ("compile", parent.sha, name)
    assert (m.preprocessing, m.labels, m.task) == (
        parent.manifest.preprocessing,
        parent.manifest.labels,
        parent.manifest.task,
    )
    assert [t.name for t in m.inputs] == [t.name for t in parent.manifest.inputs]
    assert m.inputs[0].shape == (1, 3, 64, 64)
    assert m.extra["source_check"]["ok"] and m.extra["source_check"]["outputs"]["logits"]["cosine"] > 0.99999
    assert m.lineage.checkpoint == parent.manifest.lineage.checkpoint and m.extra["weights"] == "checkpoint"
    check_package(child, "fp16")


def _parent(tmp_path: Path, **changes) -> Artifact:
    """A real ONNX artifact record of a zoo model, for refusals decided before any file is read."""
    manifest = Manifest(
        format="onnx",
        precision="fp32",
        model_name="shvit_s1",
        main_file="model.onnx",
        inputs=(TensorSpec(name="input", shape=("batch", 3, 224, 224), dtype="float32"),),
        outputs=(TensorSpec(name="logits", shape=("batch", 1000), dtype="float32"),),
        preprocessing=ImageInput(),
    )
    return Artifact(tmp_path, dataclasses.replace(manifest, **changes))


@pytest.mark.parametrize(
    ("changes", "config", "error", "match"),
    [
        ({"format": "openvino"}, {}, ModelFileError, "compiles ONNX artifacts"),
        ({"precision": "int8"}, {}, ConfigError, "--precision int8"),
        ({"model_name": "MyNet"}, {}, ConfigError, "compile_coreml_module"),
        ({"lineage": Lineage(arch={"embed_dims": [8], "wings": 2})}, {}, ModelFileError, "wings"),
        (
            {"inputs": (TensorSpec(name="input", shape=(1, 3, 224, 224), dtype="float32"),)},
            {"batch": 4},
            ConfigError,
            "fixed batch of 1",
        ),
        ({}, {"resolution": 96}, ConfigError, "resolution 224"),
        ({}, {"checkpoint": Path(__file__)}, ConfigError, "without a checkpoint"),
    ],
    ids=["not-onnx", "quantized", "user-module", "unknown-arch-field", "fixed-batch", "resolution", "stray-ckpt"],
)
def test_compile_refuses_a_parent_it_cannot_rebuild(tmp_path, changes, config, error, match):
    with pytest.raises(error, match=match):
        compile_coreml(_parent(tmp_path, **changes), CoreMlConfig(**config), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_config_lists_every_bad_value():
    with pytest.raises(ConfigError) as e:
        CoreMlConfig(
            precision="int4",
            compute_units="ane",
            minimum_deployment_target="iOS15",
            batch=0,
            capture="fx",
            min_cosine=2,
        )
    for field in ("precision", "compute_units", "minimum_deployment_target", "batch", "capture", "min_cosine"):
        assert field in str(e.value)
    assert CoreMlConfig(checkpoint="w.safetensors").checkpoint == Path("w.safetensors")


def test_export_refuses_an_existing_output_before_converting(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_coreml("shvit_s1", out=tmp_path / "out")


@needs_coremltools
def test_unconvertible_op_is_named_and_nothing_is_written(tmp_path):
    class Bucketize(torch.nn.Module):
        def forward(self, x):
            return torch.bucketize(x, torch.tensor([0.0, 0.5])).float()

    with pytest.raises(InvalidInputError, match="bucketize") as e:
        compile_coreml_module(Bucketize(), (torch.randn(1, 8),), out=tmp_path / "out")
    assert "capture='export'" in str(e.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(ON_MACOS, reason="macOS runs CoreML; the refusal is for other systems")
def test_session_off_macos_raises_backend_unavailable(converted):
    artifact = converted("efficientformer")
    reason = rt.available()
    assert reason == f"CoreML prediction needs macOS (this is {platform.system()})"
    with pytest.raises(BackendUnavailableError, match="CoreML prediction needs macOS") as e:
        Session(artifact, backend="coreml")
    assert e.value.exit_code == 5
    with pytest.raises(BackendUnavailableError, match="needs macOS"):  # the backend itself refuses too
        rt.CoreMlBackend().open(artifact, SessionOptions())


@pytest.mark.skipif(ON_MACOS, reason="macOS runs CoreML; this pins why other systems cannot")
def test_coremltools_itself_cannot_predict_off_macos(converted):
    # the reason fidelity is "not run" here; if a coremltools release can, this fails and the skip can go
    ct = rt.import_coremltools()
    with rt.quiet_coremltools():
        model = ct.models.MLModel(str(rt.package_path(converted("efficientformer"))))
    with pytest.raises(Exception, match="only supported on macOS"):
        model.predict({"input": np.zeros((1, 3, 64, 64), np.float32)})


def test_missing_coremltools_is_reported_with_the_extra():
    code = """
import sys
sys.modules["coremltools"] = None  # what Python does for a package that is not installed: imports fail
from pathlib import Path
from edgeformer.errors import BackendUnavailableError
from edgeformer.export import coreml
from edgeformer.runtimes import coreml as rt
print(coreml.available())
try:
    coreml.export_coreml("shvit_s1", out=Path("unused"))
except BackendUnavailableError as e:
    print(e.exit_code, e)
try:
    rt.import_coremltools()
except BackendUnavailableError as e:
    print(e.exit_code, e)
print(rt.available())
"""
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    extra = "pip install 'edgeformer[coreml]'"
    assert lines[0] == f"CoreML conversion needs coremltools: {extra}"
    assert lines[1] == f"5 CoreML conversion needs coremltools: {extra}"
    assert lines[2] == f"5 CoreML needs coremltools: {extra}"
    assert lines[3] == (f"coremltools is not installed: {extra}" if sys.platform == "darwin" else rt.available())


def test_importing_the_coreml_modules_imports_neither_coremltools_nor_torch():
    code = (
        "import sys, edgeformer.export.coreml, edgeformer.runtimes.coreml; "
        "print(sorted(m for m in ('coremltools', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.skipif(not ON_MACOS, reason=rt.available() or "")
def test_prediction_matches_torch(converted):
    from edgeformer.models import create_model

    name, arch = FAST["efficientformer"]
    with torch.random.fork_rng(devices=[]):  # the converter's seed: the same random weights
        torch.manual_seed(0)
        model = create_model(name, **arch).eval().fuse()
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    for precision, min_cos in (("fp32", 0.99999), ("fp16", 0.999)):
        with Session(converted("efficientformer", precision), backend="coreml", providers=("cpu_only",)) as s:
            got = s.run({"input": x})["logits"]
            assert s.provider == "cpu_only"
        cos = float(np.dot(want.ravel(), got.ravel()) / np.linalg.norm(want) / np.linalg.norm(got))
        assert got.dtype == np.float32 and got.shape == want.shape and cos > min_cos


@needs_coremltools
def test_compile_rebuilds_a_trained_reference_parent_with_its_own_weights(tmp_path):
    from edgeformer.export import export
    from edgeformer.models.reference import read_reference_meta

    parent = export("digits_shvit", out=tmp_path / "onnx", cache=None)
    art = compile_coreml(parent, CoreMlConfig(), tmp_path / "coreml", cache=None)
    m, meta = art.manifest, read_reference_meta("digits_shvit")
    assert m.extra["weights"] == "reference weights digits_shvit.safetensors"
    assert m.lineage.checkpoint.sha256 == meta.weights_sha256 == parent.manifest.lineage.checkpoint.sha256
    assert m.extra["source_check"]["cosine"] > 0.9999  # the rebuild is the parent's trained model, not random weights
    assert m.labels == parent.manifest.labels and len(m.labels) == 10
