"""The bench pipeline: export a model, build and time every target here, one table row per target x precision.

:func:`bench` runs the rows of :data:`~edgeformer.bench.rows.ROW_PRODUCERS` (each a :class:`RowProducer`
over the shared :class:`BenchContext`) and writes a :class:`BenchReport` (``bench.json``, ``bench.md``,
``bench.png``).
"""

from .context import BenchContext, RowProducer, Timed, torch_contender
from .pipeline import bench, select
from .report import BACKENDS, DEFAULT_MIN_COSINE, FORMATS, PRECISIONS, BenchConfig, BenchReport, BenchRow
from .rows import ROW_PRODUCERS

__all__ = [
    "BACKENDS",
    "DEFAULT_MIN_COSINE",
    "FORMATS",
    "PRECISIONS",
    "ROW_PRODUCERS",
    "BenchConfig",
    "BenchContext",
    "BenchReport",
    "BenchRow",
    "RowProducer",
    "Timed",
    "bench",
    "select",
    "torch_contender",
]

from ..callable_package import make_callable

make_callable(__name__, bench)
