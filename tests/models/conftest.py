"""Helpers every model-family test uses: seeded inputs, measured size, relative error, ONNX and checkpoint parity.

What differs per family stays in its test file: the small architectures, and how weights are randomized (each
family hides different mistakes behind identity-like init: layer scales, zero-init BN gammas, bias tables).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from edgeformer.models import create_model
from edgeformer.models.complexity import count_macs, count_params
from edgeformer.models.spec import ModelSpec


def images(batch: int = 2, res: int = 64, seed: int = 1) -> torch.Tensor:
    """A seeded NCHW batch of RGB noise; 64 px is the size the image families' fast tests run at."""
    return torch.randn(batch, 3, res, res, generator=torch.Generator().manual_seed(seed))


def rel_err(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Largest absolute difference from ``b``, relative to ``b``'s largest magnitude."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return float((a - b).abs().max() / b.abs().max())


def params_and_macs(spec: ModelSpec) -> tuple[int, int]:
    """Parameters (counted on the meta device, so no weights are allocated) and MACs at the spec's input, batch 1."""
    with torch.device("meta"):
        params = count_params(spec.build(spec.arch))
    return params, count_macs(lambda: spec.build(spec.arch), spec.input.shape(1))


def batchnorms(model: nn.Module) -> list[nn.Module]:
    """The batch-norm layers left in ``model`` (none after ``fuse()``)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def assert_onnx_matches(model: nn.Module, example: torch.Tensor, check: torch.Tensor, path: Path, dynamo: bool) -> None:
    """Export ``model`` from ``example`` with a dynamic batch axis, then run ``check`` through onnxruntime.

    ``check`` should have another batch size than ``example``: a batch the exporter fixed fails here rather than
    on a device. Outputs must agree with torch to 1e-4 of their largest magnitude (fp32 kernels reorder sums).
    """
    model = model.eval()
    if dynamo:
        kw = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)}
    else:
        kw = {"input_names": ["input"], "output_names": ["logits"], "dynamic_axes": {"input": {0: "batch"}}}
    torch.onnx.export(model, (example,), str(path), dynamo=dynamo, opset_version=18, **kw)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: check.numpy()})
    with torch.no_grad():
        want = model(check)
    assert got.shape == tuple(want.shape)
    assert rel_err(got, want) <= 1e-4


def save_safetensors(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``state`` as safetensors (which refuses non-contiguous tensors, e.g. sliced ones)."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


def assert_loads_as(name: str, path: Path, reference: nn.Module, x: torch.Tensor, **overrides) -> None:
    """``create_model(name, checkpoint=path, **overrides)`` computes exactly what ``reference`` computes on ``x``."""
    loaded = create_model(name, checkpoint=path, **overrides).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), reference(x)), path.name
