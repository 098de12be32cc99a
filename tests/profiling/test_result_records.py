"""Profiling results are typed records both ways: a device agent sends them over the wire, latency tables store them."""

from __future__ import annotations

import dataclasses
import json

from edgeformer.profiling import DeviceCard, LatencyStats, ProfileConfig, ProfileResult, device_card, profile
from edgeformer.profiling.harness import stats_from_samples


def test_latency_stats_and_device_card_round_trip_typed():
    stats = stats_from_samples([1_000_000 + 5_000 * i for i in range(40)], batch=2, warmup_ns=[3_000_000])
    d = json.loads(json.dumps(stats.to_dict()))
    assert d["stable"] is stats.stable and "samples_ms" not in d  # derived written, raw samples kept in memory
    assert LatencyStats.from_dict(d) == dataclasses.replace(stats, samples_ms=())
    card = device_card(backend="ort", threads=2)
    back = DeviceCard.from_dict(json.loads(json.dumps(card.to_dict())))
    assert back == card and back.device_id == card.device_id and isinstance(back.isa, tuple)


def test_a_profile_result_rebuilds_typed_from_its_json(tiny_artifact):
    result = profile(tiny_artifact, ProfileConfig(warmup=1, runs=5, per_op=True, per_op_runs=2, top_n=1))
    back = ProfileResult.from_dict(json.loads(json.dumps(result.to_dict())), where="wire")
    assert back.latency == dataclasses.replace(result.latency, samples_ms=())
    assert back.device == result.device and back.config == result.config and back.memory == result.memory
    assert back.artifact == result.artifact and back.artifact.input_shapes == {"x": (1, 3, 32, 32)}
    assert len(back.per_op.nodes) == 1 and back.per_op.num_nodes == result.per_op.num_nodes > 1
    assert back.per_op.nodes[0] == result.per_op.nodes[0]
