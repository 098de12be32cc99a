"""Search spaces: every zoo variant has one; its members are valid, hashable, seeded, sliceable sub-networks."""

from __future__ import annotations

import random

import pytest
import torch

from edgeformer.errors import InvalidArchError, UnknownModelError
from edgeformer.models import create_model, list_models, slice_weights
from edgeformer.models.reference import list_references
from edgeformer.nas import SearchSpace
from edgeformer.nas.blocks import segments
from edgeformer.nas.build import table_keys


@pytest.mark.parametrize("name", list_models() + list_references())
def test_every_variant_has_a_bounded_seeded_space(name):
    space = SearchSpace.of(name)
    assert space.contains(space.largest()) and space.largest() == space.parent
    assert space.contains(space.smallest())
    a, b = space.sample(random.Random(3)), space.sample(random.Random(3))
    assert a == b and hash(a) == hash(b) and space.contains(a)
    for stage, parent_w in zip(space.widths, space.genome(space.parent).widths, strict=True):
        assert stage[0] == parent_w and all(w % space.width_step == 0 for w in stage[1:]) and len(stage) <= 4
    assert 1 < space.size < 10**30


def test_smallest_is_smallest_and_members_differ():
    space = SearchSpace.of("efficientformer_l1")
    small = space.genome(space.smallest())
    assert small.widths == (32, 64, 144, 288) and small.depths == (2, 1, 3, 2)
    assert all(m != "attn" for stage in small.mixers for m in stage)
    members = {space.sample(random.Random(i)) for i in range(20)}
    assert len(members) == 20


def test_outside_members_are_refused_with_every_reason():
    space = SearchSpace.of("shvit_s4")
    g = space.genome(space.parent)
    bad = g.__class__(widths=(200, 336, 448), depths=(4, 7, 9), ratios=g.ratios, mixers=g.mixers, partial=g.partial)
    with pytest.raises(InvalidArchError) as e:
        space.to_arch(bad)
    assert "width 200" in str(e.value) and "depth 9" in str(e.value)
    assert not space.contains(create_model("shvit_s1").arch)
    with pytest.raises(UnknownModelError):
        SearchSpace.of("shvit_s9")


@pytest.mark.parametrize("name", ["digits_shvit", "keywords_audioformer", "digits_efficientformerv2"])
def test_members_are_weight_inheritable_and_buildable_from_arch_json(name):
    space = SearchSpace.of(name)
    parent = create_model(space.zoo_model, **space.parent.to_dict()).eval()
    for arch in (space.smallest(), space.sample(random.Random(1))):
        child = slice_weights(parent, arch).eval()
        rebuilt = create_model(space.zoo_model, **arch.to_dict())  # an ARCH.json builds the same network
        assert rebuilt.arch == arch
        x = torch.randn(space.input_shape) if len(space.input_shape) > 2 else torch.rand(space.input_shape) * 2 - 1
        assert torch.isfinite(child(x)).all()


@pytest.mark.parametrize("name", ["efficientformer_l1", "shvit_s4", "efficientformerv2_s0", "audioformer_s"])
def test_witnesses_cover_every_block_members_can_have(name):
    space = SearchSpace.of(name)
    keys = table_keys(space)
    rng = random.Random(7)
    for arch in [space.smallest(), space.parent] + [space.sample(rng) for _ in range(60)]:
        missing = [s.key.id for s in segments(space.zoo_model, arch, space.input_shape) if s.key.id not in keys]
        assert not missing, missing


def test_block_keys_tell_blocks_apart_and_share_equal_ones():
    space = SearchSpace.of("efficientformer_l1")
    segs = segments(space.zoo_model, space.parent, space.input_shape)
    by_path = {s.path: s.key for s in segs}
    assert by_path["stages.0.blocks.0"] == by_path["stages.0.blocks.1"]  # same width, ratio, kind, tokens
    assert by_path["stages.3.blocks.3"].kind == "block:TokenBlock+attn"
    assert by_path["stages.3.blocks.2"].kind == "block:PoolBlock"
    g = space.genome(space.parent)
    ratios = tuple(tuple(2.0 if (s, b) == (0, 0) else r for b, r in enumerate(st)) for s, st in enumerate(g.ratios))
    narrower = space.to_arch(g.__class__(g.widths, g.depths, ratios, g.mixers))
    other = {s.path: s.key for s in segments(space.zoo_model, narrower, space.input_shape)}
    assert other["stages.0.blocks.0"] != by_path["stages.0.blocks.0"]
    assert other["stages.0.blocks.1"] == by_path["stages.0.blocks.1"]
    assert next(s.path for s in segs) == "front" and segs[-1].path == "tail"
