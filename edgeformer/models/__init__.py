"""The model zoo: one module per family, shared layers, strict checkpoint loading, ``slice_weights``.

Each family module registers its variants as :class:`ModelSpec` data when imported; the families are
imported on first use of the registry (:mod:`.zoo`), so ``import edgeformer`` stays light.
"""

from ..inputs import AudioInput, ImageInput
from .spec import ArchBase, ExportHints, ModelSpec
from .zoo import create_model, get_spec, list_models, register_model, slice_weights

__all__ = [
    "ArchBase",
    "AudioInput",
    "ExportHints",
    "ImageInput",
    "ModelSpec",
    "create_model",
    "get_spec",
    "list_models",
    "register_model",
    "slice_weights",
]
