from __future__ import annotations

import dataclasses

import pytest

from edgeformer.errors import ConfigError
from edgeformer.quant.config import QuantConfig


def test_default_config_is_the_fast_ort_cpu_placement():
    cfg = QuantConfig()
    assert (cfg.activation_type, cfg.weight_type) == ("uint8", "int8")  # u8s8: the fast x86 integer path
    assert cfg.per_channel and cfg.symmetric_weights and not cfg.symmetric_activations
    assert cfg.target == "ort-cpu" and cfg.gelu_fusion
    assert not cfg.quantize_attention_matmuls
    assert "Softmax" in cfg.keep_float_op_types and "LayerNormalization" in cfg.keep_float_op_types


def test_tensorrt_preset_is_symmetric_int8_with_dedicated_pairs():
    cfg = QuantConfig.for_target("tensorrt")
    assert cfg.activation_type == "int8" and cfg.symmetric_activations
    assert cfg.weight_type == "int8" and cfg.symmetric_weights and cfg.per_channel
    assert cfg.dedicated_qdq_pair and cfg.weight_qdq_pair and not cfg.gelu_fusion and not cfg.reduce_range


def test_openvino_preset_uses_u8_activations_i8_weights():
    cfg = QuantConfig.for_target("openvino", calib_size=64)
    assert (cfg.activation_type, cfg.weight_type, cfg.symmetric_activations) == ("uint8", "int8", False)
    assert cfg.calib_size == 64 and not cfg.gelu_fusion
    assert cfg.reduce_range  # 8-bit weights saturate in OpenVINO's x86 kernels without VNNI


def test_tensorrt_with_asymmetric_activations_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="for_target\\('tensorrt'\\)"):
        QuantConfig(target="tensorrt")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"method": "kl"}, "method"),
        ({"percentile": 0.0}, "percentile"),
        ({"percentile": 100.5}, "percentile"),
        ({"calib_size": 0}, "calib_size"),
        ({"activation_type": "int4"}, "activation_type"),
        ({"op_types": ("Conv", "Softmaxx")}, "Softmaxx"),
        ({"op_types": ()}, "op_types"),
        ({"op_types": "Conv"}, "tuple of strings"),
        ({"on_bad_sample": "ignore"}, "on_bad_sample"),
        ({"min_range": 0.0}, "min_range"),
        ({"min_cosine": 2.0}, "min_cosine"),
        ({"target": "openvino", "fuse_gelu": True}, "fuse_gelu"),
    ],
)
def test_invalid_values_raise_config_error_naming_the_field(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        QuantConfig(**kwargs)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as e:
        QuantConfig(method="kl", calib_size=-1)
    assert "method" in str(e.value) and "calib_size" in str(e.value)


def test_unknown_target_and_unknown_override_are_config_errors():
    with pytest.raises(ConfigError, match="ort-cpu"):
        QuantConfig.for_target("tflite")
    with pytest.raises(ConfigError, match="percentil"):
        QuantConfig.for_target("ort-cpu", percentil=99.0)
    with pytest.raises(ConfigError, match="unknown QuantConfig field"):
        QuantConfig().replace(perchannel=False)


def test_config_is_frozen_and_round_trips_through_a_dict():
    cfg = QuantConfig(method="percentile", keep_float_nodes=["a", "b"])
    assert cfg.keep_float_nodes == ("a", "b")  # lists are stored as tuples: hashable, comparable
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.method = "minmax"  # type: ignore[misc]
    assert QuantConfig.from_dict(cfg.to_dict()) == cfg
    assert hash(cfg) == hash(QuantConfig.from_dict(cfg.to_dict()))
