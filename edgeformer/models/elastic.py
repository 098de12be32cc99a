"""Weight inheritance for NAS: cut a child network out of a trained parent."""

from __future__ import annotations

from ..errors import InvalidArchError
from .layers import ElasticModel


def slice_weights(parent: ElasticModel, child_arch) -> ElasticModel:
    """Build ``type(parent)(child_arch)`` with weights inherited from ``parent``.

    Every child tensor comes from the parent tensor that ``child.parent_key_map`` names, cut to the
    child's shape by ``child.slice_param`` (leading channels, kept blocks). A child whose tensor would
    be larger than its parent's is not a sub-network and raises :class:`InvalidArchError`.
    """
    child_arch.validate()
    if getattr(parent, "fused", False):
        raise InvalidArchError(["parent: is fused; slice weights from the unfused model, then fuse the child"])
    child = type(parent)(child_arch)
    parent_state = parent.state_dict()
    key_map = child.parent_key_map(parent.arch)
    new_state, problems = {}, []
    for key, value in child.state_dict().items():
        src = key_map.get(key)
        if src is None or src not in parent_state:
            problems.append(f"{key}: has no counterpart in the parent")
            continue
        pval = parent_state[src]
        if pval.dim() != value.dim() or any(c > p for c, p in zip(value.shape, pval.shape, strict=True)):
            problems.append(f"{key}: child shape {tuple(value.shape)} exceeds parent {tuple(pval.shape)}")
            continue
        new_state[key] = child.slice_param(key, pval, value.shape) if pval.dim() else pval.clone()
    if problems:
        raise InvalidArchError(problems, arch_name=f"sub-network of {type(parent).__name__}")
    child.load_state_dict(new_state, strict=True)
    child.train(parent.training)
    return child
