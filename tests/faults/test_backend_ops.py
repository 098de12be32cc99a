"""An op a backend cannot run is refused naming both the op type and the node, on every backend.

onnxruntime and OpenVINO run here and are driven for real on crafted graphs. TensorRT and CoreML do not run
here: their message-building functions get what their public APIs give (TensorRT's ``IParserError`` fields,
coremltools' exception text, reproduced by a real conversion where coremltools imports) and real graphs.
"""

from __future__ import annotations

import importlib.util

import onnx
import pytest
from cli.conftest import assert_one_line_error, cli  # tests/ is on sys.path
from onnx import TensorProto, helper

import edgeformer
from edgeformer.compile.tensorrt import describe_parser_errors
from edgeformer.errors import InvalidInputError, ModelFileError
from edgeformer.runtimes.unsupported import (
    UnsupportedNode,
    coreml_unsupported,
    describe,
    openvino_unsupported,
    tensorrt_parser_nodes,
    torch_nodes,
)


def _model(path, nodes, inputs=(("x", TensorProto.FLOAT, [1, 4]),), domains=()):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(*i) for i in inputs],
        [helper.make_tensor_value_info("y", inputs[0][1], inputs[0][2])],
    )
    opsets = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, 1) for d in domains)]
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), path)
    return path


@pytest.fixture
def custom_op(tmp_path):
    """Relu, then an op of a domain no runtime knows (a custom op whose library is not loaded)."""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="stem/relu"),
        helper.make_node("FancyOp", ["a"], ["y"], name="block3/fancy", domain="com.example"),
    ]
    return _model(tmp_path / "custom.onnx", nodes, domains=["com.example"])


@pytest.fixture
def no_kernel(tmp_path):
    """BitShift on uint16: valid ONNX, but onnxruntime has kernels for uint8/32/64 only."""
    node = helper.make_node("BitShift", ["x", "s"], ["y"], name="shift/left", direction="LEFT")
    inputs = (("x", TensorProto.UINT16, [4]), ("s", TensorProto.UINT16, [4]))
    return _model(tmp_path / "bitshift.onnx", [node], inputs)


def test_onnxruntime_names_the_op_and_node_of_an_unknown_domain(custom_op):
    # onnxruntime's own words name the op only ("com.example:FancyOp(-1) is not a registered function/op")
    with pytest.raises(ModelFileError, match=r"cannot run 1 node: com\.example:FancyOp at node 'block3/fancy'"):
        edgeformer.Session(custom_op)


def test_onnxruntime_names_the_op_and_node_it_has_no_kernel_for(no_kernel):
    with pytest.raises(ModelFileError, match=r"cannot run 1 node: BitShift at node 'shift/left'"):
        edgeformer.Session(no_kernel)
    # the same through the child-process probe of `edgeformer profile`
    assert_one_line_error(cli("profile", str(no_kernel)), 3, "onnxruntime cannot run 1 node: BitShift at node")


def test_onnxruntime_names_an_op_the_default_domain_does_not_define(tmp_path):
    path = _model(tmp_path / "m.onnx", [helper.make_node("FancyOp", ["x"], ["y"], name="head/fancy")])
    # edgeformer's own ONNX check (modelfile) refuses it before onnxruntime sees it, naming both
    with pytest.raises(ModelFileError, match=r"fails the ONNX checker: node head/fancy \(FancyOp\): No Op registered"):
        edgeformer.Session(path)


def test_predict_names_the_op_and_node(custom_op, tmp_path):
    import numpy as np

    np.save(tmp_path / "x.npy", np.zeros((1, 4), np.float32))
    proc = cli("predict", str(custom_op), str(tmp_path / "x.npy"))
    assert_one_line_error(proc, 3, "com.example:FancyOp at node 'block3/fancy'")


def test_openvino_compile_names_the_op_and_node(custom_op, tmp_path):
    pytest.importorskip("openvino")
    proc = cli("compile", str(custom_op), "--format", "openvino", "-o", str(tmp_path / "ir"), cache=False)
    # OpenVINO's own error lists "com.example.FancyOp" under a C++ header that the one-line policy cuts
    assert_one_line_error(proc, 3, "has no conversion for 1 node: com.example:FancyOp at node 'block3/fancy'")
    assert not (tmp_path / "ir").exists()


def test_openvino_lists_every_unconvertible_node_by_its_own_name(tmp_path):
    pytest.importorskip("openvino")
    nodes = [
        helper.make_node("FancyOp", ["x"], ["a"], name="first", domain="com.example"),
        helper.make_node("Relu", ["a"], ["b"], name="middle"),
        helper.make_node("OtherOp", ["b"], ["y"], name="last", domain="com.example"),
    ]
    path = _model(tmp_path / "two.onnx", nodes, domains=["com.example"])
    assert openvino_unsupported(path) == [
        UnsupportedNode("first", "FancyOp", "com.example"),
        UnsupportedNode("last", "OtherOp", "com.example"),
    ]


def test_tensorrt_parser_errors_get_the_node_name_and_op_from_the_graph(custom_op):
    # IParserError: node() is the index in the main graph; node_name()/node_operator() can come back empty
    errors = [
        (1, "", "", "No importer registered for op: FancyOp"),
        (0, "stem/relu", "Relu", "INVALID_NODE: bad attribute"),
        (-1, "", "", "the graph has no outputs"),
    ]
    rows = tensorrt_parser_nodes(errors, custom_op)
    assert [n for n, _ in rows] == [
        UnsupportedNode("block3/fancy", "FancyOp", "com.example"),
        UnsupportedNode("stem/relu", "Relu", ""),
        UnsupportedNode("", "?", ""),
    ]
    assert describe_parser_errors([(n.name, n.op_type, d) for n, d in rows]) == (
        "node block3/fancy (FancyOp): No importer registered for op: FancyOp; "
        "node stem/relu (Relu): INVALID_NODE: bad attribute; node ? (?): the graph has no outputs"
    )


class _Bessel:
    """A module whose op coremltools has no conversion for (``aten::special_bessel_j0``)."""

    @staticmethod
    def module():
        import torch

        class M(torch.nn.Module):
            def forward(self, x):
                return torch.special.bessel_j0(torch.relu(x))

        return M().eval(), (torch.randn(1, 4),)


def test_coreml_names_the_op_and_node_for_both_captures():
    torch = pytest.importorskip("torch")
    m, args = _Bessel.module()
    exported = torch.export.export(m, args).run_decompositions({})
    traced = torch.jit.trace(m, args)
    # coremltools' words (coremltools/converters/mil/frontend/torch): export names the node and op, trace the op
    assert coreml_unsupported(
        "Unsupported fx node special_bessel_j0, kind special_bessel_j0", torch_nodes(exported)
    ) == [UnsupportedNode("special_bessel_j0", "special_bessel_j0", "torch")]
    found = coreml_unsupported(
        "PyTorch convert function for op 'special_bessel_j0' not implemented.", torch_nodes(traced)
    )
    assert [n.op_type for n in found] == ["aten::special_bessel_j0"] and found[0].name.startswith("%")
    assert "aten::special_bessel_j0 at node '%" in describe(found)


@pytest.mark.skipif(importlib.util.find_spec("coremltools") is None, reason="coremltools is not installed")
@pytest.mark.parametrize("capture", ["export", "trace"])
def test_a_real_coremltools_conversion_failure_is_named_by_op_and_node(tmp_path, capture):
    from edgeformer.errors import BackendUnavailableError
    from edgeformer.export.coreml import CoreMlConfig, compile_coreml_module

    m, args = _Bessel.module()
    try:
        with pytest.raises(InvalidInputError, match="conversion failed: NotImplementedError: no conversion for 1 node"):
            compile_coreml_module(m, args, config=CoreMlConfig(capture=capture), out=tmp_path / "pkg")
    except BackendUnavailableError as e:  # coremltools present but unusable here
        pytest.skip(str(e))
    assert not (tmp_path / "pkg").exists()
