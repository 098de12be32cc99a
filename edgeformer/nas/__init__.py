"""Latency-driven NAS: search spaces, per-device block latency tables, and the latency model built on them.

Example::

    from edgeformer.nas import SearchSpace, build_table, LatencyModel
    space = SearchSpace.of("shvit_s4")
    build_table(space, backend="ort", precision="int8", threads=2, out="s4-int8.json")
    lm = LatencyModel.load("s4-int8.json")
    lm.predict_ms(space.smallest()), lm.breakdown(space.parent).to_markdown()
"""

from .build import build_fleet_tables, build_table
from .keys import BlockKey
from .model import Breakdown, LatencyModel
from .slim import BudgetResult, SlimModel, SlimReport, slim
from .space import SearchSpace
from .table import LatencyTable, TableDevice, read_table
from .timing import TimingConfig, local_device
from .validate import ValidationReport, validate

__all__ = [
    "BlockKey",
    "Breakdown",
    "BudgetResult",
    "LatencyModel",
    "LatencyTable",
    "SearchSpace",
    "SlimModel",
    "SlimReport",
    "TableDevice",
    "TimingConfig",
    "ValidationReport",
    "build_fleet_tables",
    "build_table",
    "local_device",
    "read_table",
    "slim",
    "validate",
]
