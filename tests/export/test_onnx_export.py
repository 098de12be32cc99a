"""torch -> ONNX export: every zoo model matches torch; dynamic batch, TorchScript, user modules, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgeformer.artifact import Artifact, sha256_file
from edgeformer.errors import ConfigError, OutputExistsError, ParityError
from edgeformer.export import FORMATS, export
from edgeformer.export.onnx import OnnxExportConfig
from edgeformer.export.source import prepare_source
from edgeformer.inputs import ImageInput
from edgeformer.modelfile import read_embedded_manifest
from edgeformer.models import create_model, get_spec, list_models

SMALL = 64  # every image family runs at 64x64 (EfficientFormer/V2 size their bias tables from it; SHViT is conv)


def small_config(name: str, **kw) -> OnnxExportConfig:
    resolution = SMALL if get_spec(name).input.kind == "image" else None
    return OnnxExportConfig(resolution=resolution, parity_samples=2, **kw)


def arch_kw(name: str) -> dict:
    """Architecture overrides that build ``name`` for SMALL inputs, where its arch is sized by resolution."""
    spec = get_spec(name)
    return {"resolution": SMALL} if spec.input.kind == "image" and "resolution" in spec.arch.to_dict() else {}


def as_json(d):
    """What a dict looks like after the manifest's JSON round trip (tuples become lists)."""
    return json.loads(json.dumps(d))


def run_ort(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


class TinyNet(nn.Module):
    """A conv + attention-like mix, enough ops to exercise both exporters."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
        attn = torch.softmax(tokens @ tokens.transpose(1, 2) / 8**0.5, dim=-1)
        return self.head((attn @ tokens).mean(1))


def _smallest_per_family() -> set[str]:
    """The default run exports one variant per family (a dynamo export takes seconds); the rest run with -m slow."""
    best: dict[str, str] = {}
    for name in list_models():
        spec = get_spec(name)
        size = spec.params_m if spec.params_m is not None else float("inf")
        if spec.family not in best or size < (get_spec(best[spec.family]).params_m or float("inf")):
            best[spec.family] = name
    return set(best.values())


DEFAULT_ZOO = _smallest_per_family()
ZOO = [name if name in DEFAULT_ZOO else pytest.param(name, marks=pytest.mark.slow) for name in list_models()]


@pytest.fixture(scope="module")
def zoo_export(tmp_path_factory):
    """Export each zoo model at most once per module (64x64, two random + one natural parity input)."""
    done: dict[str, tuple[Artifact, Path]] = {}

    def get(name: str) -> tuple[Artifact, Path]:
        """The artifact and the checkpoint it was exported from (random weights, saved so tests can rebuild)."""
        if name not in done:
            folder = tmp_path_factory.mktemp(name)
            ckpt = folder / "weights.pth"
            torch.save(create_model(name, **arch_kw(name)).state_dict(), ckpt)
            art = export(name, out=folder / name, checkpoint=ckpt, config=small_config(name))
            done[name] = (art, ckpt)
        return done[name]

    return get


@pytest.fixture(scope="module")
def l1_artifact(zoo_export):
    return zoo_export("efficientformer_l1")[0]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_exports_and_matches_torch(name, zoo_export):
    art, ckpt = zoo_export(name)
    parity = art.manifest.parity
    spec = get_spec(name)
    assert parity.ok and all(o.max_rel <= spec.export.atol for o in parity.outputs.values())
    # independent of the exporter's own check: a fresh session against a freshly built torch model
    x = np.random.default_rng(7).standard_normal(art.manifest.inputs[0].shape[1:], dtype=np.float32)[None]
    if spec.input.kind == "audio":
        x = np.clip(x * 0.3, -1, 1)
    model = create_model(name, checkpoint=ckpt, **arch_kw(name)).eval().fuse()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    (got,) = run_ort(art.model_path, {art.manifest.inputs[0].name: x})
    assert np.abs(got - ref).max() <= spec.export.atol * np.abs(ref).max()
    assert art.manifest.lineage.checkpoint.to_dict() == {"file": "weights.pth", "sha256": sha256_file(ckpt)}


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_zoo_model_exports_at_published_resolution(name, tmp_path):
    art = export(name, out=tmp_path / name, config=OnnxExportConfig())
    spec = get_spec(name)
    assert art.manifest.parity.ok
    assert Artifact.load(art.path).manifest.preprocessing == spec.input
    assert tuple(art.manifest.inputs[0].shape[1:]) == spec.input.shape(1)[1:]


def test_artifact_records_what_ran(l1_artifact):
    m = Artifact.load(l1_artifact.path).manifest  # verifies hashes
    spec = get_spec("efficientformer_l1")
    assert (m.format, m.precision, m.step, m.parent_sha, m.main_file) == ("onnx", "fp32", "export", None, "model.onnx")
    assert m.preprocessing.resolution == SMALL and m.preprocessing.mean == spec.input.mean
    assert [t.name for t in m.inputs] == ["input"] and [t.name for t in m.outputs] == ["logits"]
    assert m.inputs[0].shape == ("batch", 3, SMALL, SMALL) and m.outputs[0].shape == ("batch", 1000)
    assert m.step_config["opset"] == spec.export.opset and m.step_config["dynamo"] is True
    assert m.extra["exporter"] == "dynamo" and m.lineage.arch["resolution"] == SMALL
    assert m.extra["optimizer"]["ran"] and not m.extra["optimizer"]["skipped"]
    assert set(m.parity.sample_names) >= {"random-0", "natural", "random-batch3"} and "parity" not in m.extra
    embedded = read_embedded_manifest(onnx.load(str(l1_artifact.model_path)))
    assert embedded.parity == m.parity and embedded.preprocessing == m.preprocessing


@pytest.mark.parametrize("batch", [1, 3])
def test_dynamic_batch_runs_at_batch_1_and_3(l1_artifact, zoo_export, batch):
    _, ckpt = zoo_export("efficientformer_l1")
    model = create_model("efficientformer_l1", checkpoint=ckpt, resolution=SMALL).eval().fuse()
    x = torch.randn(batch, 3, SMALL, SMALL)
    with torch.no_grad():
        ref = model(x).numpy()
    (got,) = run_ort(l1_artifact.model_path, {"input": x.numpy()})
    assert got.shape == (batch, 1000)
    np.testing.assert_allclose(got, ref, atol=1e-4 * np.abs(ref).max())


def test_static_batch_fixes_the_batch_dim(tmp_path):
    art = export(
        TinyNet(),
        out=tmp_path / "a",
        example_inputs=(torch.randn(2, 3, 16, 16),),
        config=OnnxExportConfig(dynamic_batch=False, parity_samples=1),
    )
    assert art.manifest.inputs[0].shape == (2, 3, 16, 16)
    assert "random-batch4" not in art.manifest.parity.sample_names


def test_torchscript_exporter_option_reaches_the_minimum_opset(tmp_path):
    """audioformer_t: the cheapest zoo graph to trace, and its STFT front-end is the hardest op to export."""
    opset = get_spec("audioformer_t").export.min_opset
    art = export("audioformer_t", out=tmp_path / "ts", config=small_config("audioformer_t", dynamo=False, opset=opset))
    assert art.manifest.extra["exporter"] == "torchscript" and art.manifest.step_config["dynamo"] is False
    assert art.manifest.parity.ok and "natural" in art.manifest.parity.sample_names
    assert [o.version for o in onnx.load(str(art.model_path)).opset_import if o.domain in ("", "ai.onnx")] == [opset]
    assert [t.name for t in art.manifest.inputs] == ["waveform"]
    (got,) = run_ort(art.model_path, {"waveform": np.zeros((3, 16000), np.float32)})
    assert got.shape == (3, get_spec("audioformer_t").num_classes)


def test_dynamo_below_opset_18_names_the_torchscript_exporter(tmp_path):
    with pytest.raises(ConfigError, match=r"dynamo exporter writes opset >= 18; for opset 17 pass dynamo=False"):
        export(
            TinyNet(), out=tmp_path / "a", example_inputs=(torch.randn(1, 3, 8, 8),), config=OnnxExportConfig(opset=17)
        )


@pytest.mark.parametrize("dynamo", [True, False])
def test_user_module_exports_to_unicode_path(tmp_path, dynamo):
    module = TinyNet().train()  # training mode on purpose: export must use eval() on its own copy
    spec = ImageInput(resolution=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    out = tmp_path / "mes modèles é" / "tiny net"
    art = export(
        module,
        out=out,
        example_inputs=(torch.randn(1, 3, 16, 16),),
        input_spec=spec,
        config=OnnxExportConfig(dynamo=dynamo),
    )
    assert art.path == out and module.training  # the caller's module is untouched
    loaded = Artifact.load(out)
    m = loaded.manifest
    assert m.model_name == "TinyNet" and m.task == "image-classification" and m.preprocessing == spec
    assert m.labels is None and m.parity.ok and "example_inputs" in m.parity.sample_names
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16), dtype=np.float32)
    with torch.no_grad():
        ref = module.eval()(torch.from_numpy(x)).numpy()
    (got,) = run_ort(loaded.model_path, {"input": x})
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert Artifact.load(loaded.model_path).manifest.preprocessing == spec  # the bare file too


def test_user_module_needs_example_inputs(tmp_path):
    with pytest.raises(ConfigError, match=r"example_inputs=\(torch.randn"):
        export(TinyNet(), out=tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_existing_output_is_refused_before_any_work(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export("efficientformer_l7", out=tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_output_equal_to_input_is_refused(tmp_path):
    ckpt = tmp_path / "weights.pth"
    torch.save(create_model("shvit_s1").state_dict(), ckpt)
    before = ckpt.read_bytes()
    with pytest.raises(OutputExistsError, match="overlaps the input"):
        export("shvit_s1", out=ckpt, checkpoint=ckpt, overwrite=True)
    assert ckpt.read_bytes() == before


def test_opset_below_minimum_names_the_flag(tmp_path):
    spec = get_spec("shvit_s1")
    with pytest.raises(ConfigError, match=rf"needs opset >= {spec.export.min_opset}; pass --opset"):
        export("shvit_s1", out=tmp_path / "a", config=OnnxExportConfig(opset=spec.export.min_opset - 1))
    assert not (tmp_path / "a").exists()


def test_opset_newer_than_installed_onnx_is_refused(tmp_path):
    newest = onnx.defs.onnx_opset_version()
    with pytest.raises(ConfigError, match=rf"opset {newest + 1} is newer"):
        export(
            TinyNet(),
            out=tmp_path / "a",
            example_inputs=(torch.randn(1, 3, 8, 8),),
            config=OnnxExportConfig(opset=newest + 1),
        )


def test_bad_config_values_are_listed(tmp_path):
    with pytest.raises(ConfigError, match=r"batch must be >= 1.*parity_samples must be >= 1"):
        export("shvit_s1", out=tmp_path / "a", config=OnnxExportConfig(batch=0, parity_samples=0))
    with pytest.raises(ConfigError, match="unknown export format 'onxx'; did you mean 'onnx'"):
        export("shvit_s1", fmt="onxx", out=tmp_path / "a")
    with pytest.raises(ConfigError, match="resolution applies to image models"):
        export("audioformer_t", out=tmp_path / "a", config=OnnxExportConfig(resolution=64))


class BranchOnData(nn.Module):
    """Tracing freezes the branch taken by the example input: a real exporter hazard parity must catch."""

    def forward(self, x):
        return x * 2 if x.sum() > 0 else -x


def test_parity_failure_raises_and_writes_nothing(tmp_path):
    listed = r"on 5 inputs: logits: cosine -?[\d.]+ < 0\.99999, max_rel \S+ > \S+ \(worst on "  # each figure
    with pytest.raises(ParityError, match=listed) as e:
        export(
            BranchOnData(),
            out=tmp_path / "a",
            example_inputs=(torch.ones(1, 4),),
            config=OnnxExportConfig(dynamo=False, parity_samples=4, dynamic_batch=False),
        )
    assert e.value.exit_code == 6 and [f.name for f in e.value.failures] == ["logits"]
    assert not (tmp_path / "a").exists() and not list(tmp_path.iterdir())


def test_random_init_weights_follow_the_seed():
    def weights(seed):
        src = prepare_source(
            "shvit_s1",
            example_inputs=None,
            input_spec=None,
            checkpoint=None,
            batch=2,
            resolution=SMALL,
            seed=seed,
            arch_overrides={},
        )
        return src.module.state_dict(), src.example_inputs[0]

    (a, xa), (b, xb), (c, _) = weights(0), weights(0), weights(1)
    assert all(torch.equal(a[k], b[k]) for k in a) and torch.equal(xa, xb) and xa.shape == (2, 3, SMALL, SMALL)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_format_table_names_onnx():
    fmt = FORMATS["onnx"]
    assert fmt.name == "onnx" and fmt.target.endswith(":export_onnx")
    assert set(FORMATS) == {"onnx", "coreml"}
