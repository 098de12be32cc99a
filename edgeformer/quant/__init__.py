"""Post-training static INT8 quantization: calibrate on real samples, place Q/DQ where it pays, check.

One call does the whole step::

    int8 = edgeformer.quantize("build/l1", calib="imagenet_val/", out="build/l1-int8")

which pre-processes the graph, builds the transformer-aware :func:`default_plan`, calibrates (one
streaming pass), writes the QDQ model, compares it with FP32 on held-out samples, and writes a new
artifact (precision ``int8``, parent sha, step config, calibration/plan/fidelity summaries).

The pieces are public for placement search: :func:`calibrate` once (:func:`preprocess` and
:func:`compute_ranges`), then :func:`write_qdq` for each candidate :class:`QuantPlan` (groups from
:func:`node_groups`), and finally ``quantize(..., calibration=...)`` with the chosen plan, which reuses
that calibration instead of reading the data again.
"""

from .calibration import CalibrationData, CalibrationReader, CalibrationSummary, open_calibration
from .config import QuantConfig
from .ort_adapter import compute_ranges, preprocess, write_qdq
from .placement import SearchConfig
from .quantize import QUANT_OPS, Calibration, calibrate, check_fidelity, quantize
from .recipe import NodeGroup, QuantPlan, default_plan, node_groups
from .search import quantize_search

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
    "quantize_search",
    "write_qdq",
]
