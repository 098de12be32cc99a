"""``QuantConfig``: every knob of post-training static INT8 quantization, typed and validated.

One frozen dataclass replaces ORT's ``extra_options`` dict: a typo is a ``TypeError`` at construction,
a contradiction (asymmetric activations for TensorRT, which has no zero points) a :class:`ConfigError`
that names the fix. Only :mod:`edgeformer.quant.ort_adapter` translates it into ORT's option strings.

Targets differ in what their integer kernels want, so :meth:`QuantConfig.for_target` returns a preset:

* ``"ort-cpu"``: uint8 activations (asymmetric) with int8 weights (per-channel, symmetric). On x86
  the u8s8 GEMM is the fast path: ORT's default s8 activations ran 1.8-3.2x slower, and
  ``quantize_static`` defaults left the zoo models at 0.54-0.94x of FP32 speed. ``reduce_range`` (7-bit
  weights) is on: without VNNI, MLAS's u8s8 kernel sums pairs of u8 x s8 products in int16
  (``vpmaddubsw``), which saturates; with 8-bit weights SHViT-S1's cosine vs FP32 fell from 0.9992 to
  0.9914 on an AVX2-only EPYC. A model quantized on a VNNI machine may still be deployed on such a CPU,
  so 7-bit weights are the safe default; pass ``reduce_range=False`` for VNNI/ARM-only deployments.
* ``"tensorrt"``: int8 activations *and* weights, both symmetric (TensorRT ignores zero points), a
  dedicated Q/DQ pair per consumer so TensorRT can fuse each one independently, and float weights
  behind their own Q/DQ pair (the explicit-quantization form optimum's TensorRT preset writes).
* ``"openvino"``: uint8 asymmetric activations with int8 symmetric per-channel weights, NNCF's "mixed"
  preset; OpenVINO turns each Q/DQ pair into a FakeQuantize and runs u8 x i8 kernels. Its x86 kernels
  saturate without VNNI just as MLAS's do, so ``reduce_range`` is on here too: on the AVX2-only EPYC,
  EfficientFormer-L1 compiled from 8-bit weights measured cosine 0.9928 vs PyTorch (top-1 agreement
  0.38 on random inputs), from 7-bit weights 0.99977 (1.0), at the same speed (``edgeformer bench``).

Example::

    cfg = QuantConfig.for_target("tensorrt", method="entropy", calib_size=512)
    fast = QuantConfig.for_target("ort-cpu", search=SearchConfig(enabled=False))  # default plan, no timing
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError

Method = Literal["minmax", "entropy", "percentile"]
Target = Literal["ort-cpu", "tensorrt", "openvino"]
IntType = Literal["uint8", "int8"]

METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")
TARGETS: tuple[str, ...] = ("ort-cpu", "tensorrt", "openvino")
INT_TYPES: tuple[str, ...] = ("uint8", "int8")

# Op types the recipe may place in int8 (the compute-heavy ones, plus what ORT can carry through in
# int8 once its neighbours are quantized). Anything else is always float.
QUANTIZABLE_OP_TYPES: tuple[str, ...] = (
    "Conv",
    "MatMul",
    "Gemm",
    "Add",
    "Mul",
    "AveragePool",
    "MaxPool",
    "GlobalAveragePool",
    "Concat",
    "Reshape",
    "Transpose",
    "Split",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Resize",
    "Relu",
    "Clip",
    "Sigmoid",
    "Softmax",
    "LayerNormalization",
    "InstanceNormalization",
    "Gelu",
    "Pad",
    "Slice",
    "Gather",
)

# Default placement, measured on ORT 1.31 CPU (see recipe.py for the per-op reasons and numbers).
DEFAULT_OP_TYPES: tuple[str, ...] = ("Conv", "MatMul", "Gemm", "Add")
DEFAULT_KEEP_FLOAT: tuple[str, ...] = (
    "Softmax",
    "LayerNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "BatchNormalization",
    "Erf",
    "Gelu",
    "Div",
    "Sub",
    "Pow",
    "Sqrt",
    "ReduceMean",
    "Exp",
    "Tanh",
)


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """Bounds and thresholds of the placement search.

    Attributes:
        enabled: run the latency search. Off, ``quantize()`` keeps the default plan (or the one given) and writes
            no report, unless eval data asks for the accuracy budget; fidelity is checked either way.
        max_candidates: groups timed at most (those with the most quantized nodes first).
        time_budget_s: wall-time bound of the search; the groups left keep the default decision.
        min_gain: fraction of the placement's latency a group's INT8 must save to stay quantized.
        rounds, runs_per_round, warmup: timing of one comparison (median over rounds of each p50).
        threads: intra-op threads of the timed sessions (the deployment's thread count).
        min_cosine: worst held-out cosine vs FP32 a placement must reach on the target.
        level: ``"block"`` or ``"stage"`` groups.
        max_sensitivity_groups: groups quantized alone for the sensitivity table (bounded; 0 skips it).
    """

    enabled: bool = True
    max_candidates: int = 24
    time_budget_s: float = 120.0
    min_gain: float = 0.0
    rounds: int = 5
    runs_per_round: int = 5
    warmup: int = 2
    threads: int | None = 2
    min_cosine: float = 0.999
    level: str = "block"
    max_sensitivity_groups: int = 12

    def __post_init__(self) -> None:
        problems = []
        if self.max_candidates < 0 or self.max_sensitivity_groups < 0:
            problems.append("max_candidates and max_sensitivity_groups must be >= 0")
        if self.time_budget_s <= 0:
            problems.append(f"time_budget_s must be > 0 (got {self.time_budget_s})")
        if not 0.0 <= self.min_gain < 1.0:
            problems.append(f"min_gain must be in [0, 1) (got {self.min_gain})")
        if self.rounds < 1 or self.runs_per_round < 1 or self.warmup < 0:
            problems.append("rounds and runs_per_round must be >= 1, warmup >= 0")
        if self.threads is not None and self.threads < 1:
            problems.append(f"threads must be >= 1 (got {self.threads})")
        if not -1.0 <= self.min_cosine <= 1.0:
            problems.append(f"min_cosine must be in [-1, 1] (got {self.min_cosine})")
        if self.level not in ("block", "stage"):
            problems.append(f"level must be 'block' or 'stage' (got {self.level!r})")
        if problems:
            raise ConfigError("invalid placement search config: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class QuantConfig:
    """Post-training static quantization settings.

    Attributes:
        method: activation range estimator: ``minmax`` (exact range), ``percentile`` (clip the
            ``percentile`` tail), ``entropy`` (KL-optimal clip, TensorRT's calibrator).
        per_channel: one weight scale per output channel (Conv/Gemm/MatMul weights).
        activation_type, weight_type: integer types of activations and weights.
        symmetric_activations, symmetric_weights: zero point fixed at the type's centre.
        percentile: the kept percentage for ``method="percentile"``.
        calib_size: calibration samples drawn (seeded) from the source.
        seed: seeds sampling and synthetic data.
        op_types: op types the default plan may quantize.
        keep_float_op_types: op types that always stay float (also protects them from ``op_types``).
        keep_float_nodes: node names that stay float whatever their type.
        quantize_attention_matmuls: quantize *one* activation x activation MatMul per attention (the
            attn·v one); both at once hit an ORT CPU fused-kernel bug (cosine 0.39 vs FP32).
        target: the runtime the quantized model is for; see the module docstring.
        quant_format: ``qdq`` (QuantizeLinear/DequantizeLinear around float ops; every runtime reads it)
            or ``qoperator`` (ORT's QLinear* ops written directly; ORT only).
        reduce_range: 7-bit weights (avoids int16 saturation of u8s8 kernels on x86 without VNNI).
        dedicated_qdq_pair: one Q/DQ pair per consumer instead of a shared one.
        weight_qdq_pair: keep weights float behind a Q/DQ pair instead of storing them as int8.
        on_bad_sample: ``fail`` on the first unreadable sample, or ``skip`` it and count it.
        min_samples_for_method: entropy/percentile need at least this many samples for a histogram.
        too_few_samples: what to do below that: ``fail``, or fall back to ``minmax`` (and say so).
        fidelity_samples: samples held out of calibration to compare the result with FP32.
        min_cosine: the fidelity bar: the worst held-out cosine vs FP32 the written model must reach. Below it,
            the fewest most sensitive ops go back to float until it holds (``fallback_max_ops``; a ``plan`` given
            by the caller is never changed), and a model that still misses it is refused (``None``: no bar, no
            fallback). With the placement search on (the default, as ``edgeformer quantize`` runs it) the bar is
            the higher of this and ``SearchConfig.min_cosine`` (0.999): the default path aims at 0.999. The core
            alone (search off) keeps 0.9, a gate against broken placements (the fused-attention bug gave 0.39);
            set 0.999 to hold it to the same bar.
        fallback_max_ops: at most this many ops go back to float to reach the bar; ``None``: as many as it takes,
            all but one (the trained keywords_audioformer on 18 calibration clips needs more than 32); ``0``: no
            fallback, a model under the bar is refused at once. See :mod:`edgeformer.quant.fallback`.
        min_range: smallest activation range written; constant tensors are widened to it.
        fuse_gelu: rewrite the exported erf-GELU subgraph into ORT's fused ``Gelu`` (a ``com.microsoft``
            op, so ``ort-cpu`` only); ``None`` means on for ``ort-cpu``, off elsewhere.
        search: the latency-aware placement search and its bounds (:class:`SearchConfig`). On by default, as
            ``edgeformer quantize`` runs it; ``SearchConfig(enabled=False)`` keeps the default plan and writes no
            report (the fast core), unless ``eval_data``/``max_drop`` ask for the accuracy budget.
    """

    method: Method = "minmax"
    per_channel: bool = True
    activation_type: IntType = "uint8"
    weight_type: IntType = "int8"
    symmetric_activations: bool = False
    symmetric_weights: bool = True
    percentile: float = 99.999
    calib_size: int = 128
    seed: int = 0
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    keep_float_op_types: tuple[str, ...] = DEFAULT_KEEP_FLOAT
    keep_float_nodes: tuple[str, ...] = ()
    quantize_attention_matmuls: bool = False
    target: Target = "ort-cpu"
    quant_format: Literal["qdq", "qoperator"] = "qdq"
    reduce_range: bool = True
    dedicated_qdq_pair: bool = False
    weight_qdq_pair: bool = False
    on_bad_sample: Literal["fail", "skip"] = "fail"
    min_samples_for_method: int = 32
    too_few_samples: Literal["fail", "minmax"] = "fail"
    fidelity_samples: int = 8
    min_cosine: float | None = 0.9
    fallback_max_ops: int | None = None
    min_range: float = 1e-4
    fuse_gelu: bool | None = None
    search: SearchConfig = field(default_factory=SearchConfig)

    def __post_init__(self) -> None:
        for name in ("op_types", "keep_float_op_types", "keep_float_nodes"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, (tuple, list)):
                raise ConfigError(f"QuantConfig.{name} must be a tuple of strings, got {value!r}.")
            object.__setattr__(self, name, tuple(value))  # lists are accepted but stored hashable
        if not isinstance(self.search, SearchConfig):
            raise ConfigError(f"QuantConfig.search must be a SearchConfig, got {type(self.search).__name__}.")
        problems = self.problems()
        if problems:
            raise ConfigError("invalid QuantConfig: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """One ``"field: what is wrong, and the fix"`` string per problem."""
        p: list[str] = []

        def one_of(name: str, allowed: tuple[str, ...]) -> None:
            if getattr(self, name) not in allowed:
                p.append(f"{name}: {getattr(self, name)!r} is not one of {', '.join(allowed)}")

        one_of("method", METHODS)
        one_of("target", TARGETS)
        one_of("activation_type", INT_TYPES)
        one_of("weight_type", INT_TYPES)
        one_of("on_bad_sample", ("fail", "skip"))
        one_of("too_few_samples", ("fail", "minmax"))
        one_of("quant_format", ("qdq", "qoperator"))
        if self.quant_format == "qoperator" and self.target != "ort-cpu":
            p.append(f"quant_format qoperator: only ORT runs QLinear* ops; {self.target} needs quant_format='qdq'")
        if not 0.0 < self.percentile <= 100.0:
            p.append(f"percentile: must be in (0, 100], got {self.percentile!r}; 99.999 is a common choice")
        for name, low in (
            ("calib_size", 1),
            ("min_samples_for_method", 1),
            ("fidelity_samples", 0),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                p.append(f"{name}: must be an int >= {low}, got {v!r}")
        v = self.fallback_max_ops
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            p.append(f"fallback_max_ops: must be an int >= 0 or None (no limit), got {v!r}")
        if self.min_cosine is not None and not -1.0 <= self.min_cosine <= 1.0:
            p.append(f"min_cosine: must be in [-1, 1] or None, got {self.min_cosine!r}")
        if not (isinstance(self.min_range, (int, float)) and self.min_range > 0):
            p.append(f"min_range: must be a positive float, got {self.min_range!r}")
        unknown = sorted(set(self.op_types) - set(QUANTIZABLE_OP_TYPES))
        if unknown:
            p.append(f"op_types: cannot quantize {', '.join(unknown)}; choose from {', '.join(QUANTIZABLE_OP_TYPES)}")
        if not self.op_types:
            p.append("op_types: is empty, so nothing would be quantized; pass e.g. ('Conv', 'MatMul', 'Gemm')")
        if self.target == "tensorrt":
            if not self.symmetric_activations or self.activation_type != "int8":
                p.append(
                    "target tensorrt: TensorRT supports only symmetric int8 activations (no zero points); "
                    "use QuantConfig.for_target('tensorrt') or set activation_type='int8', symmetric_activations=True"
                )
            if self.weight_type != "int8" or not self.symmetric_weights:
                p.append(
                    "target tensorrt: weights must be symmetric int8; set weight_type='int8', symmetric_weights=True"
                )
        if self.target != "ort-cpu" and self.fuse_gelu is True:
            p.append(
                f"fuse_gelu: ORT's fused Gelu is a com.microsoft op that {self.target} cannot run; set fuse_gelu=False"
            )
        if self.weight_type == "uint8" and self.symmetric_weights:
            p.append(
                "weight_type uint8 with symmetric_weights: a symmetric uint8 range wastes half the codes; use int8"
            )
        return p

    def fidelity_bar(self, *, searching: bool) -> float | None:
        """The cosine the fidelity fallback aims at: ``min_cosine``, raised to ``search.min_cosine`` when the
        placement search runs (it would otherwise repair the shortfall by whole groups); None: no fallback."""
        if self.min_cosine is None or self.fallback_max_ops == 0:
            return None
        return max(self.min_cosine, self.search.min_cosine) if searching else self.min_cosine

    @property
    def gelu_fusion(self) -> bool:
        """Whether the erf-GELU subgraph is fused into ORT's ``Gelu`` before quantization."""
        return self.target == "ort-cpu" if self.fuse_gelu is None else self.fuse_gelu

    def replace(self, **changes: Any) -> QuantConfig:
        """A copy with ``changes``; unknown field names raise :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(f"unknown QuantConfig field(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}.")
        return dataclasses.replace(self, **changes)

    @classmethod
    def for_target(cls, target: str, **overrides: Any) -> QuantConfig:
        """The preset for ``target`` (``"ort-cpu"``, ``"tensorrt"``, ``"openvino"``), with ``overrides``."""
        presets: dict[str, dict[str, Any]] = {
            "ort-cpu": {},
            "tensorrt": dict(
                activation_type="int8",
                symmetric_activations=True,
                weight_type="int8",
                symmetric_weights=True,
                per_channel=True,
                dedicated_qdq_pair=True,
                weight_qdq_pair=True,
                reduce_range=False,
            ),
            "openvino": dict(
                activation_type="uint8",
                symmetric_activations=False,
                weight_type="int8",
                symmetric_weights=True,
                per_channel=True,
                reduce_range=True,
            ),
        }
        if target not in presets:
            raise ConfigError(f"unknown quantization target {target!r}; choose one of {', '.join(TARGETS)}.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"unknown QuantConfig field(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}.")
        return cls(target=target, **{**presets[target], **overrides})  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantConfig:
        """Rebuild from :meth:`to_dict` output (e.g. a manifest's ``step_config``)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown QuantConfig field(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}.")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        if isinstance(kw.get("search"), dict):
            kw["search"] = SearchConfig(**kw["search"])
        return cls(**kw)


def rounded_fields(obj: Any, ndigits: int = 6) -> dict[str, Any]:
    """``dataclasses.asdict(obj)`` with each top-level float field rounded to ``ndigits`` (others as they are),
    NaN and Inf as None (JSON has neither).

    The quantization results' ``to_dict``: they end up in manifests embedded in model files and in reports,
    which must be byte-identical across runs, and float noise in the last digits would break that.
    """
    return {k: _rounded(v, ndigits) for k, v in dataclasses.asdict(obj).items()}


def _rounded(value: Any, ndigits: int) -> Any:
    if isinstance(value, float):
        return round(value, ndigits) if math.isfinite(value) else None
    return value
