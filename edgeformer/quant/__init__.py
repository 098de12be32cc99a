"""Post-training static INT8 quantization: calibrate on real samples, place Q/DQ where it pays, check.

One call does the whole step, the same one ``edgeformer quantize`` runs::

    int8 = edgeformer.quantize("build/l1", calib="imagenet_val/", out="build/l1-int8")

which pre-processes the graph, calibrates (one streaming pass), searches where INT8 pays on this CPU starting
from the transformer-aware :func:`default_plan` (``QuantConfig.search``; ``SearchConfig(enabled=False)`` keeps
the default plan and skips the timing), writes the QDQ model, compares it with FP32 on held-out samples, and
writes a new artifact (precision ``int8``, parent sha, step config, calibration/fidelity records, the report).

The pieces are public for placement searches of your own: :func:`calibrate` once (:func:`preprocess` and
:func:`compute_ranges`), then :func:`write_qdq` for each candidate :class:`QuantPlan` (groups from
:func:`node_groups`), and finally ``quantize(..., calibration=..., plan=...)`` with the search off, which
reuses that calibration instead of reading the data again.
"""

from .calibration import CalibrationData, CalibrationReader, CalibrationSummary, open_calibration
from .config import QuantConfig, SearchConfig
from .core import QUANT_OPS, Calibration, calibrate, check_fidelity
from .ort_adapter import compute_ranges, preprocess, write_qdq
from .quantize import quantize  # the function, not the module, is edgeformer.quant.quantize
from .recipe import NodeGroup, QuantPlan, default_plan, node_groups

__all__ = [
    "QUANT_OPS",
    "Calibration",
    "CalibrationData",
    "CalibrationReader",
    "CalibrationSummary",
    "NodeGroup",
    "QuantConfig",
    "QuantPlan",
    "SearchConfig",
    "calibrate",
    "check_fidelity",
    "compute_ranges",
    "default_plan",
    "node_groups",
    "open_calibration",
    "preprocess",
    "quantize",
    "write_qdq",
]
