from __future__ import annotations

import dataclasses
import json
import logging
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgeformer.artifact import Artifact, sha256_file
from edgeformer.errors import (
    BackendUnavailableError,
    ConfigError,
    DynamicShapeError,
    InvalidInputError,
    OutputExistsError,
    QualityGateError,
)
from edgeformer.quant import (
    QuantConfig,
    QuantPlan,
    SearchConfig,
    check_fidelity,
    compute_ranges,
    default_plan,
    node_groups,
    open_calibration,
    preprocess,
    quantize,
    write_qdq,
)

from .conftest import attention_model, save_image, write_artifact

NO_SEARCH = SearchConfig(enabled=False)  # the core: the default plan, no timing (the search has tests of its own)
FAST = QuantConfig(calib_size=16, fidelity_samples=8, search=NO_SEARCH)


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def consumers(model: onnx.ModelProto, tensor: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if tensor in n.input]


def node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def float_only_pairs(model: onnx.ModelProto, quantized: set[str]) -> list[str]:
    """Activation Q/DQ pairs that exist for float nodes only: neither made by a quantized node's output
    nor read by a quantized node. A float Softmax/LayerNorm next to int8 neighbours legitimately reads
    a DQ or feeds a Q; a pair that serves nothing but float nodes means they were quantized."""
    prod = producers(model)
    bad = []
    for q in (n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in prod):
        for dq in (c for c in consumers(model, q.output[0]) if c.op_type == "DequantizeLinear"):
            readers = {c.name for c in consumers(model, dq.output[0])}
            if prod[q.input[0]].name not in quantized and not readers & quantized:
                bad.append(f"{q.input[0]} -> {sorted(readers)}")
    return bad


def assert_qdq_placement(model: onnx.ModelProto, quantized: list[str], float_: list[str], plan=None) -> None:
    """Quantized nodes read data and weight through DequantizeLinear; float nodes get no Q/DQ of their own."""
    prod = producers(model)
    for name in quantized:
        n = node(model, name)
        kinds = [prod[i].op_type if i in prod else "initializer" for i in n.input[:2]]
        assert kinds == ["DequantizeLinear"] * 2, f"{name} inputs come from {kinds}"
    in_plan = set(plan.nodes_to_quantize) if plan is not None else set(quantized)
    assert not float_only_pairs(model, in_plan)
    for name in float_:
        assert name not in in_plan
        n = node(model, name)
        assert not all(prod.get(i) is not None and prod[i].op_type == "DequantizeLinear" for i in n.input if i), (
            f"{name} reads only dequantized inputs (weights included): it was quantized"
        )


def _plan_of(q) -> QuantPlan:
    return QuantPlan.from_dict(json.loads((q.path / "plan.json").read_text()))


def test_quantize_writes_an_int8_artifact_with_lineage_and_fidelity(artifact, calib_npz, tmp_path):
    q = quantize(artifact, FAST, calib=calib_npz, out=tmp_path / "int8")
    m = Artifact.load(q.path).manifest  # reload: hashes verify
    assert (m.format, m.precision, m.step) == ("onnx", "int8", "quantize")
    assert m.parent_sha == artifact.sha and m.step_config["calib_size"] == 16
    parent = Artifact.load(artifact.path).manifest
    assert m.preprocessing == parent.preprocessing and m.labels == parent.labels
    calib, fid = m.calibration, m.fidelity
    assert calib.used == 16 and calib.holdout == 8 and calib.skipped == 0
    assert fid.samples == 8 and fid.on == "held-out samples" and (fid.ok, fid.min_cosine) == (True, FAST.min_cosine)
    assert fid.cosine > 0.99 and fid.top1_agreement is not None and fid.problem is None
    assert m.extra["plan"]["quantized_by_op"] == {"Add": 1, "Conv": 1, "Gemm": 1, "MatMul": 4}
    assert (q.path / "plan.json").is_file()


def test_qdq_wraps_conv_and_matmul_but_not_softmax_layernorm_or_the_stem(artifact, calib_npz, tmp_path):
    q = quantize(artifact, FAST, calib=calib_npz, out=tmp_path / "int8")
    model = onnx.load(str(q.model_path))
    assert_qdq_placement(
        model,
        quantized=["pw", "q", "k", "v", "proj", "head"],
        float_=["softmax", "ln", "attn_qk", "attn_av", "stem"],
        plan=_plan_of(q),
    )
    assert not any(c.op_type == "DequantizeLinear" for c in consumers(model, "input"))  # image stays float


def test_quantizing_the_same_input_twice_gives_byte_identical_models(artifact, calib_npz, tmp_path):
    a = quantize(artifact, FAST, calib=calib_npz, out=tmp_path / "a", cache=None)
    b = quantize(artifact, FAST, calib=calib_npz, out=tmp_path / "b", cache=None)  # computed again, not copied
    assert sha256_file(a.model_path) == sha256_file(b.model_path)


def test_the_search_is_a_config_field_on_by_default_and_recorded_in_the_step_config(artifact, calib_npz, tmp_path):
    assert QuantConfig().search == SearchConfig() and SearchConfig().enabled  # what `edgeformer quantize` runs
    trt = QuantConfig.for_target("tensorrt", search=NO_SEARCH)
    assert not trt.search.enabled and trt.symmetric_activations and trt.to_dict()["search"]["enabled"] is False
    assert QuantConfig.from_dict(json.loads(json.dumps(trt.to_dict()))) == trt
    q = quantize(artifact, FAST, calib=calib_npz, out=tmp_path / "int8")
    assert q.manifest.step_config["search"] == NO_SEARCH.to_dict() and not (q.path / "quant_report.md").exists()
    with pytest.raises(ConfigError, match="SearchConfig"):
        QuantConfig(search={"enabled": False})


def test_a_plan_with_eval_data_is_refused_before_any_work_and_with_the_search_on_skips_it(
    artifact, calib_npz, tmp_path
):
    plan = _plan_of(quantize(artifact, FAST, calib=calib_npz, out=tmp_path / "core"))
    with pytest.raises(ConfigError, match="plan= fixes the placement"):
        quantize(artifact, FAST, calib=calib_npz, out=tmp_path / "q", plan=plan, eval_data=calib_npz)
    assert not (tmp_path / "q").exists()
    fewer = plan.without(["head"], reason="test")
    q = quantize(artifact, FAST.replace(search=SearchConfig()), calib=calib_npz, out=tmp_path / "q", plan=fewer)
    assert _plan_of(q) == fewer and not (q.path / "quant_report.md").exists()  # the plan as given, no search


def test_the_search_fails_before_calibrating_without_matplotlib_but_the_core_runs(
    artifact, calib_npz, tmp_path, monkeypatch
):
    class Reader:
        calls = 0

        def get_next(self):
            self.calls += 1
            return None

        def rewind(self) -> None:
            pass

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what Python sees when the package is not installed
    reader = Reader()
    with pytest.raises(BackendUnavailableError, match=r"'export' extra .*\(matplotlib is not installed\)") as e:
        quantize(artifact, FAST.replace(search=SearchConfig()), calib=reader, out=tmp_path / "q")
    assert e.value.exit_code == 5 and reader.calls == 0 and not (tmp_path / "q").exists()
    assert quantize(artifact, FAST, calib=calib_npz, out=tmp_path / "core").precision == "int8"


def test_already_quantized_input_is_refused(artifact, calib_npz, tmp_path):
    q = quantize(artifact, FAST, calib=calib_npz, out=tmp_path / "int8")
    with pytest.raises(InvalidInputError, match=r"already quantized.*FP32 artifact"):
        quantize(q, FAST, calib=calib_npz, out=tmp_path / "twice")
    with pytest.raises(InvalidInputError, match="QuantizeLinear"):  # also as a bare file, by its nodes
        quantize(q.model_path, FAST, calib=calib_npz, out=tmp_path / "twice")
    assert not (tmp_path / "twice").exists()


def test_dynamic_shape_without_a_calibration_shape_is_refused(tmp_path):
    art = write_artifact(attention_model(dynamic=True), tmp_path / "dyn", preprocessing=None)
    with pytest.raises(DynamicShapeError, match=r"height.*width"):
        quantize(art, FAST, calib="synthetic", out=tmp_path / "int8")
    assert not (tmp_path / "int8").exists()


def test_constant_branch_gets_a_minimum_range_and_no_zero_scale(tmp_path, calib_npz, caplog):
    art = write_artifact(attention_model(constant_branch=True), tmp_path / "fp32")
    cfg = FAST.replace(op_types=("Conv", "MatMul", "Gemm", "Add"))  # quantize the add that reads the constant
    with caplog.at_level(logging.WARNING):
        q = quantize(art, cfg, calib=calib_npz, out=tmp_path / "int8")
    assert "const" in q.manifest.extra["ranges"]["widened"] and "constant" in caplog.text
    model = onnx.load(str(q.model_path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    scales = [inits[n.input[1]] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert scales and all(np.isfinite(s).all() and (s > 0).all() for s in scales)


def test_fidelity_gate_refuses_to_write_a_divergent_model(artifact, calib_npz, tmp_path):
    with pytest.raises(QualityGateError, match=r"diverges from FP32.*nothing was written"):
        quantize(artifact, FAST.replace(min_cosine=1.0), calib=calib_npz, out=tmp_path / "int8")
    assert not (tmp_path / "int8").exists() and not list(tmp_path.glob(".int8*"))


def test_fidelity_gate_refuses_nan_outputs_however_low_the_bar(artifact, calib_npz, tmp_path):
    # `nan < min_cosine` is False: a bare comparison would let a model that outputs NaN through any bar
    model = onnx.load(str(artifact.model_path))
    producer = next(n for n in model.graph.node if "logits" in n.output)
    producer.output[list(producer.output).index("logits")] = "logits_raw"
    model.graph.node.append(onnx.helper.make_node("Mul", ["logits_raw", "nan"], ["logits"]))
    model.graph.initializer.append(numpy_helper.from_array(np.array(np.nan, np.float32), "nan"))
    onnx.save(model, str(tmp_path / "nan.onnx"))
    data = open_calibration(calib_npz, inputs=artifact.manifest.inputs, preprocessing=None, config=FAST)
    with pytest.raises(QualityGateError, match=r"diverges from FP32 on 8 held-out samples: logits: NaN/Inf: 10 NaN"):
        check_fidelity(artifact.model_path, tmp_path / "nan.onnx", data, FAST.replace(min_cosine=-1.0))
    assert check_fidelity(artifact.model_path, artifact.model_path, data, FAST.replace(min_cosine=1.0)).cosine == 1.0


def test_only_the_attn_v_matmul_is_quantized_when_attention_matmuls_are_on(artifact, calib_npz, tmp_path):
    cfg = FAST.replace(quantize_attention_matmuls=True)
    q = quantize(artifact, cfg, calib=calib_npz, out=tmp_path / "int8")
    model = onnx.load(str(q.model_path))
    assert_qdq_placement(model, quantized=["attn_av"], float_=["softmax", "attn_qk"], plan=_plan_of(q))


def test_tensorrt_preset_writes_symmetric_int8_with_weight_qdq_pairs(artifact, calib_npz, tmp_path):
    cfg = QuantConfig.for_target("tensorrt", calib_size=16, fidelity_samples=8, search=NO_SEARCH)
    model = onnx.load(str(quantize(artifact, cfg, calib=calib_npz, out=tmp_path / "trt").model_path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)  # no zero points
    weight_q = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "pw.w"]
    assert weight_q  # the float weight sits behind its own Q/DQ pair


def test_a_reader_without_rewind_is_a_config_error(artifact, tmp_path):
    class OnlyGetNext:
        def get_next(self):
            return None

    with pytest.raises(ConfigError, match="rewind"):
        quantize(artifact, FAST, calib=OnlyGetNext(), out=tmp_path / "int8")


def test_existing_output_needs_overwrite(artifact, calib_npz, tmp_path):
    (tmp_path / "int8").mkdir()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        quantize(artifact, FAST, calib=calib_npz, out=tmp_path / "int8")
    assert quantize(artifact, FAST, calib=calib_npz, out=tmp_path / "int8", overwrite=True).precision == "int8"


def test_image_folder_with_bad_files_is_quantized_with_skip_and_counted(artifact, image_folder, tmp_path):
    (image_folder / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    save_image(image_folder / "cmyk.jpg", "CMYK", np.random.default_rng(3))
    q = quantize(
        artifact, FAST.replace(on_bad_sample="skip", fidelity_samples=4), calib=image_folder, out=tmp_path / "int8"
    )
    calib = q.manifest.calibration
    assert calib.found == 26 and calib.sampled == 16 and calib.holdout == 4
    assert calib.used + calib.skipped == 16 and calib.skipped <= 1


def test_ranges_are_computed_once_and_reused_for_several_plans(artifact, calib_npz, tmp_path):
    cfg = FAST
    pre = preprocess(artifact.model_path, tmp_path / "pre.onnx", cfg)
    pre_model = onnx.load(str(pre))
    data = open_calibration(calib_npz, inputs=artifact.manifest.inputs, preprocessing=None, config=cfg)
    ranges = compute_ranges(pre, data.reader, cfg)
    full = default_plan(pre_model, cfg)
    fewer = full.without(["q", "k", "v"], reason="search: kept float")
    a = onnx.load(str(write_qdq(pre, ranges, full, cfg, tmp_path / "a.onnx")))
    b = onnx.load(str(write_qdq(pre, ranges, fewer, cfg, tmp_path / "b.onnx")))
    assert_qdq_placement(b, quantized=["pw", "proj"], float_=["softmax"], plan=fewer)
    assert node(b, "q").input[1] not in producers(b)  # the float weight, read directly
    count = lambda m: sum(n.op_type == "DequantizeLinear" for n in m.graph.node)  # noqa: E731
    assert count(b) < count(a) and fewer.reasons["q"] == "search: kept float"
    with pytest.raises(ConfigError, match="selects no nodes"):
        write_qdq(pre, ranges, full.without(full.nodes_to_quantize, "x"), cfg, tmp_path / "c.onnx")
    with pytest.raises(ConfigError, match="not in"):
        write_qdq(pre, ranges, full.with_nodes(["no_such_node"]), cfg, tmp_path / "c.onnx")


def _ffn(dw_between_gelus: bool) -> onnx.ModelProto:
    """pw conv -> [Gelu] -> depthwise conv -> [Gelu] -> pw conv, plus a bias Add on the output."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    w = lambda name, *shape: numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)  # noqa: E731
    act = (
        (lambda i, o, n: [helper.make_node("Gelu", [i], [o], name=n, domain="com.microsoft")])
        if dw_between_gelus
        else (lambda i, o, n: [helper.make_node("Relu", [i], [o], name=n)])
    )
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["a"], name="pw1"),
        *act("a", "b", "act1"),
        helper.make_node("Conv", ["b", "wd"], ["c"], name="dw", group=16, pads=[1, 1, 1, 1]),
        *act("c", "d", "act2"),
        helper.make_node("Conv", ["d", "w1"], ["e"], name="pw2"),
        helper.make_node("Add", ["e", "bias"], ["y"], name="bias_add"),
    ]
    graph = helper.make_graph(
        nodes,
        "ffn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])],
        [w("w0", 16, 8, 1, 1), w("wd", 16, 1, 3, 3), w("w1", 8, 16, 1, 1), w("bias", 1, 8, 1, 1)],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    )


def test_default_plan_keeps_a_depthwise_conv_float_only_between_float_ops():
    isolated = default_plan(_ffn(dw_between_gelus=True), QuantConfig())
    assert set(isolated.nodes_to_quantize) == {"pw1", "pw2"} and "depthwise" in isolated.reasons["dw"]
    chained = default_plan(_ffn(dw_between_gelus=False), QuantConfig())  # Relu is carried in int8
    assert set(chained.nodes_to_quantize) == {"pw1", "act1", "dw", "act2", "pw2"}  # Relus fold into the convs
    assert "constant" in chained.reasons["bias_add"]


def test_default_plan_keeps_a_spectrogram_front_end_float():
    """Everything upstream of a Log (STFT as a conv, power, mel MatMul) stays float; the network after it does not."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    w = lambda name, *shape: numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)  # noqa: E731
    nodes = [
        helper.make_node("Conv", ["wave", "basis"], ["spec"], name="stft", strides=[4]),
        helper.make_node("Mul", ["spec", "spec"], ["power"], name="power"),
        helper.make_node("Transpose", ["power"], ["pt"], name="t", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["pt", "mel"], ["m"], name="mel"),
        helper.make_node("Add", ["m", "eps"], ["me"], name="eps_add"),
        helper.make_node("Log", ["me"], ["logmel"], name="log"),
        helper.make_node("MatMul", ["logmel", "w1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "frontend",
        [helper.make_tensor_value_info("wave", TensorProto.FLOAT, [1, 1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 15, 4])],
        [
            w("basis", 8, 1, 8),
            w("mel", 8, 6),
            numpy_helper.from_array(np.full((1,), 1e-6, np.float32), "eps"),
            w("w1", 6, 16),
            w("w2", 16, 4),
        ],
    )
    plan = default_plan(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), QuantConfig())
    assert set(plan.nodes_to_quantize) == {"fc1", "relu", "fc2"}  # the Relu folds into fc1
    for name in ("stft", "mel"):
        assert "front-end" in plan.reasons[name], plan.reasons


def test_default_plan_reasons_for_the_attention_model():
    plan = default_plan(attention_model(), QuantConfig())
    assert set(plan.nodes_to_quantize) == {"pw", "q", "k", "v", "proj", "residual", "head"}
    assert "stem" in plan.reasons["stem"] and "Softmax" in plan.reasons["softmax"]
    assert "(qk)" in plan.reasons["attn_qk"] and "(av)" in plan.reasons["attn_av"]
    assert plan.summary()["quantized"] == 7


def test_node_groups_use_weight_names_when_the_graph_has_no_metadata():
    model = attention_model()
    groups = {g.name: set(g.nodes) for g in node_groups(model)}
    assert sorted(n for ns in groups.values() for n in ns) == sorted(n.name for n in model.graph.node)
    assert {"stem_relu", "pw"} <= groups["pw"] and {"flatten", "to_tokens", "ln"} <= groups["ln"]  # downstream
    assert {"softmax", "proj", "residual"} <= groups["proj"]
    assert "attn_av" in groups["v"]  # merging two activations: joins its labelled producer


# --- a small zoo model, exported by torch's dynamo exporter ----------------------------------
TINY_L1 = dict(
    resolution=64,
    widths=(16, 32, 48, 64),
    depths=(1, 1, 1, 2),
    mlp_ratios=((4,), (4,), (4,), (4, 4)),
    mixers=(("pool",), ("pool",), ("pool",), ("pool", "attn")),
    num_heads=2,
    key_dim=8,
    val_dim=16,
    num_classes=10,
)


@pytest.fixture(scope="module")
def zoo_artifact(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from edgeformer.artifact import ArtifactWriter, Manifest
    from edgeformer.modelfile import embed_manifest, graph_io
    from edgeformer.models import create_model, get_spec

    model = create_model("efficientformer_l1", **TINY_L1).eval().fuse()
    root = tmp_path_factory.mktemp("zoo")
    path = root / "export.onnx"
    torch.onnx.export(
        model,
        (torch.randn(1, 3, 64, 64),),
        str(path),
        dynamo=True,
        opset_version=18,
        input_names=["input"],
        output_names=["logits"],
        external_data=False,
    )
    proto = onnx.load(str(path))
    inputs, outputs = graph_io(proto)
    pre = dataclasses.replace(get_spec("efficientformer_l1").input, resolution=64)
    manifest = Manifest(
        format="onnx",
        precision="fp32",
        model_name="efficientformer_l1",
        main_file="model.onnx",
        inputs=inputs,
        outputs=outputs,
        preprocessing=pre,
    )
    with ArtifactWriter(root / "fp32") as w:
        embed_manifest(proto, manifest)
        onnx.save(proto, str(w.dir / "model.onnx"))
        art = w.commit(manifest)
    rng = np.random.default_rng(0)
    calib = root / "calib.npz"
    np.savez(calib, input=rng.standard_normal((48, 3, 64, 64)).astype(np.float32))
    return art, calib


@pytest.mark.slow
def test_zoo_model_int8_matches_fp32_and_keeps_softmax_layernorm_float(zoo_artifact, tmp_path):
    art, calib = zoo_artifact
    cfg = QuantConfig(calib_size=32, fidelity_samples=16, search=NO_SEARCH)
    q = quantize(art, cfg, calib=calib, out=tmp_path / "int8")
    assert q.manifest.fidelity.cosine_mean >= 0.999
    model = onnx.load(str(q.model_path))
    prod = producers(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    int8_convs = [
        n for n in convs if all(prod.get(i) is not None and prod[i].op_type == "DequantizeLinear" for i in n.input[:2])
    ]
    assert len(int8_convs) == len(convs) - 1  # every conv but the stem
    matmul_w = [
        n
        for n in model.graph.node
        if n.op_type in ("MatMul", "Gemm")
        and prod.get(n.input[1]) is not None
        and prod[n.input[1]].op_type == "DequantizeLinear"
    ]
    assert matmul_w
    kept = [n.name for n in model.graph.node if n.op_type in ("Softmax", "LayerNormalization")]
    assert kept and not set(kept) & set(_plan_of(q).nodes_to_quantize)
    assert not float_only_pairs(model, set(_plan_of(q).nodes_to_quantize))


@pytest.mark.slow
def test_zoo_model_quantization_is_deterministic(zoo_artifact, tmp_path):
    art, calib = zoo_artifact
    cfg = QuantConfig(calib_size=8, fidelity_samples=4, search=NO_SEARCH)
    a = quantize(art, cfg, calib=calib, out=tmp_path / "a", cache=None)
    b = quantize(art, cfg, calib=calib, out=tmp_path / "b", cache=None)
    assert sha256_file(a.model_path) == sha256_file(b.model_path)


@pytest.mark.slow
def test_zoo_node_groups_follow_the_module_tree(zoo_artifact, tmp_path):
    art, _ = zoo_artifact
    pre = onnx.load(str(preprocess(art.model_path, tmp_path / "pre.onnx", QuantConfig())))
    groups = node_groups(pre)
    names = [g.name for g in groups]
    assert "stages.3.blocks.1" in names and "stages.0.blocks.0" in names
    assert sum(len(g.nodes) for g in groups) == len(pre.graph.node)
    stages = [g.name for g in node_groups(pre, level="stage")]
    assert {"stages.0", "stages.3"} <= set(stages) and len(stages) < len(names)


def test_a_graph_ort_symbolic_inference_cannot_follow_still_quantizes(tmp_path, caplog, monkeypatch):
    """EfficientFormerV2's dynamic-batch export makes ORT's symbolic shape inference give up (a bare
    ``Exception``); pre-processing falls back to ONNX shape inference and says so instead of crashing."""
    from edgeformer.export import export
    from edgeformer.export.onnx import OnnxExportConfig

    fp32 = export("efficientformerv2_s0", fmt="onnx", out=tmp_path / "fp32", config=OnnxExportConfig(resolution=64))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # ORT dumps its partial model into the working directory when inference fails
    with caplog.at_level(logging.WARNING, logger="edgeformer.quant.ort_adapter"):
        cfg = QuantConfig(calib_size=4, fidelity_samples=2, search=NO_SEARCH)
        q = quantize(fp32, cfg, calib="synthetic", out=tmp_path / "int8")
    assert "symbolic shape inference failed" in caplog.text
    assert q.manifest.precision == "int8" and q.manifest.fidelity.cosine > 0.99
    assert list(cwd.iterdir()) == []  # nothing left behind in the user's folder


def test_a_relative_artifact_path_is_pre_processed_with_symbolic_inference(
    artifact, calib_npz, tmp_path, caplog, monkeypatch
):
    monkeypatch.chdir(artifact.path.parent)  # the README quick start passes paths relative to the working folder
    with caplog.at_level(logging.WARNING, logger="edgeformer.quant.ort_adapter"):
        q = quantize(artifact.path.name, FAST, calib=calib_npz, out=tmp_path / "int8", cache=None)
    assert "symbolic shape inference failed" not in caplog.text and q.manifest.precision == "int8"
