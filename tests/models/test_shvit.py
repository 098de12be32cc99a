"""SHViT: faithful to the paper, elastic, export-ready, loads official and timm checkpoints."""

from __future__ import annotations

import copy
import re

import pytest
import torch

from edgeformer.errors import InvalidArchError, WeightsError
from edgeformer.models import create_model, get_spec, list_models, slice_weights
from edgeformer.models.shvit import SHViT, SHViTArch, remap_checkpoint

from .conftest import (
    assert_loads_as,
    assert_onnx_matches,
    batchnorms,
    images,
    params_and_macs,
    rel_err,
    save_safetensors,
)

VARIANTS = ["shvit_s1", "shvit_s2", "shvit_s3", "shvit_s4"]
RES = 64  # no position biases: any size works, and 64 keeps every test fast


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BN statistics and norm affines: upstream zero-inits many BN gammas, which would make
    residual branches vanish and let fusion or slicing bugs go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype != torch.float32:
                continue
            if name.endswith("running_var") or name.endswith(("bn.weight", "pre_norm.weight")):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith(("running_mean", "bn.bias", "pre_norm.bias")):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return model


def _tiny_arch(**overrides) -> SHViTArch:
    base = get_spec("shvit_s1").arch.replace(
        depths=(1, 2, 1),
        mlp_ratios=((2.0,), (2.0, 2.0), (2.0,)),
        attention=((False,), (True, True), (True,)),
    )
    return base.replace(**overrides)


# --- faithful ------------------------------------------------------------------------------------
def test_zoo_registers_the_four_published_variants():
    assert list_models("shvit_*") == VARIANTS
    assert get_spec("shvit_s4").input.resolution == 256
    assert {get_spec(n).input.resolution for n in VARIANTS[:3]} == {224}
    spec = get_spec("shvit_s1")
    assert spec.input.crop_pct == 0.875 and spec.input.interpolation == "bicubic"
    assert spec.num_classes == 1000 and spec.labels == "imagenet" and spec.license == "MIT"
    assert not spec.counts_distillation_head and not spec.arch.distillation


@pytest.mark.parametrize("name", VARIANTS)
def test_params_and_macs_match_the_paper(name):
    spec = get_spec(name)
    params, macs = params_and_macs(spec)
    assert params / 1e6 == pytest.approx(spec.params_m, rel=0.01)
    assert macs / 1e9 == pytest.approx(spec.macs_g, rel=0.03)


def test_published_arch_is_upstreams():
    arch = get_spec("shvit_s3").arch
    assert arch.embed_dims == (192, 352, 448) and arch.depths == (3, 5, 5) and arch.partial_dims == (48, 75, 96)
    assert arch.qk_dims == (16, 16, 16)
    assert arch.attention == ((False,) * 3, (True,) * 5, (True,) * 5)  # types ("i", "s", "s")
    assert all(r == 2.0 for stage in arch.mlp_ratios for r in stage)


# --- elastic -------------------------------------------------------------------------------------
def test_invalid_arch_lists_every_bad_field():
    arch = get_spec("shvit_s1").arch
    with pytest.raises(InvalidArchError) as e:
        arch.replace(
            depths=(2, 4),  # one stage short
            partial_dims=(32, 48, 400),  # wider than the stage
            qk_dims=(16, 0, 16),
            num_classes=0,
            distillation="yes",
        ).validate()
    fields = {p.split(":")[0] for p in e.value.problems}
    assert fields == {"depths", "partial_dims", "qk_dims", "num_classes", "distillation"}

    with pytest.raises(InvalidArchError) as e:
        arch.replace(mlp_ratios=((2.0, 2.0), (2.0,) * 4, (2.0, 0.0, 2.0, 2.0, 2.0)), attention=((1, 0),) * 3).validate()
    assert [p.split(":")[0] for p in e.value.problems] == ["mlp_ratios", "attention"]


def test_depth_override_alone_names_the_per_block_fields():
    with pytest.raises(InvalidArchError) as e:
        create_model("shvit_s1", depths=(1, 2, 2))
    assert {p.split(":")[0] for p in e.value.problems} == {"mlp_ratios", "attention"}


def test_arch_from_lists_is_tuples_and_hashable():
    arch = _tiny_arch(embed_dims=[64, 96, 128], mlp_ratios=[[2.0], [2.0, 1.0], [2.0]])
    assert arch.embed_dims == (64, 96, 128) and arch.mlp_ratios == ((2.0,), (2.0, 1.0), (2.0,))
    assert hash(arch) == hash(_tiny_arch(embed_dims=(64, 96, 128), mlp_ratios=((2.0,), (2.0, 1.0), (2.0,))))


def test_slice_with_the_parents_own_arch_reproduces_the_parent():
    parent = _randomize(SHViT(_tiny_arch(distillation=True))).eval()
    child = slice_weights(parent, parent.arch).eval()
    x = images(2, RES)
    with torch.no_grad():
        assert torch.equal(child(x), parent(x))


def test_smaller_child_inherits_leading_slices_and_runs():
    parent = _randomize(create_model("shvit_s1")).eval()
    child_arch = parent.arch.replace(
        embed_dims=(96, 160, 256),
        depths=(1, 3, 2),
        partial_dims=(24, 32, 48),
        qk_dims=(16, 8, 12),
        mlp_ratios=((1.5,), (2.0, 1.0, 2.0), (1.0, 2.0)),
        attention=((False,), (True, False, True), (False, True)),
    )
    child = slice_weights(parent, child_arch).eval()
    c, p = child.state_dict(), parent.state_dict()
    assert torch.equal(c["patch_embed.0.c.weight"], p["patch_embed.0.c.weight"][:12])
    assert torch.equal(c["stages.1.blocks.1.ffn.m.pw1.c.weight"], p["stages.1.blocks.1.ffn.m.pw1.c.weight"][:160, :160])
    assert torch.equal(c["stages.2.downsample.2.conv1.c.weight"], p["stages.2.downsample.2.conv1.c.weight"][:640, :160])
    assert torch.equal(c["head.l.weight"], p["head.l.weight"][:, :256])
    assert "stages.1.blocks.1.mixer.m.qkv.c.weight" not in c  # attention turned off there
    # qkv packs [q | k | v]: each part keeps its own leading rows (parent qk 16, pdim 48; child qk 8, pdim 32)
    qkv = p["stages.1.blocks.2.mixer.m.qkv.c.weight"]
    expected = torch.cat([qkv[:8], qkv[16:24], qkv[32:64]])[:, :32]
    assert torch.equal(c["stages.1.blocks.2.mixer.m.qkv.c.weight"], expected)
    rv = p["stages.1.blocks.2.mixer.m.qkv.bn.running_var"]
    assert torch.equal(c["stages.1.blocks.2.mixer.m.qkv.bn.running_var"], torch.cat([rv[:8], rv[16:24], rv[32:64]]))
    with torch.no_grad():
        out = child(images(2, RES))
    assert out.shape == (2, 1000) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "overrides",
    [
        dict(embed_dims=(128, 256, 320)),  # wider than the parent
        dict(qk_dims=(16, 24, 16), partial_dims=(32, 32, 68)),  # packed qkv rows fit, but q/k do not
        dict(attention=((True, False), (True,) * 4, (True,) * 5)),  # attention where the parent has none
    ],
)
def test_child_that_is_not_a_subnetwork_raises(overrides):
    parent = create_model("shvit_s1")
    with pytest.raises(InvalidArchError):
        slice_weights(parent, parent.arch.replace(**overrides))


# --- export-ready --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", VARIANTS)
def test_fuse_removes_every_batchnorm_and_matches(name):
    model = _randomize(create_model(name, distillation=name == "shvit_s2")).eval()
    x = images(2, RES)
    with torch.no_grad():
        ref = model(x)
        fused = copy.deepcopy(model).fuse()
        out = fused(x)
    assert not batchnorms(fused)
    assert rel_err(out, ref) < 1e-5


# torch-internal noise: the exporter's pytree LeafSpec deprecation, and the legacy TorchScript exporter's
# tracer warning on group_norm's batch-size check (a validation branch; parity at another batch size holds)
_quiet_leafspec = pytest.mark.filterwarnings("ignore:.*LeafSpec:FutureWarning")
_quiet_tracer = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")


@_quiet_leafspec
def test_small_shvit_exports_to_onnx_and_matches_onnxruntime(tmp_path):
    arch = _tiny_arch(embed_dims=(64, 96, 128), partial_dims=(16, 24, 128), num_classes=10)  # pdim == width too
    model = _randomize(SHViT(arch)).eval().fuse()
    assert_onnx_matches(model, images(2, RES), images(3, RES, seed=7), tmp_path / "tiny.onnx", dynamo=True)


@pytest.mark.slow
@_quiet_leafspec
@_quiet_tracer
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_exports_to_onnx_and_matches_onnxruntime(name, dynamo, tmp_path):
    model = _randomize(create_model(name)).eval().fuse()
    assert_onnx_matches(model, images(2, RES), images(3, RES, seed=7), tmp_path / f"{name}.onnx", dynamo=dynamo)


# --- checkpoints ---------------------------------------------------------------------------------
def _to_official(key: str) -> str:
    """Our (timm) key -> ysj9909/SHViT's: ``blocks{s+1}``, where stages > 0 start with three downsample entries."""
    if m := re.match(r"stages\.(\d+)\.blocks\.(\d+)\.(.*)", key):
        s, j = int(m[1]), int(m[2])
        return f"blocks{s + 1}.{j + (3 if s else 0)}.{m[3]}"
    if m := re.match(r"stages\.(\d+)\.downsample\.(\d)\.(.*)", key):
        position = ("0.0", "0.1", "1", "2.0", "2.1")[int(m[2])]
        return f"blocks{int(m[1]) + 1}.{position}.{m[3]}"
    return key


@pytest.mark.parametrize("name", VARIANTS)
def test_remap_turns_official_keys_into_ours(name):
    spec = get_spec(name)
    with torch.device("meta"):
        state = spec.build(spec.arch.replace(distillation=True)).state_dict()
    official = {_to_official(k): v for k, v in state.items()}
    assert any(k.startswith("blocks3.2.1.m.pw1") for k in official)  # sanity of the inverse mapping
    assert remap_checkpoint(official).keys() == state.keys()
    assert remap_checkpoint(state).keys() == state.keys()  # timm keys are ours


@pytest.fixture(scope="module")
def trained_s1():
    return _randomize(create_model("shvit_s1"), seed=3).eval()


def _check_loads(path, reference: torch.nn.Module, **overrides) -> None:
    assert_loads_as("shvit_s1", path, reference, images(2, RES), **overrides)


def test_official_checkpoint_loads(trained_s1, tmp_path):
    state = {_to_official(k): v for k, v in trained_s1.state_dict().items()}
    # upstream's loader accepts 1x1 conv weights stored flat; so do we
    state["blocks2.1.se.fc1.weight"] = state["blocks2.1.se.fc1.weight"][:, :, 0, 0]
    torch.save({"model": state, "epoch": 299}, tmp_path / "shvit_s1.pth")
    _check_loads(tmp_path / "shvit_s1.pth", trained_s1)


def test_official_distillation_checkpoint_loads(tmp_path):
    model = _randomize(create_model("shvit_s1", distillation=True), seed=4).eval()
    state = {_to_official(k): v for k, v in model.state_dict().items()}
    assert "head_dist.l.weight" in state
    torch.save({"model": state}, tmp_path / "distilled.pth")
    _check_loads(tmp_path / "distilled.pth", model, distillation=True)


def test_timm_and_safetensors_checkpoints_load(trained_s1, tmp_path):
    state = trained_s1.state_dict()
    torch.save(state, tmp_path / "timm.pth")
    _check_loads(tmp_path / "timm.pth", trained_s1)
    save_safetensors(state, tmp_path / "model.safetensors")
    _check_loads(tmp_path / "model.safetensors", trained_s1)


def test_mismatched_checkpoint_lists_missing_unexpected_and_misshaped_keys(trained_s1, tmp_path):
    state = {_to_official(k): v for k, v in trained_s1.state_dict().items()}
    del state["blocks3.4.ffn.m.pw2.c.weight"]
    state["blocks3.9.ffn.m.pw1.c.weight"] = torch.zeros(640, 320, 1, 1)
    state["head.l.weight"] = torch.zeros(10, 320)
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as e:
        create_model("shvit_s1", checkpoint=tmp_path / "bad.pth")
    assert e.value.missing == ["stages.2.blocks.1.ffn.m.pw2.c.weight"]
    assert e.value.unexpected == ["stages.2.blocks.6.ffn.m.pw1.c.weight"]
    assert len(e.value.wrong_shape) == 1 and e.value.wrong_shape[0].startswith("head.l.weight")
