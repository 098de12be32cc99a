"""AudioFormer: spec figures, elasticity, fusing, export parity and checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeformer.errors import ConfigError, InvalidArchError, WeightsError
from edgeformer.inputs import AudioInput
from edgeformer.models import create_model, get_spec, list_models, slice_weights
from edgeformer.models.audio import KWS_LABELS, AudioFormer, AudioFormerArch, LogMelFrontend

from .conftest import assert_loads_as, assert_onnx_matches, batchnorms, params_and_macs, rel_err, save_safetensors

VARIANTS = ["audioformer_t", "audioformer_s", "audioformer_m"]
SHORT = AudioInput(clip_seconds=0.5)  # 51 frames: half the compute, same graph

# a small parent with every feature: attention in two stages, several heads, unequal key/value dims
PARENT = AudioFormerArch(
    widths=(16, 32, 48),
    depths=(2, 2, 3),
    mlp_ratios=((2.0, 3.0), (3.0, 3.0), (4.0, 4.0, 4.0)),
    attn=((False, False), (False, True), (True, False, True)),
    heads=(1, 2, 3),
    key_dims=(8, 8, 8),
    value_dims=(8, 16, 16),
    num_classes=12,
    frontend=SHORT,
)


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine terms, so that fusing and zero-init branches are really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    return model


def _wave(spec: AudioInput, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(batch, spec.num_samples, generator=g)


# --- spec --------------------------------------------------------------------------------------------
def test_zoo_lists_the_audio_family():
    assert set(VARIANTS) <= set(list_models("audioformer_*"))
    assert len(KWS_LABELS) == 12 and KWS_LABELS[-2:] == ("_silence_", "_unknown_")


@pytest.mark.parametrize("name", VARIANTS)
def test_spec_figures_match_measurement(name):
    spec = get_spec(name)
    assert spec.task == "audio-classification" and spec.input == spec.arch.frontend
    assert spec.input.frontend == "graph" and spec.input.shape(2) == (2, 16000)
    assert spec.num_classes == spec.arch.num_classes
    assert spec.labels == ("kws12" if spec.num_classes == len(KWS_LABELS) else None)
    params, macs = params_and_macs(spec)
    assert params / 1e6 == pytest.approx(spec.params_m, rel=0.01)
    assert macs / 1e9 == pytest.approx(spec.macs_g, rel=0.03)


# --- elasticity --------------------------------------------------------------------------------------
def test_invalid_arch_lists_every_field():
    bad = PARENT.replace(
        widths=(16, 1, 48),
        mlp_ratios=((2.0, -1.0), (3.0, 3.0), (4.0, 4.0, 4.0)),
        attn=((False,), (False, True), (True, False, True)),
        heads=(1, 0, 3),
        key_dims=(8, 8),
        value_dims=(8, 16, 2.5),
        num_classes=0,
        frontend=AudioInput(f_max=12000.0),
    )
    with pytest.raises(InvalidArchError) as e:
        bad.validate()
    fields = [p.split(":")[0] for p in e.value.problems]
    assert fields == [
        "widths",
        "mlp_ratios",
        "attn",
        "heads",
        "key_dims",
        "value_dims",
        "num_classes",
        "frontend.f_max",
    ]
    with pytest.raises(InvalidArchError) as e:
        PARENT.replace(depths=(2, 2)).validate()
    assert [p.split(":")[0] for p in e.value.problems] == ["depths"]
    with pytest.raises(InvalidArchError, match=r"heads.*num_classes"):
        create_model("audioformer_t", heads=(1, 2), num_classes=-3)
    with pytest.raises(ConfigError, match="unknown architecture override"):
        create_model("audioformer_t", mlp_ratio=2.0)


def test_arch_round_trips_through_json():
    import json

    arch = AudioFormerArch(**json.loads(json.dumps(PARENT.to_dict())))  # lists and a dict come back
    assert arch == PARENT and hash(arch) == hash(PARENT)
    assert AudioFormerArch(**{**PARENT.to_dict(), "frontend": {"rate": 8000}}).problems() == [
        "frontend: must be an AudioInput, got dict"
    ]


def test_slice_with_parent_arch_reproduces_parent():
    parent = _randomize_bn(AudioFormer(PARENT)).eval()
    child = slice_weights(parent, PARENT)
    x = _wave(SHORT)
    with torch.no_grad():
        assert torch.equal(child(x), parent(x))


def test_smaller_child_inherits_leading_slices_and_runs():
    parent = _randomize_bn(AudioFormer(PARENT)).eval()
    child_arch = PARENT.replace(
        widths=(8, 24, 40),
        depths=(1, 2, 2),
        mlp_ratios=((2.0,), (1.0, 2.0), (2.0, 3.0)),
        attn=((False,), (False, True), (False, False)),  # attention off at stage-2 block 0
        heads=(1, 1, 2),
        key_dims=(8, 4, 8),  # partial key dims
        value_dims=(8, 16, 12),
    )
    child = slice_weights(parent, child_arch).eval()
    p, c = parent.state_dict(), child.state_dict()
    assert torch.equal(c["stem.0.c.weight"], p["stem.0.c.weight"][:4])
    assert torch.equal(c["stages.1.down.c.weight"], p["stages.1.down.c.weight"][:24, :8])
    assert torch.equal(c["stages.1.blocks.0.ffn.fc1.c.weight"], p["stages.1.blocks.0.ffn.fc1.c.weight"][:24, :24])
    assert torch.equal(c["head.l.weight"], p["head.l.weight"][:, :40])
    assert "stages.2.blocks.0.attn.q.c.weight" not in c and "stages.1.blocks.2.dw.c.weight" not in c
    # q/k are (heads, key_dim)-major: the child keeps head 0 and its first 4 query dims
    pq = p["stages.1.blocks.1.attn.q.c.weight"].unflatten(0, (2, 8))
    assert torch.equal(c["stages.1.blocks.1.attn.q.c.weight"], pq[:1, :4].flatten(0, 1)[:, :24])
    pproj = p["stages.1.blocks.1.attn.proj.c.weight"].unflatten(1, (2, 16))
    assert torch.equal(c["stages.1.blocks.1.attn.proj.c.weight"], pproj[:24, :1].flatten(1, 2))
    with torch.no_grad():
        out = child(_wave(SHORT))
    assert out.shape == (2, 12) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "overrides",
    [
        {"widths": (16, 64, 48)},
        {
            "heads": (1, 3, 3),
            "key_dims": (8, 4, 8),
            "value_dims": (8, 8, 16),
        },  # 3 x 4 fits in 2 x 8 only by mixing heads
        {"attn": ((True, False), (False, True), (True, False, True))},  # attention where the parent has none
    ],
    ids=["wider", "more-heads", "new-attention"],
)
def test_child_that_is_not_a_subnetwork_raises(overrides):
    parent = AudioFormer(PARENT)
    with pytest.raises(InvalidArchError):
        slice_weights(parent, PARENT.replace(**overrides))


# --- export readiness --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", VARIANTS)
def test_fuse_removes_every_batchnorm_and_matches(name):
    model = _randomize_bn(create_model(name)).eval()
    x = _wave(model.arch.frontend)
    with torch.no_grad():
        expected = model(x)
        model.fuse()
        out = model(x)
    assert not batchnorms(model)
    assert rel_err(out, expected) <= 1e-5


def test_host_frontend_takes_log_mel_and_shares_weights():
    graph = _randomize_bn(AudioFormer(PARENT)).eval()
    host = AudioFormer(PARENT.replace(frontend=AudioInput(clip_seconds=0.5, frontend="host"))).eval()
    assert not any(k.startswith("frontend") for k in graph.state_dict())  # bases are rebuilt, never loaded
    host.load_state_dict(graph.state_dict())
    x = _wave(SHORT)
    mel = LogMelFrontend(SHORT)(x)
    assert tuple(mel.shape) == host.arch.frontend.shape(2)
    with torch.no_grad():
        torch.testing.assert_close(host(mel), graph(x), rtol=0, atol=1e-6)


def _fused(arch: AudioFormerArch) -> nn.Module:
    return _randomize_bn(AudioFormer(arch)).eval().fuse()


# One block per stage, attention in the last two, a 0.5 s clip: the full graph (front-end, stem, downsampling,
# attention, head) at a third of audioformer_t's export time; dynamo export dominates this file's runtime.
TINY = get_spec("audioformer_t").arch.replace(
    depths=(1, 1, 1), mlp_ratios=((3.0,), (3.0,), (3.0,)), attn=((False,), (True,), (True,)), frontend=SHORT
)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_narrowed_variant_exports_to_onnx_and_matches(dynamo, tmp_path):
    assert_onnx_matches(_fused(TINY), _wave(SHORT), _wave(SHORT, 3, seed=1), tmp_path / "m.onnx", dynamo)


@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_exports_to_onnx_and_matches(name, dynamo, tmp_path):
    arch = get_spec(name).arch
    clip = arch.frontend
    assert_onnx_matches(_fused(arch), _wave(clip), _wave(clip, 3, seed=1), tmp_path / "m.onnx", dynamo)


# --- checkpoints -------------------------------------------------------------------------------------
def test_checkpoint_layouts_load_and_match(tmp_path):
    source = _randomize_bn(create_model("audioformer_t")).eval()
    state = source.state_dict()
    torch.save({"model": state}, tmp_path / "wrapped.pth")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "dataparallel.pth")
    save_safetensors(state, tmp_path / "w.safetensors")
    for name in ("wrapped.pth", "dataparallel.pth", "w.safetensors"):
        assert_loads_as("audioformer_t", tmp_path / name, source, _wave(source.arch.frontend))


def test_mismatched_checkpoint_lists_every_key(tmp_path):
    state = create_model("audioformer_t").state_dict()
    del state["stem.0.c.weight"]
    state["head.extra"] = torch.zeros(1)
    state["head.l.weight"] = torch.zeros(3, 128)
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as e:
        create_model("audioformer_t", checkpoint=tmp_path / "bad.pth")
    assert e.value.missing == ["stem.0.c.weight"] and e.value.unexpected == ["head.extra"]
    assert e.value.wrong_shape == ["head.l.weight (3, 128)!=(12, 128)"]
