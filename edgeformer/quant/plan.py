"""The placement a quantized artifact was built with, as a file: written by every ``quantize``, read by ``--plan``.

The placement search follows measured timings, so two runs on a busy machine can choose different plans.
Every quantized artifact therefore holds the plan it was built from (``plan.json``: the nodes quantized, and
why every other node of interest stayed float), and ``quantize(..., plan=load_plan(path))`` /
``edgeformer quantize --plan PATH`` builds exactly that plan again without searching: with the same input,
calibration data and settings, the model file is byte-identical to the one the plan came from.

A plan names nodes of the *pre-processed* graph (see :func:`~.ort_adapter.preprocess`), so it belongs to the
model and the quantization settings it was made with; :func:`check_plan` refuses one that names nodes the
graph does not have, listing them.

Example::

    plan = load_plan("build/l1-int8")            # the artifact folder, or its plan.json
    quantize("build/l1", calib="imgs/", out="build/l1-int8-again", plan=plan)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from ..errors import ConfigError, InvalidInputError
from ..records import Record
from .recipe import QuantPlan

PLAN_FILE = "plan.json"


@dataclass(frozen=True, kw_only=True)
class PlanRecord(Record):
    """``plan.json``: the nodes to quantize (pre-processed graph names, graph order) and why the others stay float."""

    nodes_to_quantize: tuple[str, ...]
    reasons: dict[str, str] = field(default_factory=dict)

    def to_plan(self) -> QuantPlan:
        return QuantPlan(self.nodes_to_quantize, dict(self.reasons))


def load_plan(path: str | Path) -> QuantPlan:
    """Read a plan from a ``plan.json`` file or a quantized artifact folder holding one.

    Raises:
        ConfigError: nothing at ``path``, or a folder without ``plan.json`` (exit 2).
        InvalidInputError: not JSON, not a plan (unknown or missing keys, wrong types), or a plan with no node
            to quantize (exit 3); the message names the file.
    """
    path = Path(path)
    file = path / PLAN_FILE if path.is_dir() else path
    if not file.is_file():
        where = f"{path} holds no {PLAN_FILE}" if path.is_dir() else f"{path} does not exist"
        raise ConfigError(
            f"--plan: {where}; pass the {PLAN_FILE} of a quantized artifact, or the artifact folder itself."
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    # ValueError: bad UTF-8 or JSON, or an int past 4300 digits; RecursionError: nested deep (fuzz/plan.py)
    except (ValueError, RecursionError) as e:
        raise InvalidInputError(
            f"{file} is not a plan: not JSON ({e}); pass the {PLAN_FILE} that quantize wrote."
        ) from e
    try:
        record = PlanRecord.from_dict(data, where=str(file))
    except ConfigError as e:  # a file's content is invalid input, not a bad flag
        raise InvalidInputError(f"{e}; pass the {PLAN_FILE} that quantize wrote.") from e
    if not record.nodes_to_quantize or any(not n for n in record.nodes_to_quantize):
        raise InvalidInputError(
            f"{file}: the plan's nodes_to_quantize is empty or holds an empty name; a plan must name the nodes "
            "to quantize (quantizing none is the FP32 model: use it as it is)."
        )
    return record.to_plan()


def check_plan(plan: QuantPlan, model: onnx.ModelProto | str | Path) -> None:
    """Refuse a plan naming nodes that the pre-processed ``model`` does not have.

    Raises:
        ConfigError: with the count and the first few missing names (exit 2).
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    names = {n.name for n in model.graph.node}
    missing = [n for n in plan.nodes_to_quantize if n not in names]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ConfigError(
            f"the plan names {len(missing)} of its {len(plan.nodes_to_quantize)} node(s) that this model does not "
            f"have after pre-processing ({shown}): a plan belongs to the model and the quantization settings it "
            "was made with. Use the plan.json of an artifact quantized from this model with these settings, or "
            "drop --plan."
        )


__all__ = ["PLAN_FILE", "PlanRecord", "check_plan", "load_plan"]
