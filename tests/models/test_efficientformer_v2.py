"""EfficientFormerV2: faithful to the paper, elastic, export-ready, loads official and timm checkpoints."""

from __future__ import annotations

import copy

import pytest
import torch

from edgeformer.errors import InputMismatchError, InvalidArchError, WeightsError
from edgeformer.models import create_model, get_spec, list_models, slice_weights
from edgeformer.models.efficientformer_v2 import EfficientFormerV2, EfficientFormerV2Arch, remap_checkpoint

from .conftest import (
    assert_loads_as,
    assert_onnx_matches,
    batchnorms,
    images,
    params_and_macs,
    rel_err,
    save_safetensors,
)

VARIANTS = ["efficientformerv2_s0", "efficientformerv2_s1", "efficientformerv2_s2", "efficientformerv2_l"]
SMALL = 64  # smallest cheap size: stage 3 is 4x4 (its stride attention 2x2), stage 4 is 2x2

# Parameters and MACs of timm's and the official implementation at 224 px (both heads counted, MACs measured
# with the same FlopCounterMode), against which the released checkpoints load.
REFERENCE = {
    "efficientformerv2_s0": (3_600_256, 395_892_544),
    "efficientformerv2_s1": (6_185_560, 651_969_640),
    "efficientformerv2_s2": (12_710_112, 1_246_863_952),
    "efficientformerv2_l": (26_322_288, 2_552_546_880),
}
# The paper's counts include the distillation head (as in EfficientFormer V1: L1 12.3M = both heads), but its
# S0 and S1 figures are rounded below the released code: 3.60M -> "3.5M" (+2.9 %), 6.19M -> "6.1M" (+1.4 %).
# Without the head they would be 2.2 % / 2.3 % under instead, so no counting rule reaches 1 % for these two.
PUBLISHED_PARAMS_RTOL = {"efficientformerv2_s0": 0.03, "efficientformerv2_s1": 0.015}

# A 2-block-per-late-stage model with every block kind (stride attention, attention, attention downsample):
# fast to build and export, same graph structure as the variants.
TINY = EfficientFormerV2Arch(
    widths=(16, 24, 32, 48),
    depths=(1, 1, 2, 2),
    mlp_ratios=((4,), (4,), (4, 3), (3, 4)),
    attn=((False,), (False,), (False, True), (False, True)),
    num_heads=2,
    key_dim=8,
    down_num_heads=2,
    down_key_dim=8,
    resolution=SMALL,
)


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial weights and BN statistics, so that fusing or slicing mistakes show in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.dtype.is_floating_point:
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("gamma"):  # layer scale: 1e-5 at init would hide every block
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.1)
            elif name.endswith("bn.weight"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def s0_small() -> EfficientFormerV2:
    return _randomize(create_model("efficientformerv2_s0", resolution=SMALL))


# --- faithful ------------------------------------------------------------------------------------
def test_zoo_registers_the_four_published_variants():
    assert list_models("efficientformerv2_*") == sorted(VARIANTS)
    for name in VARIANTS:
        spec = get_spec(name)
        assert spec.family == "efficientformer_v2" and spec.num_classes == 1000 and spec.labels == "imagenet"
        assert spec.input.resolution == spec.arch.resolution == 224
        assert spec.counts_distillation_head and spec.arch.distillation
        assert spec.remap is remap_checkpoint


@pytest.mark.parametrize("name", VARIANTS)
def test_params_and_macs_match_the_reference_and_the_paper(name):
    spec = get_spec(name)
    params, macs = params_and_macs(spec)
    assert (params, macs) == REFERENCE[name]
    assert params / 1e6 == pytest.approx(spec.params_m, rel=PUBLISHED_PARAMS_RTOL.get(name, 0.01))
    assert macs / 1e9 == pytest.approx(spec.macs_g, rel=0.03)


def test_published_arch_is_upstreams():
    arch = get_spec("efficientformerv2_l").arch
    # timm's num_vit=6: the last 6 blocks of stages 3 and 4 attend; stages 1-2 never do
    assert arch.attn[2] == (False,) * 9 + (True,) * 6 and arch.attn[3] == (False,) * 4 + (True,) * 6
    assert not any(arch.attn[0] + arch.attn[1])
    assert arch.mlp_ratios[2] == (4, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4)
    assert (arch.num_heads, arch.key_dim, arch.attn_ratio, arch.down_num_heads, arch.down_key_dim) == (8, 32, 4, 8, 16)
    model = create_model("efficientformerv2_s0", resolution=SMALL)
    assert model(images(2, SMALL)).shape == (2, 1000)


# --- elastic -------------------------------------------------------------------------------------
def test_invalid_arch_lists_every_bad_field():
    arch = get_spec("efficientformerv2_s0").arch
    with pytest.raises(InvalidArchError) as info:
        arch.replace(
            widths=(32, 48, 96),  # one stage short
            mlp_ratios=((4, 4), (4, 4), (4, 3, 3, 3, 4, 4), (4, 3, 0, 4)),  # zero ratio
            attn=((True, False), (False, False), (False,) * 4 + (True,) * 2, (False, False, True, True)),
            num_heads=0,
            resolution=112,  # 7x7 stage 3: its stride-2 attention cannot upsample back to 7
            num_classes=-1,
        ).validate()
    fields = sorted(p.split(":")[0] for p in info.value.problems)
    assert fields == ["attn", "mlp_ratios", "num_classes", "num_heads", "resolution", "widths"]


def test_depths_override_alone_names_the_per_block_fields():
    with pytest.raises(InvalidArchError) as info:
        create_model("efficientformerv2_s0", depths=(2, 2, 4, 4))
    assert sorted(p.split(":")[0] for p in info.value.problems) == ["attn", "mlp_ratios"]


def test_resolution_without_stage3_attention_may_be_any_size():
    arch = TINY.replace(attn=((False,), (False,), (False, False), (False, True)), resolution=112)
    assert arch.problems() == []
    assert EfficientFormerV2(arch).eval()(images(1, 112)).shape == (1, 1000)


def test_wrong_input_size_is_refused_with_the_fix():
    with pytest.raises(InputMismatchError, match="resolution=96"):
        EfficientFormerV2(TINY)(images(1, 96))


def test_slice_with_the_parents_own_arch_reproduces_the_parent(s0_small):
    child = slice_weights(s0_small, s0_small.arch)
    with torch.no_grad():
        assert torch.equal(child(images(2, SMALL)), s0_small(images(2, SMALL)))


def test_smaller_child_inherits_leading_slices_and_runs(s0_small):
    parent = s0_small
    arch = parent.arch.replace(
        widths=(24, 40, 80, 144),
        depths=(1, 2, 5, 3),
        mlp_ratios=((3,), (4, 2), (4, 3, 3, 2, 3), (3, 3, 2)),
        attn=((False,), (False, False), (False,) * 4 + (True,), (False, False, False)),  # stage 4's attention off
        num_heads=4,
        key_dim=16,
        down_num_heads=4,
        down_key_dim=8,
        resolution=32,  # stage 3 is 2x2: the biases come from the small-offset corner of the 4x4 tables
    )
    child = slice_weights(parent, arch)
    p, c = parent.state_dict(), child.state_dict()
    assert torch.equal(c["stem.conv1.conv.weight"], p["stem.conv1.conv.weight"][:12])
    assert torch.equal(
        c["stages.2.blocks.3.mlp.fc1.conv.weight"], p["stages.2.blocks.3.mlp.fc1.conv.weight"][:160, :80]
    )
    assert torch.equal(c["stages.3.blocks.1.ls2.gamma"], p["stages.3.blocks.1.ls2.gamma"][:144])
    # q/k/v are laid out head by head: keep the first heads and, within each, the first dims
    q = "stages.2.blocks.4.token_mixer.q.conv.weight"
    assert torch.equal(c[q], p[q].unflatten(0, (8, 32))[:4, :16].flatten(0, 1)[:, :80])
    proj = "stages.3.downsample.attn.proj.conv.weight"
    assert torch.equal(c[proj], p[proj].unflatten(1, (8, 64))[:144, :4, :32].flatten(1, 2))
    bias = "stages.3.downsample.attn.attention_biases"  # 4x4 table -> 2x2 table, entry |dy| * side + |dx|
    assert torch.equal(c[bias], p[bias].reshape(8, 4, 4)[:4, :2, :2].reshape(4, 4))
    assert not any(k.startswith("stages.3.blocks.2.token_mixer") for k in c)
    with torch.no_grad():
        out = child(images(2, 32))
    assert out.shape == (2, 1000) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "overrides",
    [
        {"widths": (32, 48, 96, 192)},  # wider than the parent
        {"mlp_ratios": ((4, 4), (4, 4), (4, 3, 3, 3, 4, 5), (4, 3, 3, 4))},  # larger MLP
        {"num_heads": 16},  # more heads
        {"attn": ((False, False), (False, False), (True,) + (False,) * 3 + (True, True), (False, False, True, True))},
    ],
    ids=["wider", "larger-mlp", "more-heads", "attention-where-parent-has-none"],
)
def test_child_that_is_not_a_subnetwork_raises(s0_small, overrides):
    with pytest.raises(InvalidArchError, match="sub-network"):
        slice_weights(s0_small, s0_small.arch.replace(**overrides))


# --- export-ready --------------------------------------------------------------------------------
def test_fuse_removes_every_batchnorm_and_matches(s0_small):
    fused = copy.deepcopy(s0_small).fuse()
    assert not batchnorms(fused)
    names = [n for n, _ in fused.named_parameters()] + [n for n, _ in fused.named_buffers()]
    assert not [n for n in names if "gamma" in n or n.endswith(("attention_biases", "attention_bias_idxs"))]
    assert sum(n.endswith("attention_bias_dense") for n in names) == 5  # 2 + 2 blocks and the downsample
    with torch.no_grad():
        ref, out = s0_small(images(2, SMALL)), fused(images(2, SMALL))
    assert rel_err(out, ref) <= 1e-5
    # fusing again (export fuses what slimming already fused) changes nothing and does not fail
    with torch.no_grad():
        assert torch.equal(fused.fuse()(images(2, SMALL)), out)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_small_model_exports_to_onnx_and_matches_onnxruntime(dynamo, tmp_path):
    model = _randomize(EfficientFormerV2(TINY)).fuse()
    assert_onnx_matches(model, images(2, SMALL), images(3, SMALL, seed=5), tmp_path / "tiny.onnx", dynamo=dynamo)


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_exports_to_onnx_and_matches_onnxruntime(name, tmp_path):
    model = _randomize(create_model(name, resolution=SMALL))
    x, x3 = images(2, SMALL), images(3, SMALL, seed=5)
    assert_onnx_matches(model, x, x3, tmp_path / "unfused.onnx", dynamo=True)
    assert_onnx_matches(model.fuse(), x, x3, tmp_path / "fused.onnx", dynamo=True)


# --- checkpoints ---------------------------------------------------------------------------------
_ATTN_SEQ = {"conv": "0", "bn": "1"}


def _official_attn(rest: list[str]) -> list[str]:
    """Our attention names as snap-research writes them (Sequential indices, proj = (act, conv, bn))."""
    if rest[0] == "proj":
        return ["proj", {"conv": "1", "bn": "2"}[rest[1]], *rest[2:]]
    if rest[:2] == ["q", "local"]:
        return ["q", "local", "0", *rest[2:]]
    if rest[:2] == ["q", "proj"]:
        return ["q", "proj", _ATTN_SEQ[rest[2]], *rest[3:]]
    if rest[0] in ("q", "k", "v", "v_local", "stride_conv"):
        return [rest[0], _ATTN_SEQ[rest[1]], *rest[2:]]
    return rest


def _to_official(model: EfficientFormerV2) -> dict[str, torch.Tensor]:
    """Our state dict in the layout of snap-research/EfficientFormer's ``models/efficientformer_v2.py``."""
    mlp = {
        "fc1.conv": "fc1",
        "fc1.bn": "norm1",
        "mid.conv": "mid",
        "mid.bn": "mid_norm",
        "fc2.conv": "fc2",
        "fc2.bn": "norm2",
    }
    out = {}
    for key, value in model.state_dict().items():
        p = key.split(".")
        if p[0] == "stem":
            key = f"patch_embed.{ ({'conv1': 0, 'conv2': 3}[p[1]] + (p[2] == 'bn')) }.{p[3]}"
        elif p[0] == "head_dist":
            key = "dist_head." + p[1]
        elif p[0] == "stages" and p[2] == "downsample":
            i = int(p[1])
            if p[3] == "conv":  # Embedding: proj/norm for the plain ones, conv/bn beside the attention
                names = ("conv", "bn") if i == 3 else ("proj", "norm")
                key = ".".join([f"network.{2 * i - 1}", names[p[4] == "bn"], *p[5:]])
            else:
                key = ".".join([f"network.{2 * i - 1}", "attn", *_official_attn(p[4:])])
        elif p[0] == "stages":
            block, rest = f"network.{2 * int(p[1])}.{p[3]}", p[4:]
            if rest[0] in ("ls1", "ls2"):
                key, value = f"{block}.layer_scale_{rest[0][-1]}", value.reshape(-1, 1, 1)
            elif rest[0] == "mlp":
                key = ".".join([block, "mlp", mlp[f"{rest[1]}.{rest[2]}"], *rest[3:]])
            else:
                key = ".".join([block, "token_mixer", *_official_attn(rest[1:])])
        out[key] = value.clone()
    for name, idxs in model.named_buffers():  # official keeps the bias index as a persistent buffer
        if name.endswith("attention_bias_idxs"):
            p = name.split(".")
            i = int(p[1])
            owner = f"network.{2 * i - 1}.attn" if p[2] == "downsample" else f"network.{2 * i}.{p[3]}.token_mixer"
            out[f"{owner}.attention_bias_idxs"] = idxs.clone()
    return out


def _check_loads(path, reference: EfficientFormerV2) -> None:
    assert_loads_as("efficientformerv2_s0", path, reference, images(2, SMALL), resolution=SMALL)


def test_remap_turns_official_keys_into_ours(s0_small):
    official = _to_official(s0_small)
    assert "network.5.attn.q.local.0.weight" in official and "network.4.5.token_mixer.proj.1.weight" in official
    assert "patch_embed.4.running_var" in official and "network.6.3.layer_scale_1" in official
    ours = remap_checkpoint(official)
    state = s0_small.state_dict()
    assert sorted(ours) == sorted(state)
    assert all(torch.equal(ours[k], state[k]) for k in state)


def test_official_checkpoint_loads(s0_small, tmp_path):
    torch.save({"model": _to_official(s0_small), "epoch": 299}, tmp_path / "eformer_s0_450.pth")
    _check_loads(tmp_path / "eformer_s0_450.pth", s0_small)


def test_timm_and_safetensors_checkpoints_load(s0_small, tmp_path):
    state = s0_small.state_dict()
    # our layout is timm's: a few of timm's own key names, as its efficientformerv2 modules name them
    for key in (
        "stem.conv2.bn.running_mean",
        "stages.1.downsample.conv.conv.weight",
        "stages.2.blocks.5.token_mixer.stride_conv.conv.weight",
        "stages.3.downsample.attn.q.local.weight",
        "stages.3.downsample.attn.q.proj.bn.bias",
        "stages.3.blocks.3.ls1.gamma",
        "stages.2.blocks.0.mlp.mid.bn.weight",
        "head_dist.weight",
    ):
        assert key in state
    torch.save(state, tmp_path / "timm.pth")
    _check_loads(tmp_path / "timm.pth", s0_small)
    save_safetensors(state, tmp_path / "model.safetensors")
    _check_loads(tmp_path / "model.safetensors", s0_small)


def test_mismatched_checkpoint_lists_missing_unexpected_and_misshaped_keys(s0_small, tmp_path):
    state = dict(s0_small.state_dict())
    del state["stages.1.blocks.0.mlp.fc2.conv.bias"]
    state["stages.3.blocks.4.ls2.gamma"] = torch.ones(176)
    state["head.weight"] = torch.zeros(10, 176)
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as info:
        create_model("efficientformerv2_s0", checkpoint=tmp_path / "bad.pth", resolution=SMALL)
    err = info.value
    assert err.missing == ["stages.1.blocks.0.mlp.fc2.conv.bias"]
    assert err.unexpected == ["stages.3.blocks.4.ls2.gamma"]
    assert [w.split()[0] for w in err.wrong_shape] == ["head.weight"]
    msg = str(err)
    assert all(k in msg for k in ("fc2.conv.bias", "blocks.4.ls2.gamma", "head.weight"))


def test_stage_resolutions_round_up_like_the_convs():
    assert EfficientFormerV2Arch(resolution=224).stage_resolutions() == (56, 28, 14, 7)
    assert EfficientFormerV2Arch(resolution=SMALL).stage_resolutions() == (16, 8, 4, 2)
    assert EfficientFormerV2Arch(resolution=200).stage_resolutions() == (50, 25, 13, 7)
    assert EfficientFormerV2Arch(resolution=96).problems() == []
    assert [p.split(":")[0] for p in EfficientFormerV2Arch(resolution=200).problems()] == ["resolution"]
