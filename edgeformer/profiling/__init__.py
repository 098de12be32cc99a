"""Latency profiling of artifacts: :func:`profile` times a model on a backend and fingerprints the device.

Torch-free: profiling runs on edge devices that have numpy and a runtime only.

Example::

    result = edgeformer.profile("build/efficientformer_l1", ProfileConfig(threads=2, per_op=True))
    print(result.latency.p50_ms, result.device.device_id)
    print(result.to_markdown())
"""

from .device import DeviceCard, device_card, fp16_arithmetic, fp16_pays_off, precision_unavailable
from .harness import LatencyStats, MemorySampler, MemoryStats, ProfileConfig, measure
from .per_op import OpBreakdown, profile_ops
from .profile import ProfileResult, build_feeds, open_session, profile

__all__ = [
    "DeviceCard",
    "LatencyStats",
    "MemorySampler",
    "MemoryStats",
    "OpBreakdown",
    "ProfileConfig",
    "ProfileResult",
    "build_feeds",
    "device_card",
    "fp16_arithmetic",
    "fp16_pays_off",
    "measure",
    "open_session",
    "precision_unavailable",
    "profile",
    "profile_ops",
]
