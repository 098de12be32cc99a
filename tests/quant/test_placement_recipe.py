"""The default placement folds a Relu into the quantized op before it (no DQ -> Q requantization in between)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeformer.compare import compare_outputs, ort_runner, run_all
from edgeformer.quant import QuantConfig, compute_ranges, default_plan, open_calibration, preprocess, write_qdq
from edgeformer.quant.config import SearchConfig

from .conftest import write_artifact


def _conv_relu_conv() -> onnx.ModelProto:
    """1x1 conv -> Relu -> 1x1 conv -> Relu (this one also read by the output Add: not foldable) -> Add."""
    rng = np.random.default_rng(0)
    w = lambda name, *shape: numpy_helper.from_array(  # noqa: E731
        (rng.standard_normal(shape) * shape[1] ** -0.5).astype(np.float32), name
    )
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["a"], name="pw1"),
        helper.make_node("Relu", ["a"], ["r"], name="act"),
        helper.make_node("Conv", ["r", "w1"], ["c"], name="pw2"),
        helper.make_node("Relu", ["c"], ["d"], name="act_shared"),
        helper.make_node("Add", ["c", "d"], ["y"], name="residual"),
    ]
    b0 = numpy_helper.from_array(rng.standard_normal(32).astype(np.float32) * 0.1, "b0")
    graph = helper.make_graph(
        nodes,
        "ffn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])],
        [w("w0", 32, 8, 1, 1), b0, w("w1", 8, 32, 1, 1)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


def _requantizations(path, tmp_path) -> int:
    """DequantizeLinear outputs read straight by a QuantizeLinear in the graph ORT runs: a tensor requantized to
    another range (ORT drops a float Relu between a DQ and a Q, leaving the pair)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / f"opt-{path.name}")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    model = onnx.load(so.optimized_model_filepath)
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return sum(n.op_type == "QuantizeLinear" and n.input[0] in dq for n in model.graph.node)


def test_default_plan_folds_a_relu_read_only_by_it_into_the_quantized_producer():
    plan = default_plan(_conv_relu_conv(), QuantConfig())
    assert "act" in plan.nodes_to_quantize  # pw1's only consumer
    assert "act_shared" not in plan.nodes_to_quantize  # pw2's output is also read by the Add: not its alone
    assert (
        plan.nodes_to_quantize.index("pw1") < plan.nodes_to_quantize.index("act") < plan.nodes_to_quantize.index("pw2")
    )  # graph order: the plan file stays stable


def test_symmetric_activations_keep_the_relu_out_of_the_plan():
    plan = default_plan(_conv_relu_conv(), QuantConfig.for_target("tensorrt"))
    assert "act" not in plan.nodes_to_quantize  # ORT keeps a symmetric Relu between DQ and Q: nothing to gain
    kept = QuantConfig(keep_float_nodes=("act",))
    assert "act" not in default_plan(_conv_relu_conv(), kept).nodes_to_quantize


def test_the_folded_relu_leaves_no_requantization_and_the_same_outputs(tmp_path):
    cfg = QuantConfig(search=SearchConfig(enabled=False), calib_size=16, fidelity_samples=8)
    art = write_artifact(_conv_relu_conv(), tmp_path / "fp32")
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(1).standard_normal((24, 8, 8, 8)).astype(np.float32))
    data = open_calibration(calib, inputs=art.manifest.inputs, preprocessing=None, config=cfg)
    pre = preprocess(art.model_path, tmp_path / "pre.onnx", cfg)
    ranges = compute_ranges(pre, data.reader, cfg)
    plan = default_plan(onnx.load(str(pre)), cfg)
    unfolded = plan.without(["act"], reason="test: the Relu left out of the plan")
    folded_path = write_qdq(pre, ranges, plan, cfg, tmp_path / "folded.onnx")
    unfolded_path = write_qdq(pre, ranges, unfolded, cfg, tmp_path / "unfolded.onnx")
    assert "act" not in {n.name for n in onnx.load(str(folded_path)).graph.node}  # ORT's quantizer removed it
    assert _requantizations(folded_path, tmp_path) < _requantizations(unfolded_path, tmp_path)
    reference = run_all(ort_runner(art.model_path), data.holdout)
    fid = compare_outputs(reference, run_all(ort_runner(folded_path), data.holdout), rows=True)
    assert fid.cosine > 0.999  # the zero point clamps exactly what the Relu cut
