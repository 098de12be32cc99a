"""Strict, safe checkpoint loading with key accounting.

Checkpoints are untrusted input. Pickled files are read with ``torch.load(weights_only=True)`` only;
one that needs arbitrary globals is refused with the list of those globals and never retried unsafely.
Official layouts (``{'model': state_dict}`` from snap-research and SHViT releases, ``{'state_dict': ...}``,
DataParallel ``module.`` prefixes), plain timm state dicts and ``.safetensors`` are accepted; the
family's ``remap`` turns their key names into ours, then every key must match.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelFileError, UnsafeInputError, WeightsError

_WRAPPER_KEYS = ("model", "state_dict", "model_ema", "module")


def _sniff(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(16)
    if not head:
        raise ModelFileError(f"{path}: file is empty; re-download or re-save the checkpoint.")
    if head.startswith(b"PK"):
        return "torch-zip"
    if head[:1] == b"\x80":
        return "torch-legacy"
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: u64 header length, then JSON
        return "safetensors"
    if head.startswith(b"\x08") or b"onnx" in head.lower():
        raise ModelFileError(
            f"{path}: looks like an ONNX model, not a checkpoint; pass it to `edgeformer profile` or `quantize`."
        )
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8"):
        raise ModelFileError(f"{path}: is an image, not a checkpoint.")
    raise ModelFileError(f"{path}: not a PyTorch or safetensors checkpoint (unrecognised header {head[:8]!r}).")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{key: tensor}`` dict, safely, unwrapping known layouts."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: checkpoint not found; check the --checkpoint path.")
    kind = _sniff(path)
    if kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelFileError(f"{path}: corrupt or truncated safetensors file ({e}).") from e
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        globals_needed = _unsafe_globals(path)
        if globals_needed:
            raise UnsafeInputError(
                f"{path}: refused, loading it would execute code from these globals: {', '.join(globals_needed)}. "
                "Re-save it as a plain state dict (torch.save(model.state_dict(), ...)) or as .safetensors."
            ) from e
        raise ModelFileError(f"{path}: not a readable checkpoint ({str(e).splitlines()[0]}).") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ModelFileError(f"{path}: truncated or corrupt checkpoint ({str(e).splitlines()[0]}).") from e
    return unwrap_state_dict(obj, source=str(path))


def _unsafe_globals(path: Path) -> list[str]:
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # legacy (non-zip) pickles cannot be scanned; the caller reports them as unreadable
        return []


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap ``{'model': sd}``/``{'state_dict': sd}`` and strip DataParallel ``module.`` prefixes."""
    for _ in range(3):  # wrappers nest at most twice in the wild ({'model': {'state_dict': ...}})
        if isinstance(obj, Mapping) and not _is_flat_tensor_dict(obj):
            inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not _is_flat_tensor_dict(obj):
        raise WeightsError(
            f"{source}: no state dict found (expected a mapping of tensors, possibly under 'model' or 'state_dict')."
        )
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _is_flat_tensor_dict(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def diff_state(
    expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """Missing, unexpected and mis-shaped keys of ``given`` against ``expected``."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = sorted(
        f"{k} {tuple(given[k].shape)}!={tuple(expected[k].shape)}"
        for k in set(expected) & set(given)
        if tuple(given[k].shape) != tuple(expected[k].shape)
    )
    return missing, unexpected, wrong


def load_strict(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    remap: Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    source: str = "checkpoint",
) -> nn.Module:
    """Load ``state`` (after ``remap``) into ``model``; every key must match, else nothing is loaded."""
    if remap is not None:
        state = remap(state)
    missing, unexpected, wrong = diff_state(model.state_dict(), state)
    if missing or unexpected or wrong:
        raise WeightsError.mismatch(missing, unexpected, wrong, source=source)
    model.load_state_dict(state, strict=True)
    return model
