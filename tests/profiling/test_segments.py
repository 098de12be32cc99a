"""Per-op profiles add up per block: export tags every node with its segment, ORT's own nodes are placed through the
optimized graph, and the per-block table lines up with a latency table's breakdown."""

from __future__ import annotations

import onnx
import pytest

from edgeformer.export.onnx import OnnxExportConfig, export_onnx
from edgeformer.modelscopes import node_segments, segment_of_scopes
from edgeformer.nas import SearchSpace
from edgeformer.nas.blocks import segments
from edgeformer.profiling import ProfileConfig, profile


@pytest.mark.parametrize(
    ("scopes", "segment"),
    [
        (
            ["", "stages", "stages.1", "stages.1.blocks", "stages.1.blocks.0", "stages.1.blocks.0.mixer"],
            "stages.1.blocks.0",
        ),
        (["", "stages", "stages.2", "stages.2.downsample", "stages.2.downsample.1"], "stages.2.downsample"),
        (["", "stages", "stages.3"], "stages.3"),
        (["", "stem", "stem.conv1"], None),
    ],
)
def test_scopes_name_their_segment(scopes, segment):
    assert segment_of_scopes(scopes) == segment


@pytest.mark.parametrize(("name", "dynamo"), [("digits_shvit", None), ("keywords_audioformer", False)])
def test_exported_nodes_carry_the_segments_a_latency_table_uses(tmp_path, name, dynamo):
    art = export_onnx(name, out=tmp_path / "a", config=OnnxExportConfig(dynamo=dynamo), cache=None)
    tags = node_segments(onnx.load(str(art.model_path)))
    space = SearchSpace.of(name)
    expected = {s.path for s in segments(space.zoo_model, space.parent, space.input_shape)}
    found = set(tags.values())
    assert expected <= found, expected - found  # every block of the table has nodes
    assert found - expected <= {f"stages.{i}" for i in range(4)}  # plus, at most, glue between blocks

    result = profile(art, ProfileConfig(threads=1, per_op=True, per_op_runs=3, warmup=1, runs=3))
    segs = result.per_op.segments
    assert next(g.segment for g in segs) == "front" and segs[-1].segment == "tail"
    assert "other" not in {g.segment for g in segs}  # ORT's fused and layout nodes were placed too
    assert sum(g.per_run_us for g in segs) == pytest.approx(sum(n.total_us for n in result.per_op.nodes) / 3, rel=1e-6)
    assert sum(g.pct for g in segs) == pytest.approx(100.0)


def test_your_own_module_gets_no_segment_tags(tmp_path):
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
    art = export_onnx(model, out=tmp_path / "m", example_inputs=(torch.randn(1, 3, 16, 16),), cache=None)
    assert node_segments(onnx.load(str(art.model_path))) == {}
    assert profile(art, ProfileConfig(threads=1, per_op=True, per_op_runs=2, runs=2, warmup=0)).per_op.segments == ()
